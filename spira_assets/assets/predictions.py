"""The champion at work, first half: ``predictions`` (one partition per UTC day, compacted from
the prediction log every scorer appends to) and ``outcomes`` (clinical SpO2 landed in
``landing/outcomes/``, validated and quarantined like every other input). The core is
``spira_assets/monitoring/``; these are thin adapters."""

from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from spira_assets.assets.presentation import (
    PLOT,
    column_schema,
    data_version,
    headline_first,
    image,
    table_metadata,
)
from spira_assets.monitoring.config import MonitoringConfig
from spira_assets.monitoring.outcomes import OUTCOMES_FOLDER, STAGE, outcome_files
from spira_assets.monitoring.prediction_log import LOG_FOLDER, PredictionLog
from spira_assets.monitoring.tables import MONITORING_TABLES, OUTCOMES, PREDICTIONS
from spira_assets.resources import StorageResource
from spira_assets.storage.tables import ALL_TABLES, QUARANTINE, UNPARTITIONED

MONITORING_CODE_VERSION = "monitoring-1"
PREDICTIONS_CHECK = "predictions_arriving"
PLOT_SCORES = PLOT + "probabilities of the day by decision (threshold dashed)"
PREVIEW_COLUMNS = ("scored_at", "source", "model_version", "participant", "probability",
                   "decision", "threshold", "duration_s", "rms_dbfs", "error")  # fmt: skip
_DEFAULTS = MonitoringConfig()

prediction_day = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)


class MonitoringSettings(dg.ConfigurableResource):
    """The monitoring loop (``MonitoringConfig``): what an outcome means, when the live check
    can judge and fails, when missing predictions warn, and whether failures retrain."""

    spo2_threshold: int = Field(default=_DEFAULTS.spo2_threshold, description="SpO2 below: RI.")
    sensitivity_floor: float = Field(
        default=_DEFAULTS.sensitivity_floor, description="Live sensitivity below: check fails."
    )
    min_positive_outcomes: int = Field(
        default=_DEFAULTS.min_positive_outcomes,
        description="Positive outcomes a model needs in a week before it is judged.",
    )
    max_days_without_predictions: int = Field(
        default=_DEFAULTS.max_days_without_predictions,
        description="Days without any prediction that make predictions_arriving warn.",
    )
    retrain_on_live_failure: bool = Field(
        default=_DEFAULTS.retrain_on_live_failure,
        description="A failed live check or drifted inputs start a retraining.",
    )
    bootstrap_resamples: int = Field(default=_DEFAULTS.bootstrap_resamples)

    def config(self) -> MonitoringConfig:
        return MonitoringConfig(**{f.name: getattr(self, f.name) for f in fields(MonitoringConfig)})


prediction_log = dg.AssetSpec(
    "prediction_log",
    description=f"What every scorer appends (<data root>/{LOG_FOLDER}/<day>/<id>.json): "
    "spira predict and the served MLflow model, one record per scored file.",
    group_name="champion_at_work",
    kinds={"json"},
)
landing_outcomes = dg.AssetSpec(
    "landing_outcomes",
    description=f"Clinical outcomes (measured SpO2) as CSV files in landing/{OUTCOMES_FOLDER}/.",
    group_name="champion_at_work",
    kinds={"csv"},
)


def ensure_views(storage: StorageResource) -> None:
    storage.warehouse().ensure_views((*ALL_TABLES, *MONITORING_TABLES))


def log_frame(storage: StorageResource, day: date) -> pl.DataFrame:
    log = PredictionLog(storage.layout().root / LOG_FOLDER)
    records = [
        {**r.__dict__, "batch_id": day.isoformat()} for r in sorted(
            log.read_day(day), key=lambda r: r.prediction_id)
    ]  # fmt: skip
    return PREDICTIONS.conform(pl.DataFrame(records)) if records else PREDICTIONS.empty()


def arrival(storage: StorageResource, day: date, settings: MonitoringConfig) -> tuple[bool, str]:
    """Whether any prediction was logged in the last N days up to ``day``."""
    log = PredictionLog(storage.layout().root / LOG_FOLDER)
    window = [day - timedelta(days=i) for i in range(settings.max_days_without_predictions)]
    counts = {d: len(log.files(d)) for d in window}
    total = sum(counts.values())
    since = f"{window[-1].isoformat()}..{day.isoformat()}"
    if total:
        return True, f"{total} predictions logged in {since}"
    return False, (
        f"no prediction logged in {since} ({settings.max_days_without_predictions} days): is the "
        "model served, and does it know the data root (SPIRA_DATA_DIR, SPIRA_PREDICTION_LOG)?"
    )


@dg.asset(
    partitions_def=prediction_day,
    deps=[prediction_log],
    group_name="champion_at_work",
    code_version=MONITORING_CODE_VERSION,
    kinds={"python", "parquet"},
    metadata={"dagster/column_schema": column_schema(PREDICTIONS)},
    check_specs=[
        dg.AssetCheckSpec(
            PREDICTIONS_CHECK,
            asset="predictions",
            description="Predictions arrive: a WARN when none was logged for "
            "MonitoringSettings.max_days_without_predictions days (default 3).",
        )
    ],
    description="The day's predictions from the log (pseudonyms only, never a raw id or a "
    "file path): one row per scored file, queryable as the warehouse view `predictions`.",
)
def predictions(
    context: dg.AssetExecutionContext, storage: StorageResource, monitoring: MonitoringSettings
) -> dg.MaterializeResult:
    from spira_assets.monitoring.plots import score_histogram

    day = date.fromisoformat(context.partition_key)
    frame = log_frame(storage, day)
    storage.lake().write_part(PREDICTIONS, day.isoformat(), frame)
    ensure_views(storage)
    arriving, said = arrival(storage, day, monitoring.config())
    scored = frame.filter(pl.col("probability").is_not_null())
    versions = sorted(set(frame.get_column("model_version").to_list()))
    thresholds = scored.get_column("threshold").unique().to_list()
    metadata: dict[str, Any] = {
        "predictions": f"{day}: {frame.height} predictions ({scored.height} scored, "
        f"{frame.height - scored.height} errors) by model(s) {', '.join(versions) or 'none'}",
        "dagster/row_count": frame.height,
        "positive_decisions": int(scored.get_column("decision").sum() or 0),
        "by_source": dg.MetadataValue.json(
            dict(frame.group_by("source").len().sort("source").iter_rows())
        ),
        "with_pseudonym": frame.get_column("participant").is_not_null().sum(),
        "model_versions": dg.MetadataValue.json(versions),
        "preview": table_metadata(frame.select(PREVIEW_COLUMNS).sort("scored_at"), limit=20),
        PLOT_SCORES: image(
            score_histogram(frame, thresholds[0] if len(thresholds) == 1 else None),
            "probabilities of the day",
        ),
    }
    return dg.MaterializeResult(
        metadata=headline_first(metadata),
        data_version=data_version(frame.get_column("prediction_id").to_list()),
        check_results=[
            dg.AssetCheckResult(
                check_name=PREDICTIONS_CHECK,
                passed=arriving,
                severity=dg.AssetCheckSeverity.WARN,
                description=said,
            )
        ],
    )


@dg.asset(
    deps=[landing_outcomes, prediction_log],
    group_name="champion_at_work",
    code_version=MONITORING_CODE_VERSION,
    kinds={"python", "parquet"},
    metadata={"dagster/column_schema": column_schema(OUTCOMES)},
    description="Measured SpO2 of scored recordings (landing/outcomes/*.csv), validated with "
    "pandera; unknown predictions, duplicates, impossible values and files with a missing "
    "column go to `quarantine` (stage outcomes) with their rule.",
)
def outcomes(storage: StorageResource, monitoring: MonitoringSettings) -> dg.MaterializeResult:
    from spira_assets.ingest.quarantine import counts_by_rule, quarantine_frame
    from spira_assets.monitoring.outcomes import resolve_outcomes

    layout, lake = storage.layout(), storage.lake()
    log = PredictionLog(layout.root / LOG_FOLDER)
    known = pl.DataFrame(
        [(r.prediction_id, r.audio_sha256) for r in log],
        schema={"prediction_id": pl.String, "audio_sha256": pl.String},
        orient="row",
    )
    files = outcome_files(layout.landing / OUTCOMES_FOLDER)
    result = resolve_outcomes(files, known, monitoring.spo2_threshold)
    now = datetime.now(UTC)
    rejected = quarantine_frame(UNPARTITIONED, STAGE, result.rejections, now)
    lake.write_part(OUTCOMES, UNPARTITIONED, result.accepted)
    lake.write_part(QUARANTINE, UNPARTITIONED, rejected, sub=STAGE)
    ensure_views(storage)
    accepted = result.accepted
    metadata: dict[str, Any] = {
        "outcomes": f"{accepted.height} outcomes accepted from {len(files)} file(s), "
        f"{len(result.rejections)} quarantined; {int(accepted.get_column('label').sum())} with "
        f"SpO2 below {monitoring.spo2_threshold} %",
        "dagster/row_count": accepted.height,
        "files": dg.MetadataValue.json(result.files),
        "quarantined_by_rule": dg.MetadataValue.json(counts_by_rule(rejected)),
        "quarantine": table_metadata(
            rejected.select("item", "row_number", "column", "rule", "detail")
        ),
        "preview": table_metadata(accepted.drop("batch_id"), limit=20),
    }
    return dg.MaterializeResult(
        metadata=headline_first(metadata), data_version=data_version([accepted.write_csv()])
    )
