"""Continuous training: the retraining sensor, the weekly retraining and the nightly reconcile.

- ``retraining_sensor`` starts ``train_model`` (split -> model -> evaluation -> gate) when
  ``min_new_batches`` batches with features have arrived since the latest model, or when one of
  them failed its drift check. Its run key is the set of new batches and the reason, so the same
  situation never starts a second run; Dagster's run retries (``dagster/max_retries``) bound the
  retries of a failed run. Nothing loops.
- ``weekly_retraining`` runs ``train_model`` every Monday 03:00 UTC. With no new data the model
  version is reused (same input fingerprint) and only evaluation and the gate run again.
- ``nightly_reconcile`` materializes every registered batch that was re-delivered (its
  ``raw_audio`` is older than the landing folder's ``_READY`` marker: the landing zone is
  outside Dagster, so only a comparison with the folder can tell) or that has a per-batch
  asset missing (a run that failed half-way; Dagster's automation does not retry failures).
  Staleness from changed code or re-materialized inputs is Dagster's own (``stale.py``).
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import polars as pl

from spira_assets.assets.live import live_retraining_reason
from spira_assets.assets.predictions import MonitoringSettings
from spira_assets.batches import READY_MARKER, scan_landing
from spira_assets.deployment import sensor_interval
from spira_assets.jobs import BATCH_ASSETS, process_batch_job, train_model_job
from spira_assets.layout import DataLayout
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.resources import TRAINING_RETRIES, RetrainingPolicy, StorageResource
from spira_assets.storage.tables import (
    BATCH_DRIFT,
    DRIFT_REFERENCE,
    FEATURE_STATS,
    UNPARTITIONED,
)

INGEST_ENTRY = "raw_audio"  # what reads the landing folder; the rest follows its data versions

IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def batches_in_latest_model(instance: dg.DagsterInstance, layout: DataLayout) -> set[str] | None:
    """The input batches of the latest ``spira_model`` materialization (None: no model yet)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("spira_model"))
    if event is None or event.asset_materialization is None:
        return None
    version = str(event.asset_materialization.metadata["model_version"].value)
    lineage = layout.fetch_if_present(f"models/{version}") / "lineage.json"
    return set(json.loads(lineage.read_text())["batches"]) if lineage.exists() else set()


def drift_of_new_batches(
    new: list[str], drift: pl.DataFrame, reference: pl.DataFrame
) -> tuple[list[str], str]:
    """The new batches that drifted, and a sentence saying for which of them drift was computed
    (against which champion) and for which it was not, and why: "none drifted" is said only of
    batches whose drift was computed."""
    model = reference["reference_model"][0] if reference.height else None
    in_reference = set(reference["reference_batch"].to_list())
    rows = drift.filter(pl.col("batch_id").is_in(new))
    drifted = sorted(set(rows.filter(pl.col("drifted"))["batch_id"].to_list()))
    against = {b: set(m) for b, m in rows.group_by("batch_id").agg("reference_model").rows()}
    current = [b for b in new if model is not None and model in against.get(b, set())]
    older = [b for b in new if b in against and b not in current]
    parts = []
    if current:
        shown = [b for b in current if b in drifted]
        parts.append(
            f"drift computed for {', '.join(current)} against champion {model}: "
            + (f"{', '.join(shown)} drifted" if shown else "none drifted")
        )
    if older:
        parts.append(f"drift of {', '.join(older)} is against an earlier champion (out of date)")
    missing = [b for b in new if b not in against]
    if missing:
        why = (
            "no champion yet"
            if model is None
            else "in the champion's training data"
            if set(missing) <= in_reference
            else "not computed yet (batch_drift pending)"
        )
        parts.append(f"drift not computed for {', '.join(missing)} ({why})")
    return drifted, "; ".join(parts)


def retraining_reason(new: list[str], drifted: list[str], policy: RetrainingPolicy) -> str | None:
    if new and len(new) >= policy.min_new_batches:
        return f"{len(new)} new batches (threshold {policy.min_new_batches})"
    if drifted and policy.retrain_on_drift:
        return f"drift in {', '.join(drifted)}"
    return None


@dg.sensor(
    job=train_model_job,
    minimum_interval_seconds=sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 60 s: starts train_model when RetrainingPolicy.min_new_batches (default "
    "2) batches with features are not in the latest model, or one of them failed its drift "
    "check (retrain_on_drift); skips while a train_model run is queued or running, saying how "
    "many batches are new and for which drift was computed.",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext,
    storage: StorageResource,
    retraining: RetrainingPolicy,
    monitoring: MonitoringSettings,
) -> dg.SensorResult:
    instance = context.instance
    if instance.get_runs_count(dg.RunsFilter(job_name=train_model_job.name, statuses=IN_PROGRESS)):
        return dg.SensorResult(skip_reason="a train_model run is already queued or running")
    lake = storage.lake()
    with_features = set(lake.read_table(FEATURE_STATS).get_column("batch_id").to_list())
    registered = set(instance.get_dynamic_partitions(COLLECTION_BATCH))
    trained_on = batches_in_latest_model(instance, storage.layout()) or set()
    new = sorted((with_features & registered) - trained_on)
    reference = (
        lake.read_part(DRIFT_REFERENCE, UNPARTITIONED)
        if lake.has_part(DRIFT_REFERENCE, UNPARTITIONED)
        else DRIFT_REFERENCE.empty()
    )
    drifted, drift_said = drift_of_new_batches(new, lake.read_table(BATCH_DRIFT), reference)
    reason = retraining_reason(new, drifted, retraining)
    # the champion at work (assets/live.py): a failed live check, or drifted inputs
    live, signals = (
        live_retraining_reason(lake) if monitoring.retrain_on_live_failure else (None, [])
    )
    reason = reason or live
    if reason is None:
        return dg.SensorResult(
            skip_reason=f"{len(new)} new batch(es) since the latest model (retrains at "
            f"{retraining.min_new_batches}, or on a drifted one)"
            + (f"; {drift_said}" if drift_said else "")
        )
    situation = [new, drifted, *([signals] if signals else [])]
    key = hashlib.sha256(json.dumps(situation).encode()).hexdigest()[:16]
    context.log.info(f"retraining: {reason}; new batches {new}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"retrain:{key}",
                tags={
                    "spira/trigger": "live"
                    if reason == live
                    else "drift"
                    if reason.startswith("drift")
                    else "new_batches",
                    "spira/reason": reason[:200],
                    "dagster/max_retries": str(retraining.max_retries),
                },
            )
        ]
    )


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
