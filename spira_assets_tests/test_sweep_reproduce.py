"""`spira sweep` (a grid of nested MLflow runs, ranked) and `spira reproduce` (a past model
recreated from its lineage record, compared weight for weight)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from upath import UPath

from spira_assets.cli import main
from spira_assets.ml.sweep import SweepSpecError, grid, parse_param
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import MODEL_VERSIONS
from spira_assets_tests.conftest import copy_data_root


def test_parse_param_aliases_types_and_errors() -> None:
    assert parse_param("lr=1e-3,3e-4") == ("learning_rate", [1e-3, 3e-4])
    assert parse_param("window=3,4") == ("window_s", [3.0, 4.0])
    assert parse_param("batch_size=8") == ("batch_size", [8])
    assert parse_param("norm=group,batch") == ("norm", ["group", "batch"])
    with pytest.raises(SweepSpecError, match="unknown parameter 'speed'"):
        parse_param("speed=1")
    with pytest.raises(SweepSpecError, match="'x' is not a valid int"):
        parse_param("batch=8,x")
    with pytest.raises(SweepSpecError, match="expected name=value"):
        parse_param("lr")


def test_grid_is_the_cartesian_product_in_order() -> None:
    combos = grid({"learning_rate": [1e-3, 3e-4], "window_s": [3.0, 4.0]})
    assert combos == [
        {"learning_rate": 1e-3, "window_s": 3.0},
        {"learning_rate": 1e-3, "window_s": 4.0},
        {"learning_rate": 3e-4, "window_s": 3.0},
        {"learning_rate": 3e-4, "window_s": 4.0},
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_by_two_sweep_in_two_processes(tmp_path: Path, champion_root: Path) -> None:
    root = copy_data_root(champion_root, tmp_path / "data")
    result = CliRunner().invoke(
        main,
        [
            "sweep",
            "--param",
            "lr=1e-3,3e-4",
            "--param",
            "window=3,4",
            "--epochs",
            "1",
            "--warmup",
            "5",
            "--workers",
            "2",
            "--data-dir",
            str(root),
        ],
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("spira-sweeps")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("spira.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {(r.data.params["learning_rate"], r.data.params["window_s"]) for r in children} == {
        ("0.001", "3.0"),
        ("0.001", "4.0"),
        ("0.0003", "3.0"),
        ("0.0003", "4.0"),
    }
    for child in children:
        assert child.info.status == "FINISHED"
        assert 0.0 <= child.data.metrics["best_val_auroc"] <= 1.0
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert [m.step for m in history] == [1]
    ranked = [ln for ln in result.output.splitlines() if "learning_rate=" in ln and "│" in ln]
    assert len(ranked) == 4
    csv = next((root / "reports" / "sweeps").glob("sweep-*.csv")).read_text().splitlines()
    assert csv[0].startswith("rank,combination,val_auroc_mean") and len(csv) == 5
    means = [float(line.split(",")[2]) for line in csv[1:]]
    assert means == sorted(means, reverse=True)
    assert parents[0].data.params["best_combination"] == csv[1].split(",")[1]


def test_sweep_rejects_unknown_parameters(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["sweep", "--param", "speed=1", "--data-dir", str(tmp_path / "data")]
    )
    assert result.exit_code == 1
    assert "unknown parameter 'speed'" in result.output


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_reproduce_matches_exactly_on_cpu_and_names_missing_inputs(
    tmp_path: Path, champion_root: Path
) -> None:
    root = copy_data_root(champion_root, tmp_path / "data")
    version = Lake(UPath(root / "lake")).read_table(MODEL_VERSIONS).get_column("model_version")[0]
    result = CliRunner().invoke(main, ["reproduce", version, "--data-dir", str(root)])
    assert result.exit_code == 0, result.output
    assert "weights: identical" in result.output
    assert "result: EXACT MATCH" in result.output
    report = json.loads((root / "reports" / version / "reproduction.json").read_text())
    assert report["exact"] and report["weights_identical"]
    assert report["threshold_original"] == report["threshold_reproduced"]
    assert {m["condition"] for m in report["metrics"]} == {"clean", "noisy"}
    assert all(m["original"] == m["reproduced"] for m in report["metrics"])

    lineage = json.loads((root / "models" / version / "lineage.json").read_text())
    batch, shard = next(iter(lineage["batches"].items()))
    (root / shard).unlink()
    missing = CliRunner().invoke(main, ["reproduce", version, "--data-dir", str(root)])
    assert missing.exit_code == 1
    assert f"batch {batch}: waveform file {shard} was deleted" in missing.output
    gone = CliRunner().invoke(main, ["reproduce", "0123456789abcdef", "--data-dir", str(root)])
    assert gone.exit_code == 1 and "lineage.json" in gone.output
