"""The ``spira`` command line. Every command exits non-zero with a one-line reason on failure.

``app`` holds the group and what the commands share; each other module registers the commands
of one concern on it (imports point one way: commands -> app).
"""

from spira_assets.cli import audit, data, demo, models, registry, sweep  # noqa: F401  (register the commands)
from spira_assets.cli.app import main

__all__ = ["main"]
