"""The one Definitions object of the code location (loaded by workspace.yaml)."""

import dagster as dg

from spira_assets.assets.raw_audio import raw_audio
from spira_assets.assets.validated_metadata import validated_metadata
from spira_assets.jobs import ingest_batch_job
from spira_assets.resources import IngestPolicy, PseudonymResource, StorageResource
from spira_assets.sensors import landing_zone_sensor

RESOURCES = {
    "storage": StorageResource(),
    "pseudonyms": PseudonymResource(),
    "policy": IngestPolicy(),
}

defs = dg.Definitions(
    assets=[raw_audio, validated_metadata],
    jobs=[ingest_batch_job],
    sensors=[landing_zone_sensor],
    resources=RESOURCES,
)
