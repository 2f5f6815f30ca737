"""Drift. ``drift_reference`` (+ ``drift_reference_features``) stores what the current champion
was trained on; ``batch_drift`` compares each batch outside that data with it, metadata and
features, with a (non-blocking) drift check that the retraining sensor reads. Declaring the
reference makes a new champion, or a re-run training batch, mark every batch's drift out of
date; a batch inside the champion's training data says so instead of "no drift"."""

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
from spira_assets.assets.tables import table_out, table_result
from spira_assets.evaluation.champions import current_champion_in_audit
from spira_assets.evaluation.drift import (
    compare_with_reference,
    drifted_statements,
    not_comparable,
    reference_features,
    reference_recordings,
)
from spira_assets.partitions import collection_batch
from spira_assets.resources import DriftSettings, StorageResource
from spira_assets.storage.tables import (
    AUDIO_16K,
    BATCH_DRIFT,
    DRIFT_REFERENCE,
    DRIFT_REFERENCE_FEATURES,
    FEATURE_STATS,
    UNPARTITIONED,
)

DRIFT_CHECK = "no_drift_from_champion_data"
# the first line of the metadata: what was compared with what, or why nothing was
DRIFT_HEADLINE = "drift"


@dg.multi_asset(
    name="batch_drift",
    specs=[
        dg.AssetSpec(
            "batch_drift",
            partitions_def=collection_batch,
            deps=[
                "audio_16k",
                "feature_stats",
                "batch_checks",
                "promotions",
                "drift_reference",
                "drift_reference_features",
            ],
            code_version=versions.BATCH_DRIFT,
            group_name="monitoring",
            kinds={"python", "parquet"},
            description="Each batch outside the champion's training data against that data "
            "(drift_reference): metadata (PSI, KS) and per-coefficient feature means; a batch "
            "inside it says so instead. Read by the retraining sensor.",
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
            "when drift is not computed: no champion yet, the batch is in the champion's "
            "training data, or the drift reference is older than the champion.",
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
    means (shift in SDs) of this batch against the champion's drift reference. A
    backfill does a range of batches in one run; blocked batches are refused (a range
    materializes its other batches and fails naming them)."""
    yield from open_batches(
        context, storage.lake(), lambda batch_id: _batch_drift(context, batch_id, storage, drift)
    )


def _not_computed(batch_id: str, storage: StorageResource, why: str) -> dg.MaterializeResult:
    """An empty part and a first line that says why: Dagster shows the planned check as
    skipped (no result), never as passed."""
    storage.lake().write_part(BATCH_DRIFT, batch_id, BATCH_DRIFT.empty())
    storage.warehouse().ensure_views()
    return dg.MaterializeResult(asset_key="batch_drift", metadata={DRIFT_HEADLINE: why})


def _batch_drift(
    context: dg.AssetExecutionContext, batch_id: str, storage: StorageResource, drift: DriftSettings
) -> dg.MaterializeResult:
    from spira_assets.plots import drift_figure

    lake = storage.lake()
    # the audit table, not the MLflow store: parallel batch runs would otherwise race to
    # create a fresh SQLite tracking store
    champion = current_champion_in_audit(lake)
    reference = (
        lake.read_part(DRIFT_REFERENCE, UNPARTITIONED)
        if lake.has_part(DRIFT_REFERENCE, UNPARTITIONED)
        else DRIFT_REFERENCE.empty()
    )
    reference_model = reference["reference_model"][0] if reference.height else None
    reference_batches = sorted(set(reference["reference_batch"].to_list()))
    why = not_comparable(batch_id, champion, reference_model, reference_batches)
    if why is not None:
        context.log.info(why)
        return _not_computed(batch_id, storage, why)
    current = lake.read_part(AUDIO_16K, batch_id)
    features = lake.read_part(DRIFT_REFERENCE_FEATURES, UNPARTITIONED)
    config_hash = features["config_hash"][0] if features.height else None
    batch_stats = (
        lake.read_part(FEATURE_STATS, batch_id, config_hash)
        if config_hash and lake.has_part(FEATURE_STATS, batch_id, config_hash)
        else None
    )
    result = compare_with_reference(
        reference, current, drift.thresholds(), features, batch_stats
    ).with_columns(pl.lit(batch_id).alias("batch_id"), pl.lit(champion).alias("reference_model"))
    lake.write_part(BATCH_DRIFT, batch_id, BATCH_DRIFT.conform(result))
    storage.warehouse().ensure_views()
    summary = drifted_statements(result)
    if summary:
        context.log.warning(f"{batch_id} drifted from champion {champion}'s data: {summary}")
    figure = image(drift_figure(result), "drift against the champion's training data")
    against = (
        f"champion {champion}'s training batches {', '.join(reference_batches)} "
        f"({reference.height} recordings; {batch_id} is not among them)"
    )
    metadata = _drift_metadata(batch_id, champion, against, reference_batches, current, result)
    metadata[PLOT_DRIFT] = figure
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


def _drift_metadata(
    batch_id: str,
    champion: str | None,
    against: str,
    reference_batches: list[str],
    current: pl.DataFrame,
    result: pl.DataFrame,
) -> dict[str, Any]:
    """What the UI shows of a batch's drift (the plot aside): the headline, then the metadata
    statistics and the largest feature shift."""
    drifted = int(result.get_column("drifted").sum())
    return {
        DRIFT_HEADLINE: f"{batch_id}: {drifted} statistic(s) drifted from {against}"
        if drifted
        else f"{batch_id}: within thresholds of {against}",
        "reference_model": champion,
        "reference_batches": reference_batches,
        "recordings": current.height,
        "drifted": drifted,
        "metadata_drift": table_metadata(
            result.filter(pl.col("kind") == "metadata").select(
                "feature", "drifted", "value", "threshold", "statistic", "detail"
            )
        ),
        "max_feature_shift_sd": round(
            max(
                result.filter(pl.col("kind") == "features")["value"].fill_null(0.0).to_list(),
                default=0.0,
            ),
            3,
        ),
    }


@dg.multi_asset(
    name="drift_reference",
    outs={
        "drift_reference": table_out(
            DRIFT_REFERENCE,
            "What batch_drift compares each new batch with: every recording of the current "
            "champion's training batches (class, sex, age, device, utterance, duration). A new "
            "champion or a re-run training batch makes every batch's drift out of date.",
            "monitoring",
            versions.DRIFT_REFERENCE,
        ),
        "drift_reference_features": table_out(
            DRIFT_REFERENCE_FEATURES,
            "The feature half of the drift reference: per-coefficient mean and SD pooled over "
            "the champion's training batches (from feature_stats).",
            "monitoring",
            versions.DRIFT_REFERENCE,
        ),
    },
    deps=["promotions", "spira_model", "audio_16k", "feature_stats"],
)
def drift_reference(storage: StorageResource) -> Iterator[dg.MaterializeResult]:
    """The champion (``promotions``), its training batches (``models/<v>/lineage.json``) and
    their recordings and feature statistics, stored once for every batch's drift."""
    layout, lake = storage.layout(), storage.lake()
    champion = current_champion_in_audit(lake)
    lineage_file = layout.fetch_if_present(f"models/{champion}") / "lineage.json"
    recordings, features = DRIFT_REFERENCE.empty(), DRIFT_REFERENCE_FEATURES.empty()
    batches: list[str] = []
    if champion is not None and lineage_file.exists():
        lineage = json.loads(lineage_file.read_text())
        batches = sorted(lineage["batches"])
        config_hash = lineage["feature_config_hash"]
        recordings = DRIFT_REFERENCE.conform(
            reference_recordings(lake.read_table(AUDIO_16K), batches)
            .with_columns(pl.lit(champion).alias("reference_model"))
            .sort(pl.all())
        )
        stats = lake.read_table(FEATURE_STATS).filter(pl.col("config_hash") == config_hash)
        features = DRIFT_REFERENCE_FEATURES.conform(
            reference_features(stats, batches).with_columns(
                pl.lit(champion).alias("reference_model"), pl.lit(config_hash).alias("config_hash")
            )
        )
    lake.write_part(DRIFT_REFERENCE, UNPARTITIONED, recordings)
    lake.write_part(DRIFT_REFERENCE_FEATURES, UNPARTITIONED, features)
    storage.warehouse().ensure_views()
    headline = (
        f"champion {champion}'s training batches {', '.join(batches)}: {recordings.height} "
        f"recordings of {recordings['participant'].n_unique()} participants; batches outside "
        "them are compared with it, batches inside say so"
        if batches
        else "no champion yet: no batch's drift is computed"
    )
    yield table_result(
        DRIFT_REFERENCE,
        recordings,
        None,  # the content's digest: a new champion or changed recordings make a new version
        **{DRIFT_HEADLINE: headline, "reference_model": champion or "none"},
        reference_batches=dg.MetadataValue.json(batches),
    )
    yield table_result(DRIFT_REFERENCE_FEATURES, features)
