"""The landing-zone sensor: one partition and one run per newly completed batch."""

import json

import dagster as dg

from spira_assets.batches import BATCH_ID_PATTERN, scan_landing
from spira_assets.deployment import sensor_interval
from spira_assets.ingest.noise_folder import FINGERPRINT_KEY, noise_fingerprint
from spira_assets.jobs import prepare_noise_job, process_batch_job
from spira_assets.partitions import COLLECTION_BATCH, collection_batch
from spira_assets.resources import StorageResource


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
