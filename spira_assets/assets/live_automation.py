"""Automation of the monitoring loop: new outcome files start ``outcomes``; a new ``outcomes``
starts ``live_performance`` for every week whose predictions it answers; each day's
predictions and their drift are compacted after midnight (UTC), each week's live performance
on Monday. Retraining goes through the existing ``retraining_sensor`` (``automation.py``),
which reads what the live and drift checks stored (``assets/live.py``)."""

import hashlib
from datetime import timedelta

import dagster as dg
import polars as pl

from spira_assets.assets.live import live_performance, prediction_drift
from spira_assets.assets.predictions import outcomes, predictions
from spira_assets.deployment import sensor_interval
from spira_assets.monitoring.outcomes import OUTCOMES_FOLDER, outcome_files
from spira_assets.monitoring.tables import OUTCOMES, PREDICTIONS
from spira_assets.resources import StorageResource

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
daily_predictions_schedule = dg.build_schedule_from_partitioned_job(
    daily_predictions_job,
    hour_of_day=0,
    minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:30 UTC: the previous day's predictions and their drift.",
)
weekly_live_schedule = dg.build_schedule_from_partitioned_job(
    weekly_live_job,
    hour_of_day=1,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 01:00 UTC: the previous week's live performance.",
)


def outcome_folder_fingerprint(storage: StorageResource) -> str:
    files = outcome_files(storage.layout().landing / OUTCOMES_FOLDER)
    listing = "\n".join(f"{p.name}\t{p.stat().st_size}\t{p.stat().st_mtime}" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16] if files else ""


@dg.sensor(
    job=record_outcomes_job,
    minimum_interval_seconds=sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 60 s: materializes outcomes when the files in landing/outcomes/ change.",
)
def outcomes_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource
) -> dg.SensorResult:
    fingerprint = outcome_folder_fingerprint(storage)
    if not fingerprint or fingerprint == context.cursor:
        return dg.SensorResult(skip_reason="no new outcome file", cursor=context.cursor)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"outcomes:{fingerprint}")], cursor=fingerprint
    )


def weeks_answered(storage: StorageResource) -> list[str]:
    """The weeks (their Mondays) of the predictions that have an outcome."""
    lake = storage.lake()
    answered = set(lake.read_table(OUTCOMES).get_column("audio_sha256").to_list())
    scored = lake.read_table(PREDICTIONS).filter(pl.col("audio_sha256").is_in(answered))
    days = {d for d in scored.get_column("scored_at").dt.date().to_list() if d is not None}
    return sorted({(d - timedelta(days=d.weekday())).isoformat() for d in days})


@dg.asset_sensor(
    asset_key=dg.AssetKey("outcomes"),
    job=weekly_live_job,
    minimum_interval_seconds=sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each outcomes materialization: live_performance of every week whose "
    "predictions have outcomes (a late outcome updates its week).",
)
def live_after_outcomes(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, storage: StorageResource
) -> list[dg.RunRequest]:
    return [
        dg.RunRequest(partition_key=week, run_key=f"live:{asset_event.run_id}:{week}")
        for week in weeks_answered(storage)
    ]
