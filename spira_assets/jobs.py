"""Jobs: what the sensors, the CLI and backfills run."""

import dagster as dg

from spira_assets.partitions import collection_batch

BATCH_ASSETS = ("raw_audio", "validated_metadata", "audio_16k", "spectrogram_features")
SHARED_ASSETS = ("hospital_noise",)

process_batch_job = dg.define_asset_job(
    name="process_batch",
    selection=dg.AssetSelection.assets(*BATCH_ASSETS),
    partitions_def=collection_batch,
    description="Every per-batch asset (and its checks) for one collection batch.",
)

prepare_noise_job = dg.define_asset_job(
    name="prepare_noise",
    selection=dg.AssetSelection.assets(*SHARED_ASSETS),
    description="The hospital-noise set used for augmentation.",
)
