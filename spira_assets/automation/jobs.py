"""Every job of the code location: what the sensors, the schedules, the CLI and backfills run."""

from __future__ import annotations

import dagster as dg

from spira_assets.assets.live import live_performance, prediction_drift
from spira_assets.assets.predictions import outcomes, predictions
from spira_assets.deployment import current_deployment

record_outcomes_job = dg.define_asset_job(
    "record_outcomes",
    selection=dg.AssetSelection.assets(outcomes),
    description="Validate and store the clinical outcomes in landing/outcomes/.",
)
daily_predictions_job = dg.define_asset_job(
    "daily_predictions",
    selection=dg.AssetSelection.assets(predictions, prediction_drift),
    description="A day's predictions from the log and their drift from the champion's data.",
)
weekly_live_job = dg.define_asset_job(
    "weekly_live_performance",
    selection=dg.AssetSelection.assets(live_performance),
    description="A week's live performance (predictions joined with outcomes).",
)

DEPLOYMENT = current_deployment()  # SPIRA_DEPLOYMENT: local (default) or k8s

BATCH_ASSETS = (
    "raw_audio",
    "raw_audio_16k",
    "validated_metadata",
    "quarantine",
    "batch_checks",
    "audio_16k",
    "spectrogram_features",
    "feature_stats",
    "batch_drift",
)
SHARED_ASSETS = ("hospital_noise",)
TRAINING_ASSETS = (
    "dataset_split",
    "spira_model",
    "model_versions",
    "evaluation_report",
    "evaluation_metrics",
    "evaluation_subgroups",
    "champion",
    "evaluation_comparisons",
    "promotions",
    "drift_reference",
    "drift_reference_features",
)

process_batch_job = dg.define_asset_job(
    name="process_batch",
    selection=dg.AssetSelection.assets(*BATCH_ASSETS),
    description="Every per-batch asset (and its checks) for one collection batch.",
    executor_def=DEPLOYMENT.batch_executor,
)

prepare_noise_job = dg.define_asset_job(
    name="prepare_noise",
    selection=dg.AssetSelection.assets(*SHARED_ASSETS),
    description="The hospital-noise set used for augmentation.",
    executor_def=DEPLOYMENT.batch_executor,
)

train_model_job = dg.define_asset_job(
    name="train_model",
    selection=dg.AssetSelection.assets(*TRAINING_ASSETS),
    description="Patient-grouped split over every batch, SpiraConv (one model per seed), its "
    "evaluation on held-out participants and the promotion gate.",
    executor_def=DEPLOYMENT.training_executor,
)
