"""spira_assets: SPIRA's continuous-training platform as Dagster software-defined assets.

The package is split in two layers. The core (``audio``, ``ingest``, ``storage``, ``demo``,
``importers``, ``privacy``, ``layout``, ``batches``) is plain Python and never imports Dagster.
The Dagster adapters (``assets``, ``checks``, ``sensors``, ``jobs``, ``resources``,
``definitions``) wire that core to storage, configuration and metadata.
"""

__version__ = "0.1.0"
