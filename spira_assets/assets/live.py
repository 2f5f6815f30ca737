"""The champion at work, second half: ``live_performance`` (one partition per week: the week's
predictions joined with their outcomes, per model version, with intervals, beside the model's
test figures) and ``prediction_drift`` (one partition per day: the day's inputs and answers
against the champion's training data). Their checks feed the retraining sensor through the
stored rows (``live_retraining_reason``)."""

from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from spira_assets import environment
from spira_assets.assets.links import mlflow_ui, report_url
from spira_assets.assets.predictions import (
    MONITORING_CODE_VERSION,
    MonitoringSettings,
    ensure_views,
    prediction_day,
)
from spira_assets.assets.presentation import (
    PLOT,
    PLOT_DRIFT,
    column_schema,
    data_version,
    headline_first,
    image,
    table_metadata,
)
from spira_assets.evaluation.champions import current_champion_in_audit
from spira_assets.ml.tracking import REGISTERED_MODEL
from spira_assets.monitoring.live import sensitivity_verdict, week_days
from spira_assets.monitoring.tables import LIVE_PERFORMANCE, PREDICTION_DRIFT, PREDICTIONS
from spira_assets.resources import DriftSettings, StorageResource
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import (
    DRIFT_REFERENCE,
    DRIFT_REFERENCE_FEATURES,
    EVALUATION_METRICS,
    MODEL_VERSIONS,
    UNPARTITIONED,
)

LIVE_CHECK = "live_sensitivity_above_floor"
INPUT_DRIFT_CHECK = "no_input_drift_from_champion_data"
PLOT_LIVE = PLOT + "weekly live metrics with 95% intervals (test figures dashed, floor dotted)"

prediction_week = dg.WeeklyPartitionsDefinition(start_date="2025-01-06", day_offset=1, end_offset=1)


def _week_predictions(lake: Lake, week: date) -> pl.DataFrame:
    parts = [
        lake.read_part(PREDICTIONS, day)
        for day in week_days(week)
        if lake.has_part(PREDICTIONS, day)
    ]
    return pl.concat(parts) if parts else PREDICTIONS.empty()


def _test_figures(lake: Lake, versions: list[str]) -> dict[str, dict[str, float]]:
    """Each version's own test figures (clean, per recording) from its evaluation."""
    figures: dict[str, dict[str, float]] = {}
    for version in versions:
        if not lake.has_part(EVALUATION_METRICS, version):
            continue
        rows = lake.read_part(EVALUATION_METRICS, version).filter(
            (pl.col("model_version") == version)
            & (pl.col("condition") == "clean")
            & (pl.col("level") == "recording")
        )
        figures[version] = dict(rows.select("metric", "value").iter_rows())
    return figures


def _version_links(lake: Lake, versions: list[str]) -> dict[str, Any]:
    registered = dict(
        lake.read_table(MODEL_VERSIONS).select("model_version", "registered_version").iter_rows()
    )
    base = mlflow_ui(environment.setting(environment.TRACKING_URI_ENV))
    links: dict[str, Any] = {}
    for version in versions:
        if registered.get(version):
            links[f"mlflow_model_version {version}"] = dg.MetadataValue.url(
                f"{base}/#/models/{REGISTERED_MODEL}/versions/{registered[version]}"
            )
        links[f"model_card {version}"] = report_url(version, "model_card.html")
    return links


@dg.asset(
    partitions_def=prediction_week,
    deps=["predictions", "outcomes", "evaluation_metrics", "model_versions"],
    group_name="champion_at_work",
    code_version=MONITORING_CODE_VERSION,
    kinds={"python", "parquet"},
    metadata={"dagster/column_schema": column_schema(LIVE_PERFORMANCE)},
    check_specs=[
        dg.AssetCheckSpec(
            LIVE_CHECK,
            asset="live_performance",
            blocking=True,
            description="Live sensitivity of every model that scored this week is at or above "
            "MonitoringSettings.sensitivity_floor (0.80), judged only with at least "
            "min_positive_outcomes (10) positive outcomes: with fewer it fails as a WARN saying "
            "'too few outcomes', never passes silently. An ERROR starts a retraining.",
        )
    ],
    description="The week's predictions joined with their clinical outcomes, per model "
    "version: sensitivity, specificity, AUROC, calibration error (ECE), accuracy and Brier "
    "with participant-bootstrap 95% intervals and counts, beside the model's test figures.",
)
def live_performance(
    context: dg.AssetExecutionContext, storage: StorageResource, monitoring: MonitoringSettings
) -> dg.MaterializeResult:
    from spira_assets.monitoring.live import live_performance as compute
    from spira_assets.monitoring.live import scored_with_outcomes
    from spira_assets.monitoring.plots import live_figure
    from spira_assets.monitoring.tables import OUTCOMES

    lake, config = storage.lake(), monitoring.config()
    week = date.fromisoformat(context.partition_key)
    scored = _week_predictions(lake, week)
    found = lake.has_part(OUTCOMES, UNPARTITIONED)
    outcomes = lake.read_part(OUTCOMES, UNPARTITIONED) if found else OUTCOMES.empty()
    joined = scored_with_outcomes(scored, outcomes)
    versions = sorted(set(joined.get_column("model_version").to_list()))
    rows = compute(week.isoformat(), joined, _test_figures(lake, versions), config)
    lake.write_part(LIVE_PERFORMANCE, week.isoformat(), rows)
    ensure_views(storage)
    passed, said = sensitivity_verdict(rows, config)
    history = lake.read_table(LIVE_PERFORMANCE).filter(pl.col("model_version").is_in(versions))
    metadata: dict[str, Any] = {
        "live": f"week of {week}: {scored.height} predictions, {joined.height} recordings with "
        f"an outcome; {said}",
        "dagster/row_count": rows.height,
        "recordings_with_outcome": joined.height,
        "model_versions": dg.MetadataValue.json(versions),
        **_version_links(lake, versions),
        "metrics": table_metadata(
            rows.select(
                "model_version",
                "metric",
                "value",
                "ci_low",
                "ci_high",
                "test_value",
                "recordings",
                "positives",
                "negatives",
            )
        ),
    }
    if history.height:
        metadata[PLOT_LIVE] = image(live_figure(history, config.sensitivity_floor), "live")
    return dg.MaterializeResult(
        metadata=headline_first(metadata),
        data_version=data_version([rows.write_csv()]),
        check_results=[
            dg.AssetCheckResult(
                check_name=LIVE_CHECK,
                passed=bool(passed),
                severity=dg.AssetCheckSeverity.WARN
                if passed is None
                else dg.AssetCheckSeverity.ERROR,
                description=said,
            )
        ],
    )


@dg.asset(
    partitions_def=prediction_day,
    deps=["predictions", "drift_reference", "drift_reference_features", "promotions"],
    group_name="champion_at_work",
    code_version=MONITORING_CODE_VERSION,
    kinds={"python", "parquet"},
    metadata={"dagster/column_schema": column_schema(PREDICTION_DRIFT)},
    check_specs=[
        dg.AssetCheckSpec(
            INPUT_DRIFT_CHECK,
            asset="prediction_drift",
            description="The day's inputs (duration, per-coefficient feature means) are "
            "within batch_drift's thresholds of the champion's training data (the decision "
            "share is reported, not judged: prevalence differs from training). "
            "A failure starts a retraining (retraining_sensor); days under DriftSettings."
            "min_rows scored recordings are reported, never failed.",
        )
    ],
    description="The champion's predictions of the day against its training data "
    "(drift_reference): duration (KS) and feature means (shift in SDs), with batch_drift's "
    "statistics and thresholds; the share of positive decisions against the class balance "
    "(PSI) is reported.",
)
def prediction_drift(
    context: dg.AssetExecutionContext, storage: StorageResource, drift: DriftSettings
) -> dg.MaterializeResult:
    from spira_assets.monitoring.input_drift import prediction_drift as compute
    from spira_assets.plots import drift_figure

    lake, day = storage.lake(), context.partition_key
    champion = current_champion_in_audit(lake)
    day_rows = lake.read_part(PREDICTIONS, day) if lake.has_part(PREDICTIONS, day) else None
    has_ref = lake.has_part(DRIFT_REFERENCE, UNPARTITIONED)
    reference = lake.read_part(DRIFT_REFERENCE, UNPARTITIONED) if has_ref else None
    ref_model = (
        reference["reference_model"][0] if reference is not None and reference.height else None
    )
    if champion is None or day_rows is None or reference is None or ref_model != champion:
        why = (
            "no champion yet" if champion is None
            else "predictions of the day not materialized" if day_rows is None
            else f"the drift reference is for {ref_model}, the champion is {champion}: "
            "materialize drift_reference"
        )  # fmt: skip
        lake.write_part(PREDICTION_DRIFT, day, PREDICTION_DRIFT.empty())
        return dg.MaterializeResult(metadata={"drift": f"{day}: not computed, {why}"})
    mine = day_rows.filter(pl.col("model_version") == champion)
    features = lake.read_part(DRIFT_REFERENCE_FEATURES, UNPARTITIONED)
    result = compute(reference, features, mine, drift.thresholds()).with_columns(
        pl.lit(day).alias("batch_id"), pl.lit(champion).alias("reference_model")
    )
    lake.write_part(PREDICTION_DRIFT, day, PREDICTION_DRIFT.conform(result))
    ensure_views(storage)
    drifted = result.filter(pl.col("drifted"))
    said = (
        f"{day}: {drifted.height} statistic(s) of champion {champion}'s {mine.height} "
        f"predictions drifted from its training data: {', '.join(drifted['feature'].to_list())}"
        if drifted.height
        else f"{day}: champion {champion}'s {mine.height} predictions within thresholds of its "
        "training data" + ("" if mine.height >= drift.min_rows else f" (under {drift.min_rows}: "
                           "reported, never flagged)")
    )  # fmt: skip
    figure = image(drift_figure(result), "prediction drift")
    return dg.MaterializeResult(
        metadata=headline_first(
            {
                "drift": said,
                "reference_model": champion,
                "predictions": mine.height,
                "drifted": drifted.height,
                "statistics": table_metadata(
                    result.select(
                        "kind", "feature", "statistic", "value", "threshold", "drifted", "detail"
                    )
                ),
                PLOT_DRIFT: figure,
            }
        ),
        data_version=data_version([result.write_csv()]),
        check_results=[
            dg.AssetCheckResult(
                check_name=INPUT_DRIFT_CHECK,
                passed=drifted.is_empty(),
                severity=dg.AssetCheckSeverity.WARN,
                description=said,
            )
        ],
    )


def live_retraining_reason(lake: Lake, recent_days: int = 14) -> tuple[str | None, list[str]]:
    """Why the current champion should be retrained from what it did (a judged week below the
    floor, or a drifted day within ``recent_days``), and the signals (for the run key)."""
    champion = current_champion_in_audit(lake)
    if champion is None:
        return None, []
    live = lake.read_table(LIVE_PERFORMANCE).filter(
        (pl.col("model_version") == champion)
        & (pl.col("metric") == "sensitivity")
        & pl.col("below_floor")
    )
    since = (date.today() - timedelta(days=recent_days)).isoformat()
    drifted = lake.read_table(PREDICTION_DRIFT).filter(
        (pl.col("reference_model") == champion) & pl.col("drifted") & (pl.col("batch_id") >= since)
    )
    signals = [f"live:{champion}:{w}" for w in sorted(set(live["batch_id"].to_list()))] + [
        f"input-drift:{champion}:{d}" for d in sorted(set(drifted["batch_id"].to_list()))
    ]
    if not signals:
        return None, []
    parts = []
    if live.height:
        worst = live.sort("value").row(0, named=True)
        parts.append(
            f"live sensitivity of champion {champion} {worst['value']:.2f} below the floor in "
            f"week {worst['batch_id']} ({worst['positives']} positive outcomes)"
        )
    if drifted.height:
        parts.append(f"input drift of champion {champion}'s predictions on "
                     f"{', '.join(sorted(set(drifted['batch_id'].to_list())))}")  # fmt: skip
    return "; ".join(parts), signals
