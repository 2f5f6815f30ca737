"""Every sensor of the code location:

- ``landing_zone_sensor`` and ``noise_folder_sensor``: one partition and one run per newly
  completed batch; a run when the hospital-noise folder changes.
- ``retraining_sensor`` starts ``train_model`` (split -> model -> evaluation -> gate) when
  ``min_new_batches`` batches with features have arrived since the latest model, when one of
  them failed its drift check, or when the champion's live performance fell below its floor.
  Its run key is the set of new batches and the reason, so the same situation never starts a
  second run; Dagster's run retries (``dagster/max_retries``) bound the retries of a failed
  run. Nothing loops.
- ``outcomes_sensor`` starts ``outcomes`` for new outcome files; ``live_after_outcomes`` starts
  ``live_performance`` for every week whose predictions a new ``outcomes`` answers.

The automation conditions (stale batches re-materialize themselves) are in ``conditions.py``
and run under Dagster's own automation sensor."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import dagster as dg
import polars as pl

from spira_assets.assets.live import live_retraining_reason
from spira_assets.assets.predictions import MonitoringSettings
from spira_assets.automation.jobs import (
    prepare_noise_job,
    process_batch_job,
    record_outcomes_job,
    train_model_job,
    weekly_live_job,
)
from spira_assets.deployment import sensor_interval
from spira_assets.ingest.noise_folder import FINGERPRINT_KEY, noise_fingerprint
from spira_assets.monitoring.outcomes import OUTCOMES_FOLDER, outcome_files
from spira_assets.monitoring.tables import OUTCOMES, PREDICTIONS
from spira_assets.partitions import COLLECTION_BATCH, collection_batch
from spira_assets.resources import RetrainingPolicy, StorageResource
from spira_assets.storage.batches import BATCH_ID_PATTERN, scan_landing
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import (
    BATCH_DRIFT,
    DRIFT_REFERENCE,
    FEATURE_STATS,
    UNPARTITIONED,
)

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


@dg.sensor(
    job=process_batch_job,
    # 10 s, not 30: a landed batch waited 15 s on average for this tick, more than its run took
    # (benchmarks/cycle.py); a tick lists landing/'s folders and reads the known partitions
    minimum_interval_seconds=sensor_interval(10),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: registers each batch folder of $SPIRA_DATA_DIR/landing with a "
    "_READY marker as a collection_batch partition and starts process_batch for it; a folder "
    "whose name is not a valid batch id is warned about once; the skip reason counts batches "
    "still incomplete (no _READY).",
)
def landing_zone_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource
) -> dg.SensorResult | dg.SkipReason:
    scan = scan_landing(storage.layout().landing)
    known = set(context.instance.get_dynamic_partitions(COLLECTION_BATCH))
    warned = set(json.loads(context.cursor)["refused"]) if context.cursor else set()
    for name in sorted(set(scan.refused) - warned):
        context.log.warning(
            f"landing folder {name!r} refused: a batch id must match {BATCH_ID_PATTERN.pattern}"
        )
    cursor = json.dumps({"refused": sorted(warned | set(scan.refused))})
    new = [batch for batch in scan.complete if batch not in known]
    if not new:
        waiting = f"; {len(scan.incomplete)} incomplete" if scan.incomplete else ""
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"no new complete batch{waiting}"), cursor=cursor
        )
    context.log.info(f"new batches: {new}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=b, run_key=f"landed:{b}") for b in new],
        dynamic_partitions_requests=[collection_batch.build_add_request(new)],
        cursor=cursor,
    )


@dg.sensor(
    job=prepare_noise_job,
    minimum_interval_seconds=sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 60 s: starts prepare_noise (hospital_noise) when the files in "
    "landing/noise change (their fingerprint); skips when the folder is unchanged or "
    "hospital_noise already prepared it.",
)
def noise_folder_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource
) -> dg.SensorResult:
    fingerprint = noise_fingerprint(storage.layout().noise)
    if not fingerprint or fingerprint == context.cursor:
        return dg.SensorResult(skip_reason="noise folder unchanged", cursor=context.cursor)
    # a sensor with no saved state (a new instance, a first `make ui`) or a folder prepared by
    # another run (`spira demo`, the UI): hospital_noise recorded what it prepared
    latest = context.instance.get_latest_materialization_event(dg.AssetKey("hospital_noise"))
    materialization = latest.asset_materialization if latest else None
    prepared = materialization.metadata.get(FINGERPRINT_KEY) if materialization else None
    if latest is not None and prepared is not None and prepared.value == fingerprint:
        return dg.SensorResult(
            skip_reason=f"hospital_noise already prepared this folder (run {latest.run_id})",
            cursor=fingerprint,
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"noise:{fingerprint}")], cursor=fingerprint
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
