"""Settings of the monitoring loop, as a value (no Dagster; ``MonitoringSettings`` carries
them in the Dagster layer)."""

from __future__ import annotations

from dataclasses import dataclass

from spira_assets.ingest.schemas import SPO2_RI_THRESHOLD


@dataclass(frozen=True)
class MonitoringConfig:
    # an outcome below this SpO2 is respiratory insufficiency (SPIRA's definition, < 92 %)
    spo2_threshold: int = SPO2_RI_THRESHOLD
    # the live sensitivity below which the champion is failing (the gate's own floor)
    sensitivity_floor: float = 0.80
    # positive outcomes (recordings) a model version needs in a week before its sensitivity
    # is judged; with fewer the live check says "too few outcomes", it never passes silently
    min_positive_outcomes: int = 10
    # days without a single prediction that make the predictions check warn
    max_days_without_predictions: int = 3
    # a failed live check or an input-drift day requests a retraining (retraining_sensor)
    retrain_on_live_failure: bool = True
    bootstrap_resamples: int = 1000
