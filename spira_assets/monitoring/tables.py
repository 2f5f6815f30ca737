"""The monitoring tables (lake parts and warehouse views), in the shape of every other table."""

from __future__ import annotations

import polars as pl

from spira_assets.storage.tables import BATCH_DRIFT, UTC_TIME, TableSpec

# one part per UTC day (the partition key), compacted from the prediction log
PREDICTIONS = TableSpec(
    "predictions",
    {
        "batch_id": pl.String(),  # the day, YYYY-MM-DD
        "prediction_id": pl.String(),
        "scored_at": UTC_TIME,
        "source": pl.String(),
        "model_version": pl.String(),
        "audio_sha256": pl.String(),
        "participant": pl.String(),  # keyed pseudonym, never the raw id
        "probability": pl.Float64(),
        "raw_score": pl.Float64(),
        "decision": pl.Int64(),
        "threshold": pl.Float64(),
        "windows": pl.Int64(),
        "error": pl.String(),
        "duration_s": pl.Float64(),
        "rms_dbfs": pl.Float64(),
        "peak_dbfs": pl.Float64(),
        "feature_means": pl.List(pl.Float64()),
    },
)

# accepted clinical outcomes, each resolved to the recording it is about
OUTCOMES = TableSpec(
    "outcomes",
    {
        "batch_id": pl.String(),  # "all"
        "source_file": pl.String(),
        "row_number": pl.Int64(),
        "prediction_id": pl.String(),  # as given (null when given by audio hash)
        "audio_sha256": pl.String(),  # the recording the outcome is about
        "spo2": pl.Int64(),
        "measured_at": UTC_TIME,
        "label": pl.Int64(),  # 1: respiratory insufficiency (SpO2 below the threshold)
    },
)

# one row per week, model version and metric
LIVE_PERFORMANCE = TableSpec(
    "live_performance",
    {
        "batch_id": pl.String(),  # the week's first day, YYYY-MM-DD
        "model_version": pl.String(),
        "metric": pl.String(),
        "value": pl.Float64(),
        "ci_low": pl.Float64(),
        "ci_high": pl.Float64(),
        "draws_defined": pl.Float64(),
        "test_value": pl.Float64(),  # the model's figure on its own test set (evaluation)
        "recordings": pl.Int64(),
        "participants": pl.Int64(),
        "positives": pl.Int64(),
        "negatives": pl.Int64(),
        "threshold": pl.Float64(),
        "judged": pl.Boolean(),  # enough positive outcomes to judge sensitivity
        "below_floor": pl.Boolean(),  # judged and sensitivity below the floor
    },
)

# the day's predictions against the champion's training data, as batch_drift's rows
PREDICTION_DRIFT = TableSpec("prediction_drift", dict(BATCH_DRIFT.schema))

MONITORING_TABLES = (PREDICTIONS, OUTCOMES, LIVE_PERFORMANCE, PREDICTION_DRIFT)
