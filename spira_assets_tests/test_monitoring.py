"""The champion at work, end to end: 20 demo recordings scored through the served pyfunc
(loaded from the registry) and through ``spira predict``, their outcomes landed, and
``live_performance`` equal to a hand computation of the same figures."""

from __future__ import annotations

import base64
import csv
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score
from upath import UPath

from spira_assets.assets.live import live_performance, prediction_drift
from spira_assets.assets.predictions import MonitoringSettings, outcomes, predictions
from spira_assets.cli import main
from spira_assets.ml.tracking import REGISTERED_MODEL, default_tracking_uri
from spira_assets.monitoring.prediction_log import LOG_FOLDER, PredictionLog
from spira_assets.monitoring.tables import LIVE_PERFORMANCE, OUTCOMES, PREDICTION_DRIFT
from spira_assets.resources import DriftSettings, StorageResource
from spira_assets.storage.lake import Lake
from spira_assets_tests.monitoring_data import fresh_copy

BATCH = "demo-001"


RESAMPLES = 200
MONITORING = MonitoringSettings(min_positive_outcomes=5, bootstrap_resamples=RESAMPLES)


def this_week() -> str:
    today = datetime.now(UTC).date()
    return (today - timedelta(days=today.weekday())).isoformat()


def materialize(
    root: Path, assets: list[Any], partition: str | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=partition,
        resources={
            "storage": StorageResource(data_dir=str(root)),
            "monitoring": MONITORING,
            "drift": DriftSettings(),
        },
        raise_on_error=False,
    )


def land_outcomes(root: Path, name: str, rows: list[dict[str, object]], columns: list[str]) -> None:
    folder = root / "landing" / "outcomes"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def recordings(root: Path, count: int) -> list[dict[str, str]]:
    """``count`` recordings of the batch, alternating patients and controls."""
    with (root / "landing" / BATCH / "metadata.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    patients = [r for r in rows if r["label"] == "1"]
    controls = [r for r in rows if r["label"] == "0"]
    chosen = [r for pair in zip(patients, controls, strict=False) for r in pair][:count]
    assert len(chosen) == count
    return chosen


def hand_ece(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = (scores >= low) & ((scores < high) if b < bins - 1 else (scores <= high))
        if inside.any():
            total += inside.sum() / len(scores) * abs(labels[inside].mean() - scores[inside].mean())
    return total


@pytest.mark.slow
def test_scores_then_outcomes_give_the_hand_computed_live_performance(
    tmp_path: Path, champion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fresh_copy(champion_root, tmp_path / "data")
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    chosen = recordings(root, 20)
    served, by_cli = chosen[:10], chosen[10:]
    # the served model, as `mlflow models serve` loads it: from the registry, by alias
    mlflow.set_tracking_uri(default_tracking_uri(root))
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@champion")
    audio = [(root / "landing" / BATCH / r["audio_path"]).read_bytes() for r in served]
    frame = model.predict(
        pd.DataFrame(
            {
                "audio_base64": [base64.b64encode(a).decode() for a in audio],
                "participant": [r["participant_id"] for r in served],
            }
        )
    )
    assert frame["error"].isna().all()
    files = [str(root / "landing" / BATCH / r["audio_path"]) for r in by_cli]
    result = CliRunner().invoke(main, ["predict", *files, "--data-dir", str(root)])
    assert result.exit_code == 0, result.output

    unlogged = CliRunner().invoke(main, ["predict", files[0], "--no-log", "--data-dir", str(root)])
    assert unlogged.exit_code == 0, unlogged.output
    log = list(PredictionLog(UPath(root) / LOG_FOLDER))
    assert len(log) == 20 and {r.source for r in log} == {"serving", "cli"}
    text = "".join(p.read_text() for p in (root / LOG_FOLDER).rglob("*.json"))
    for r in chosen:  # never a raw id or a file name (which may carry one)
        assert r["participant_id"] not in text and Path(r["audio_path"]).name not in text
    assert all(len(r.feature_means or []) == 40 and r.duration_s for r in log)

    # outcomes: by prediction id for the served ones, by audio hash for the CLI's
    spo2 = {r["audio_path"]: 86 if r["label"] == "1" else 97 for r in chosen}
    served_ids = {r.audio_sha256: r.prediction_id for r in log if r.source == "serving"}
    rows = []
    for row, data in zip(served, audio, strict=True):
        prediction_id = served_ids[hashlib.sha256(data).hexdigest()]
        rows.append({"prediction_id": prediction_id, "spo2": spo2[row["audio_path"]],
                     "measured_at": datetime.now(UTC).isoformat()})  # fmt: skip
    for row in by_cli:
        digest = hashlib.sha256((root / "landing" / BATCH / row["audio_path"]).read_bytes())
        rows.append({"audio_sha256": digest.hexdigest(), "spo2": spo2[row["audio_path"]],
                     "measured_at": datetime.now(UTC).isoformat()})  # fmt: skip
    land_outcomes(
        root, "2026-ward-a.csv", rows, ["prediction_id", "audio_sha256", "spo2", "measured_at"]
    )

    today = datetime.now(UTC).date().isoformat()
    assert materialize(root, [predictions], today).success
    assert materialize(root, [outcomes]).success
    week = this_week()
    live = materialize(root, [live_performance], week)
    lake = Lake(UPath(root) / "lake")
    table = lake.read_part(LIVE_PERFORMANCE, week)

    # the hand computation: each recording's logged probability, its outcome, the threshold
    accepted = lake.read_part(OUTCOMES, "all")
    assert accepted.height == 20
    label_of = dict(accepted.select("audio_sha256", "label").iter_rows())
    labels = np.array([label_of[r.audio_sha256] for r in log])
    scores = np.array([r.probability for r in log])
    threshold = log[0].threshold
    predicted = scores >= threshold
    expected = {
        "sensitivity": (predicted & (labels == 1)).sum() / (labels == 1).sum(),
        "specificity": (~predicted & (labels == 0)).sum() / (labels == 0).sum(),
        "auroc": roc_auc_score(labels, scores),
        "ece": hand_ece(labels, scores),
        "accuracy": (predicted == labels.astype(bool)).mean(),
    }
    got = dict(table.select("metric", "value").iter_rows())
    for metric, value in expected.items():
        assert got[metric] == pytest.approx(value, abs=1e-9), metric
    row = table.row(0, named=True)
    assert (row["recordings"], row["positives"], row["negatives"]) == (20, 10, 10)
    # the served recordings' people (pseudonyms), and the CLI's recordings standing alone
    assert row["participants"] == len({r["participant_id"] for r in served}) + len(by_cli)
    sensitivity = table.filter(pl.col("metric") == "sensitivity").row(0, named=True)
    assert sensitivity["ci_low"] <= sensitivity["value"] <= sensitivity["ci_high"]
    assert sensitivity["test_value"] is not None  # the champion's own test figure beside it
    check = live.get_asset_check_evaluations()[0]
    assert check.passed == (expected["sensitivity"] >= MONITORING.sensitivity_floor)
    materialization = live.asset_materializations_for_node("live_performance")[0]
    assert any(k.startswith("mlflow_model_version") for k in materialization.metadata)
    assert any(k.startswith("plot: ") for k in materialization.metadata)
    # the day's drift against the champion's training data is computed, not skipped
    drift = materialize(root, [prediction_drift], today)
    assert drift.success
    statistics = Lake(UPath(root) / "lake").read_part(PREDICTION_DRIFT, today)
    assert {"decision", "duration_s", "coefficient_00"} <= set(statistics["feature"].to_list())
