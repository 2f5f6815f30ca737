"""Every schedule of the code location:

- ``weekly_retraining`` runs ``train_model`` every Monday 03:00 UTC. With no new data the model
  version is reused (same input fingerprint) and only evaluation and the gate run again.
- ``nightly_reconcile`` materializes every registered batch that was re-delivered (its
  ``raw_audio`` is older than the landing folder's ``_READY`` marker: the landing zone is
  outside Dagster, so only a comparison with the folder can tell) or that has a per-batch
  asset missing (a run that failed half-way; Dagster's automation does not retry failures).
  Staleness from changed code or re-materialized inputs is Dagster's own (``conditions.py``).
- ``daily_predictions_schedule`` (00:30 UTC, the previous day's predictions and their drift)
  and ``weekly_live_schedule`` (Mondays 01:00 UTC, the previous week's live performance)."""

from __future__ import annotations

import dagster as dg

from spira_assets.automation.jobs import (
    BATCH_ASSETS,
    daily_predictions_job,
    process_batch_job,
    train_model_job,
    weekly_live_job,
)
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.resources import TRAINING_RETRIES, StorageResource
from spira_assets.storage.batches import READY_MARKER, scan_landing

INGEST_ENTRY = "raw_audio"  # what reads the landing folder; the rest follows its data versions


weekly_retraining = dg.ScheduleDefinition(
    name="weekly_retraining",
    job=train_model_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={"spira/trigger": "weekly", "dagster/max_retries": str(TRAINING_RETRIES)},
    description="Retrain every Monday 03:00 UTC (reuses the model when no input changed).",
)


def batches_to_reconcile(instance: dg.DagsterInstance, storage: StorageResource) -> dict[str, str]:
    """Registered, completely landed batches whose per-batch assets are missing or older than
    their ``_READY`` marker, with the reason."""
    landing = storage.layout().landing
    complete = set(scan_landing(landing).complete)
    stale: dict[str, str] = {}
    for batch_id in sorted(set(instance.get_dynamic_partitions(COLLECTION_BATCH)) & complete):
        ready = (landing / batch_id / READY_MARKER).stat().st_mtime
        for asset in BATCH_ASSETS:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[batch_id]),
                limit=1,
            ).records
            if not records:
                stale[batch_id] = f"{asset} missing"
                break
            if asset == INGEST_ENTRY and records[0].timestamp < ready:
                stale[batch_id] = f"{asset} older than the landing folder"
                break
    return stale


@dg.schedule(
    job=process_batch_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: materialize every batch whose assets are missing or stale.",
)
def nightly_reconcile(
    context: dg.ScheduleEvaluationContext, storage: StorageResource
) -> list[dg.RunRequest] | dg.SkipReason:
    stale = batches_to_reconcile(context.instance, storage)
    if not stale:
        return dg.SkipReason("every registered batch is materialized and current")
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            partition_key=batch_id,
            run_key=f"reconcile:{day}:{batch_id}",
            tags={"spira/trigger": "reconcile", "spira/reason": why},
        )
        for batch_id, why in stale.items()
    ]


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
