"""Per-batch assets that also materialize a range of batches in one run (single-run backfills).

A run started by the landing-zone sensor, ``spira materialize`` or the nightly reconcile
targets one batch; a backfill of an asset with ``BackfillPolicy.single_run()`` targets many.
``per_batch`` runs the asset's per-batch function for each batch of the run (``per_batch_outputs``
for a multi-asset, whose function gives one result per output). One batch gives its own
results unchanged. A range gives one result per output with a row per batch (each batch's own
data version among its columns), the totals of its counts, a data version digested from the
batches' versions (Dagster records one data version for every partition of a range run), and
each check failed if it failed for any batch, naming those batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets.presentation import data_version, table_metadata

SINGLE_RUN = dg.BackfillPolicy.single_run()
SUMMED = ("dagster/row_count", "recordings", "audio_minutes", "frames", "windows", "drifted")


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
