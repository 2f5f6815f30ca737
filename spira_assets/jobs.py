"""Jobs: what the sensor, the CLI and backfills run for one collection batch."""

import dagster as dg

from spira_assets.partitions import collection_batch

BATCH_ASSETS = ("raw_audio", "validated_metadata")

ingest_batch_job = dg.define_asset_job(
    name="ingest_batch",
    selection=dg.AssetSelection.assets(*BATCH_ASSETS),
    partitions_def=collection_batch,
    description="Materialize every per-batch asset (and its checks) for one collection batch.",
)
