"""Planted faults of the monitoring loop, each caught: an outcome for an unknown prediction, a
duplicated outcome, an outcome file with a missing column, outcomes that contradict the
predictions (the live check fails and a retraining is requested), too few outcomes (said, not
passed), inputs from another microphone (the drift check fails) and days without predictions.
The log is written as the scorers write it (``PredictionLog``); no model is run."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from upath import UPath

from spira_assets.assets.live import (
    INPUT_DRIFT_CHECK,
    LIVE_CHECK,
    live_performance,
    prediction_drift,
)
from spira_assets.assets.predictions import (
    PREDICTIONS_CHECK,
    MonitoringSettings,
    outcomes,
    predictions,
)
from spira_assets.automation.sensors import outcomes_sensor, retraining_sensor, weeks_answered
from spira_assets.evaluation.champions import current_champion_in_audit
from spira_assets.monitoring.prediction_log import (
    LOG_FOLDER,
    PredictionLog,
    PredictionRecord,
    new_prediction_id,
)
from spira_assets.monitoring.tables import OUTCOMES, PREDICTION_DRIFT
from spira_assets.resources import DriftSettings, RetrainingPolicy, StorageResource
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import (
    DRIFT_REFERENCE,
    DRIFT_REFERENCE_FEATURES,
    QUARANTINE,
    UNPARTITIONED,
)
from spira_assets_tests.monitoring_data import fresh_copy

MONITORING = MonitoringSettings(min_positive_outcomes=10, bootstrap_resamples=100)
NOW = datetime.now(UTC)
TODAY = NOW.date().isoformat()
WEEK = (NOW.date() - timedelta(days=NOW.date().weekday())).isoformat()


@pytest.fixture
def root(tmp_path: Path, champion_root: Path) -> Path:
    return fresh_copy(champion_root, tmp_path / "data")


def resources(root: Path) -> dict[str, Any]:
    return {
        "storage": StorageResource(data_dir=str(root)),
        "monitoring": MONITORING,
        "drift": DriftSettings(),
        "retraining": RetrainingPolicy(),
    }


def materialize(root: Path, asset: Any, partition: str | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize([asset], partition_key=partition, resources=resources(root),
                          raise_on_error=False)  # fmt: skip


def plant(root: Path, probabilities: list[float], shift_sd: float = 0.0) -> list[PredictionRecord]:
    """Records of the champion as a scorer writes them; feature means at the training data's
    pooled means, moved by ``shift_sd`` SDs (a new microphone)."""
    lake = Lake(UPath(root) / "lake")
    champion = current_champion_in_audit(lake)
    assert champion is not None
    stats = lake.read_part(DRIFT_REFERENCE_FEATURES, UNPARTITIONED).sort("coefficient")
    means = [m + shift_sd * s for m, s in zip(stats["mean"], stats["std"], strict=True)]
    durations = lake.read_part(DRIFT_REFERENCE, UNPARTITIONED)["duration_s"].to_list()
    log = PredictionLog(UPath(root) / LOG_FOLDER)
    records = []
    for n, probability in enumerate(probabilities):
        when = NOW - timedelta(seconds=n)
        record = PredictionRecord(
            new_prediction_id(when), when, "serving", champion, f"{n:064x}", None,
            probability, probability, int(probability >= 0.5), 0.5, 3, None,
            durations[n % len(durations)], -20.0, -3.0, means,
        )  # fmt: skip
        log.append(record)
        records.append(record)
    return records


def land(root: Path, name: str, columns: list[str], rows: list[list[object]]) -> None:
    folder = root / "landing" / "outcomes"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def quarantined(root: Path) -> pl.DataFrame:
    return Lake(UPath(root) / "lake").read_part(QUARANTINE, UNPARTITIONED, "outcomes")


def test_unknown_duplicated_and_headless_outcomes_are_quarantined_with_their_rule(
    root: Path,
) -> None:
    records = plant(root, [0.9, 0.1, 0.8])
    at = NOW.isoformat()
    columns = ["prediction_id", "spo2", "measured_at"]
    land(root, "a.csv", columns, [
        [records[0].prediction_id, 85, at],
        [records[0].prediction_id, 85, at],  # the same outcome twice
        ["20260101T000000000000Z-00000000deadbeef", 85, at],  # no such prediction
        [records[1].prediction_id, 140, at],  # no one has SpO2 140 %
    ])  # fmt: skip
    land(root, "b.csv", ["audio_sha256", "spo2", "measured_at"],
         [[records[0].audio_sha256, 90, at], [records[2].audio_sha256, 88, at]])  # fmt: skip
    land(root, "c.csv", ["prediction_id", "measured_at"], [[records[2].prediction_id, at]])
    assert materialize(root, outcomes).success
    rules = quarantined(root).select("item", "row_number", "rule").sort("item", "row_number")
    assert rules.rows() == [
        ("a.csv", 3, "duplicate_outcome"),
        ("a.csv", 4, "unknown_prediction"),
        ("a.csv", 5, "impossible_value"),
        ("b.csv", 2, "duplicate_outcome"),  # an earlier file already answered it
        ("c.csv", None, "missing_column"),  # the whole file, naming the column
    ]
    assert "spo2" in quarantined(root).filter(pl.col("rule") == "missing_column")["detail"][0]
    kept = Lake(UPath(root) / "lake").read_part(OUTCOMES, UNPARTITIONED)
    assert set(kept["audio_sha256"].to_list()) == {records[0].audio_sha256, records[2].audio_sha256}


def test_outcomes_that_contradict_the_predictions_fail_the_live_check_and_retrain(
    root: Path,
) -> None:
    # 12 people with respiratory insufficiency the model called healthy, 12 controls
    records = plant(root, [0.1] * 12 + [0.2] * 12)
    land(root, "ward.csv", ["prediction_id", "spo2", "measured_at"],
         [[r.prediction_id, 85 if n < 12 else 97, NOW.isoformat()]
          for n, r in enumerate(records)])  # fmt: skip
    assert materialize(root, predictions, TODAY).success
    assert materialize(root, outcomes).success
    live = materialize(root, live_performance, WEEK)
    assert not live.success  # blocking, ERROR
    (check,) = live.get_asset_check_evaluations()
    assert check.check_name == LIVE_CHECK and not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert "below the floor" in (check.description or "")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources(root))
        result = retraining_sensor(context)
    assert isinstance(result, dg.SensorResult) and result.run_requests
    (request,) = result.run_requests
    assert request.tags["spira/trigger"] == "live"
    assert "live sensitivity" in request.tags["spira/reason"]


def test_too_few_outcomes_say_so_instead_of_passing(root: Path) -> None:
    records = plant(root, [0.9, 0.1, 0.2])
    land(root, "ward.csv", ["prediction_id", "spo2", "measured_at"],
         [[r.prediction_id, 85, NOW.isoformat()] for r in records])  # fmt: skip
    assert materialize(root, predictions, TODAY).success
    assert materialize(root, outcomes).success
    live = materialize(root, live_performance, WEEK)
    assert live.success  # a WARN does not block
    (check,) = live.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "too few outcomes" in (check.description or "")


def test_inputs_from_another_microphone_fail_the_drift_check(root: Path) -> None:
    plant(root, [0.3, 0.6] * 15, shift_sd=3.0)
    assert materialize(root, predictions, TODAY).success
    result = materialize(root, prediction_drift, TODAY)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == INPUT_DRIFT_CHECK and not check.passed
    assert "coefficient_" in (check.description or "")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources(root))
        sensed = retraining_sensor(context)
    assert isinstance(sensed, dg.SensorResult) and sensed.run_requests
    request = sensed.run_requests[0]
    assert "input drift" in request.tags["spira/reason"]


def test_inputs_like_the_training_data_do_not_drift_whatever_the_prevalence(root: Path) -> None:
    plant(root, [0.9] * 30, shift_sd=0.0)  # every person positive: a ward, not a drift
    assert materialize(root, predictions, TODAY).success
    (check,) = materialize(root, prediction_drift, TODAY).get_asset_check_evaluations()
    assert check.passed, check.description
    rows = Lake(UPath(root) / "lake").read_part(PREDICTION_DRIFT, TODAY)
    decision = rows.filter(pl.col("feature") == "decision").row(0, named=True)
    assert decision["value"] >= decision["threshold"] and not decision["drifted"]


def test_days_without_predictions_warn(root: Path) -> None:
    result = materialize(root, predictions, TODAY)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == PREDICTIONS_CHECK and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert "no prediction logged" in (check.description or "")


def test_a_new_outcome_file_is_picked_up_once_and_its_week_recomputed(root: Path) -> None:
    records = plant(root, [0.9, 0.2])
    storage = StorageResource(data_dir=str(root))
    with dg.DagsterInstance.ephemeral() as instance:
        empty = outcomes_sensor(
            dg.build_sensor_context(instance=instance, resources=resources(root))
        )
        assert isinstance(empty, dg.SensorResult) and not empty.run_requests
        land(root, "ward.csv", ["prediction_id", "spo2", "measured_at"],
             [[records[0].prediction_id, 85, NOW.isoformat()]])  # fmt: skip
        context = dg.build_sensor_context(instance=instance, resources=resources(root))
        first = outcomes_sensor(context)
        assert isinstance(first, dg.SensorResult) and len(first.run_requests or []) == 1
        again = outcomes_sensor(
            dg.build_sensor_context(
                instance=instance, cursor=first.cursor, resources=resources(root)
            )
        )
        assert isinstance(again, dg.SensorResult) and not again.run_requests
    assert materialize(root, predictions, TODAY).success
    assert materialize(root, outcomes).success
    assert weeks_answered(storage) == [WEEK]  # live_after_outcomes asks for this week


def test_the_live_plot_draws_an_interval_that_excludes_its_point() -> None:
    """A percentile interval need not contain the point estimate (here the estimate sits a
    rounding below a degenerate [1, 1] interval, and above a skewed one): the figure draws it
    instead of failing the asset (matplotlib refuses negative error bars)."""
    from spira_assets.monitoring.plots import live_figure

    history = pl.DataFrame(
        {
            "batch_id": ["2026-W48", "2026-W49"] * 4,
            "model_version": ["v1"] * 8,
            "metric": ["sensitivity"] * 2 + ["specificity"] * 2 + ["auroc"] * 2 + ["ece"] * 2,
            "value": [1.0 - 1e-16, 0.5, 0.9, 0.8, 0.7, 0.6, 0.1, 0.2],
            "ci_low": [1.0, 0.55, 0.8, 0.7, 0.6, 0.5, 0.05, 0.1],
            "ci_high": [1.0, 0.9, 0.95, 0.9, 0.8, 0.7, 0.2, 0.3],
            "test_value": [0.9] * 8,
        }
    )
    assert live_figure(history, 0.8).startswith(b"\x89PNG")
