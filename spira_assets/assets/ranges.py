"""Per-batch assets that also materialize a range of batches in one run (single-run backfills).

A run started by the landing-zone sensor, ``spira materialize`` or the nightly reconcile
targets one batch; a backfill of an asset with ``BackfillPolicy.single_run()`` targets many.
``per_batch`` runs the asset's per-batch function for each batch of the run (``per_batch_outputs``
for a multi-asset, whose function gives one result per output). One batch gives its own
results unchanged. A range gives one result per output with a row per batch (each batch's own
data version among its columns), the totals of its counts, a data version digested from the
batches' versions (Dagster records one data version for every partition of a range run), and
each check failed if it failed for any batch, naming those batches.

``open_batches`` / ``open_batch_outputs`` do the same for the assets downstream of the ingest
checks: a batch blocked by a failed ingest check (``ingest.gates``) fails only itself. A run of one
batch, or a range of blocked batches only, fails as a whole. A range with some blocked
batches materializes the others, each as its own partition (a materialization per batch
with its data version, code version and input provenance, as Dagster records them for a
materialized output, and its check results), then fails naming the blocked ones: Dagster's
asset backfill counts a range run's partitions that were not materialized as failed, the
others as materialized (Dagster 1.13 has no result type for one partition of a range).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets.presentation import data_version, table_metadata
from spira_assets.ingest.gates import blocked_batches, describe_blocked
from spira_assets.storage.lake import Lake

SINGLE_RUN = dg.BackfillPolicy.single_run()
SUMMED = ("dagster/row_count", "recordings", "audio_minutes", "frames", "windows", "drifted")


RangeEvent = dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckEvaluation
REFUSAL = ". Fix the batch upload and re-materialize raw_audio and validated_metadata."


def per_batch(
    context: dg.AssetExecutionContext, one: Callable[[str], dg.MaterializeResult]
) -> dg.MaterializeResult:
    (result,) = per_batch_outputs(context, lambda batch_id: (one(batch_id),))
    return result


def per_batch_outputs(
    context: dg.AssetExecutionContext,
    one: Callable[[str], tuple[dg.MaterializeResult, ...]],
) -> tuple[dg.MaterializeResult, ...]:
    keys = context.partition_keys
    if len(keys) == 1:
        return one(keys[0])
    by_output: dict[int, dict[str, dg.MaterializeResult]] = {}
    for done, batch_id in enumerate(keys, start=1):
        for position, result in enumerate(one(batch_id)):
            by_output.setdefault(position, {})[batch_id] = result
        context.log.info(f"{context.op_def.name}: {done}/{len(keys)} batches")
    return tuple(combine(results) for _, results in sorted(by_output.items()))


def open_batches(
    context: dg.AssetExecutionContext, lake: Lake, one: Callable[[str], dg.MaterializeResult]
) -> Iterator[RangeEvent]:
    """``per_batch`` over the batches not blocked by a failed ingest check (see the module)."""
    yield from open_batch_outputs(context, lake, lambda batch_id: (one(batch_id),))


def open_batch_outputs(
    context: dg.AssetExecutionContext,
    lake: Lake,
    one: Callable[[str], tuple[dg.MaterializeResult, ...]],
) -> Iterator[RangeEvent]:
    """``per_batch_outputs``, or (some batches blocked) one materialization per open batch and
    a failure naming the blocked ones; no open batch at all: the failure alone."""
    keys = context.partition_keys
    blocked = blocked_batches(lake, keys)
    open_keys = [k for k in keys if k not in blocked]
    if not open_keys:
        raise _refused(blocked)
    if not blocked:
        yield from per_batch_outputs(context, one)
        return
    for batch_id in open_keys:
        for result in one(batch_id):
            yield from partition_events(context, batch_id, result)
    context.log.error(f"materialized {open_keys}; {describe_blocked(blocked)}")
    raise _refused(blocked, materialized=open_keys)


def _refused(blocked: dict[str, list[str]], materialized: list[str] | None = None) -> dg.Failure:
    """The step's failure: every blocked batch and why (and the batches it did materialize)."""
    done = f"; the range's other batches were materialized: {materialized}" if materialized else ""
    return dg.Failure(
        description=describe_blocked(blocked) + REFUSAL + done,
        metadata={
            "blocked_batches": dg.MetadataValue.json(blocked),
            "materialized_batches": dg.MetadataValue.json(materialized or []),
        },
    )


def _provenance(context: dg.AssetExecutionContext, key: dg.AssetKey, batch_id: str) -> dict:
    """The input data version and event of each dependency (for ``batch_id`` where the
    dependency is partitioned), the tags Dagster puts on a materialized output: without them
    the partition would look stale ("has a new dependency")."""
    graph = context.job_def.asset_layer.asset_graph
    tags = {}
    for dep in sorted(graph.get(key).parent_keys):
        partitions = [batch_id] if graph.get(dep).is_partitioned else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dep, asset_partitions=partitions), limit=1
        ).records
        event = records[0].asset_materialization if records else None
        version = event.tags.get("dagster/data_version") if event is not None else None
        name = dep.to_user_string()  # no record: what Dagster writes for it (INITIAL, NULL)
        tags[f"dagster/input_data_version/{name}"] = version or "INITIAL"
        tags[f"dagster/input_event_pointer/{name}"] = (
            str(records[0].storage_id) if records else "NULL"
        )
    return tags


def partition_events(
    context: dg.AssetExecutionContext, batch_id: str, result: dg.MaterializeResult
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """One batch's result as a materialization of its own partition, and its check results."""
    key = result.asset_key or context.assets_def.key
    tags = {"dagster/code_version": context.assets_def.code_versions_by_key[key] or ""}
    if result.data_version is not None:
        tags |= {
            "dagster/data_version": result.data_version.value,
            "dagster/data_version_is_user_provided": "true",
        }
    yield dg.AssetMaterialization(
        asset_key=key,
        partition=batch_id,
        metadata=result.metadata,
        tags=tags | _provenance(context, key, batch_id),
    )
    for check in result.check_results or []:
        yield dg.AssetCheckEvaluation(
            asset_key=check.asset_key or key,
            check_name=str(check.check_name),
            passed=bool(check.passed),
            metadata=check.metadata,
            severity=check.severity,
            description=check.description,
            partition=batch_id,
        )


def _plain(value: Any) -> Any:
    raw = value.value if isinstance(value, dg.MetadataValue) else value
    return raw if isinstance(raw, int | float | str | bool) else None


def combine(results: dict[str, dg.MaterializeResult]) -> dg.MaterializeResult:
    rows = []
    for batch_id, result in results.items():
        plain = {k: _plain(v) for k, v in (result.metadata or {}).items()}
        version = {"data_version": result.data_version.value} if result.data_version else {}
        rows.append(
            {"batch_id": batch_id, **version, **{k: v for k, v in plain.items() if v is not None}}
        )
    table = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    metadata: dict[str, Any] = {"batches": len(results), "per_batch": table_metadata(table)}
    for key in SUMMED:
        if key in table.columns and table.schema[key].is_numeric():
            metadata[key] = table.get_column(key).sum()
    checks: dict[str, list[tuple[str, dg.AssetCheckResult]]] = {}
    for batch_id, result in results.items():
        for check in result.check_results or []:
            checks.setdefault(str(check.check_name), []).append((batch_id, check))
    check_results = []
    for name, outcomes in checks.items():
        failed = [batch_id for batch_id, check in outcomes if not check.passed]
        check_results.append(
            dg.AssetCheckResult(
                check_name=name,
                asset_key=outcomes[0][1].asset_key,
                passed=not failed,
                severity=outcomes[0][1].severity,
                metadata={"batches": len(outcomes), "failed_batches": failed},
            )
        )
    versions = [(b, r.data_version.value) for b, r in results.items() if r.data_version]
    first = next(iter(results.values()))
    return dg.MaterializeResult(
        asset_key=first.asset_key,
        metadata=metadata,
        check_results=check_results,
        data_version=data_version(sorted(versions)) if versions else None,
    )
