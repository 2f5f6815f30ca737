"""Per-batch assets that also materialize a range of batches in one run (single-run backfills).

A run started by the landing-zone sensor, ``spira materialize`` or the nightly reconcile
targets one batch; a backfill of an asset with ``BackfillPolicy.single_run()`` targets many.
``per_batch`` runs the asset's per-batch function for each batch of the run. One batch gives
its own result unchanged. A range gives one result with a row per batch, the totals of its
counts, and each check failed if it failed for any batch, naming those batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets.presentation import table_metadata

SINGLE_RUN = dg.BackfillPolicy.single_run()
SUMMED = ("dagster/row_count", "recordings", "audio_minutes", "frames", "windows", "drifted")


def per_batch(
    context: dg.AssetExecutionContext, one: Callable[[str], dg.MaterializeResult]
) -> dg.MaterializeResult:
    keys = context.partition_keys
    if len(keys) == 1:
        return one(keys[0])
    results = {}
    for done, batch_id in enumerate(keys, start=1):
        results[batch_id] = one(batch_id)
        context.log.info(f"{context.asset_key.to_user_string()}: {done}/{len(keys)} batches")
    return combine(results)


def _plain(value: Any) -> Any:
    raw = value.value if isinstance(value, dg.MetadataValue) else value
    return raw if isinstance(raw, int | float | str | bool) else None


def combine(results: dict[str, dg.MaterializeResult]) -> dg.MaterializeResult:
    rows = []
    for batch_id, result in results.items():
        plain = {k: _plain(v) for k, v in (result.metadata or {}).items()}
        rows.append({"batch_id": batch_id, **{k: v for k, v in plain.items() if v is not None}})
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
                passed=not failed,
                severity=outcomes[0][1].severity,
                metadata={"batches": len(outcomes), "failed_batches": failed},
            )
        )
    return dg.MaterializeResult(metadata=metadata, check_results=check_results)
