"""The landing zone as external assets: what hospitals deliver, read but never written here.

``landing_batch`` is a collection batch's folder (``landing/<batch>/``: audio files,
``metadata.csv``, ``_import.json``, ``_READY``), observed by the landing-zone sensor;
``landing_noise`` is ``landing/noise/``, the hospital-ambience recordings. Declaring them puts
the source of every number at the root of the lineage: ``raw_audio`` and ``validated_metadata``
read the first, ``hospital_noise`` the second.
"""

import dagster as dg

from spira_assets.partitions import collection_batch

landing_batch = dg.AssetSpec(
    "landing_batch",
    partitions_def=collection_batch,
    group_name="landing",
    kinds={"folder"},
    description="A collection batch as delivered under landing/<batch>/ (audio, metadata.csv, "
    "optional _import.json; complete when _READY exists). Read only: ingest copies what it "
    "accepts into the content-addressed raw store.",
)

landing_noise = dg.AssetSpec(
    "landing_noise",
    group_name="landing",
    kinds={"folder"},
    description="Hospital-ambience recordings under landing/noise/, for noise insertion.",
)
