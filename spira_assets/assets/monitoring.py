"""Asset ``batch_drift``: each new batch against the data the current champion was trained on,
metadata and features, with a (non-blocking) drift check that the retraining sensor reads."""

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.presentation import (
    PLOT_DRIFT,
    column_schema,
    headline_first,
    image,
    table_metadata,
)
from spira_assets.assets.ranges import SINGLE_RUN, RangeEvent, open_batches
from spira_assets.ml.champions import current_champion_in_audit
from spira_assets.ml.drift import feature_drift, metadata_drift
from spira_assets.partitions import collection_batch
from spira_assets.resources import DriftSettings, StorageResource
from spira_assets.storage.tables import AUDIO_16K, BATCH_DRIFT, FEATURE_STATS

DRIFT_CHECK = "no_drift_from_champion_data"


@dg.multi_asset(
    name="batch_drift",
    specs=[
        dg.AssetSpec(
            "batch_drift",
            partitions_def=collection_batch,
            deps=["audio_16k", "feature_stats", "batch_checks", "promotions", "spira_model"],
            code_version=versions.BATCH_DRIFT,
            group_name="monitoring",
            kinds={"python", "parquet"},
            description="Each batch against the data the current champion was trained on: "
            "metadata (PSI, KS) and per-coefficient feature means; read by the retraining sensor.",
            metadata={"dagster/column_schema": column_schema(BATCH_DRIFT)},
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK,
            asset="batch_drift",
            description="Metadata (PSI, KS) and feature statistics (mean shift in SDs) of the "
            "batch are within thresholds of the champion's training data. A failure starts a "
            "retraining (retraining_sensor); it does not block the batch. Skipped (no result) "
            "while there is no champion to compare with.",
        )
    ],
    # the check is optional: with no champion there is nothing to judge, and Dagster shows a
    # check that a run planned but did not evaluate as skipped, not as passed
    can_subset=True,
    backfill_policy=SINGLE_RUN,
)
def batch_drift(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    drift: DriftSettings,
) -> Iterator[RangeEvent]:
    """Class, sex, device, utterance (PSI), age and duration (KS) and per-coefficient feature
    means (shift in SDs) of this batch against the batches the champion was trained on. A
    backfill does a range of batches in one run; blocked batches are refused (a range
    materializes its other batches and fails naming them)."""
    yield from open_batches(
        context, storage.lake(), lambda batch_id: _batch_drift(context, batch_id, storage, drift)
    )


def _batch_drift(
    context: dg.AssetExecutionContext, batch_id: str, storage: StorageResource, drift: DriftSettings
) -> dg.MaterializeResult:
    from spira_assets.plots import drift_figure

    layout, lake = storage.layout(), storage.lake()
    # the audit table, not the MLflow store: parallel batch runs would otherwise race to
    # create a fresh SQLite tracking store
    champion = current_champion_in_audit(lake)
    lineage_file = layout.fetch_if_present(f"models/{champion}") / "lineage.json"
    if champion is None or not lineage_file.exists():
        lake.write_part(BATCH_DRIFT, batch_id, BATCH_DRIFT.empty())
        storage.warehouse().ensure_views()
        return dg.MaterializeResult(
            asset_key="batch_drift",
            metadata={"reference": f"{batch_id}: no champion yet, nothing to compare with "
                      f"(the drift check is skipped)"},
        )  # fmt: skip
    lineage = json.loads(lineage_file.read_text())
    reference_batches = sorted(lineage["batches"])
    recordings = lake.read_table(AUDIO_16K)
    reference = recordings.filter(pl.col("batch_id").is_in(reference_batches))
    current = recordings.filter(pl.col("batch_id") == batch_id)
    thresholds = drift.thresholds()
    parts = [metadata_drift(reference, current, thresholds)]
    stats = lake.read_table(FEATURE_STATS).filter(
        pl.col("config_hash") == lineage["feature_config_hash"]
    )
    batch_stats = stats.filter(pl.col("batch_id") == batch_id)
    if not batch_stats.is_empty():
        parts.append(
            feature_drift(
                stats.filter(pl.col("batch_id").is_in(reference_batches)),
                batch_stats,
                thresholds,
                current.height >= thresholds.min_rows,
            )
        )
    result = pl.concat(parts).with_columns(
        pl.lit(batch_id).alias("batch_id"), pl.lit(champion).alias("reference_model")
    )
    lake.write_part(BATCH_DRIFT, batch_id, BATCH_DRIFT.conform(result))
    storage.warehouse().ensure_views()
    drifted = result.filter(pl.col("drifted"))
    summary = [
        f"{r['feature']} {r['statistic']}={r['value']:.3f} (threshold {r['threshold']:.3f})"
        + (f"; {r['detail']}" if r["detail"] else "")
        for r in drifted.iter_rows(named=True)
    ]
    if summary:
        context.log.warning(f"{batch_id} drifted from champion {champion}'s data: {summary}")
    figure = image(drift_figure(result), "drift against the champion's training data")
    metadata: dict[str, Any] = {
        "reference_model": champion,
        "reference_batches": reference_batches,
        "recordings": current.height,
        "drifted": len(summary),
        "metadata_drift": table_metadata(
            result.filter(pl.col("kind") == "metadata").select(
                "feature", "statistic", "value", "threshold", "drifted", "detail"
            )
        ),
        "max_feature_shift_sd": round(
            max(
                result.filter(pl.col("kind") == "features")["value"].fill_null(0.0).to_list(),
                default=0.0,
            ),
            3,
        ),
        PLOT_DRIFT: figure,
    }
    return dg.MaterializeResult(
        asset_key="batch_drift",
        metadata=headline_first(metadata),
        check_results=[
            dg.AssetCheckResult(
                check_name=DRIFT_CHECK,
                asset_key="batch_drift",
                passed=not summary,
                description=f"{batch_id}: "
                + (
                    f"{len(summary)} statistic(s) drifted from champion {champion}'s data"
                    if summary
                    else f"within thresholds of champion {champion}'s data"
                ),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"drifted": dg.MetadataValue.json(summary), PLOT_DRIFT: figure},
            )
        ],
    )
