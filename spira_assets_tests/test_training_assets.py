"""dataset_split and spira_model through Dagster: MLflow run, registry, lineage, reuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import mlflow
import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from upath import UPath

from spira_assets.app.runner import materialize_shared
from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.ml.tracking import REGISTERED_MODEL
from spira_assets.storage.lake import Lake
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.small_batches import step_failures

FAST = {"seeds": [42, 43], "max_epochs": 1, "warmup_steps": 5, "batch_size": 16, "dropout": 0.3}


@pytest.fixture
def root(tmp_path: Path, materialized_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(materialized_root, copy)
    for stale in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        (copy / stale).unlink(missing_ok=True)  # its views point at the original folder
    monkeypatch.setenv("SPIRA_DATA_DIR", str(copy))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return copy


def test_model_is_trained_tracked_registered_and_reused(root: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    first = materialize_shared(
        instance, ("dataset_split", "spira_model"), resources={"training": FAST}
    )
    assert first.ok, first
    warehouse = Warehouse(UPath(root / "warehouse.duckdb"), Lake(UPath(root / "lake")))
    model = warehouse.query("SELECT * FROM model_versions").row(0, named=True)
    assert model["registered_version"] == "1" and model["best_seed"] in (42, 43)
    # The 8-participant corpus leaves one class in validation: its AUROC is undefined, and
    # says so (null, a reason in the UI), instead of NaN and numpy's "Mean of empty slice".
    classes = warehouse.query(
        "SELECT DISTINCT label FROM dataset_split WHERE split = 'validation'"
    ).height
    assert classes == 1
    assert model["val_auroc"] is None and model["val_auroc_mean"] is None
    trained = instance.get_latest_materialization_event(dg.AssetKey("spira_model"))
    assert trained is not None and trained.asset_materialization is not None
    shown = trained.asset_materialization.metadata
    assert "val_auroc_mean" not in shown
    assert "one class" in str(shown["val_auroc_undefined"].value)

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    parent = client.get_run(model["mlflow_run_id"])
    assert parent.info.status == "FINISHED"  # ended by spira_model itself
    assert parent.data.params["seeds"] == "[42, 43]"
    assert parent.info.artifact_uri.startswith((root / "mlartifacts").as_uri())
    children = mlflow.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
    )
    assert sorted(r.data.params["seed"] for r in children) == ["42", "43"]
    assert all("val_auroc" in r.data.metrics for r in children)
    assert client.get_model_version(REGISTERED_MODEL, "1").run_id == parent.info.run_id

    lineage = json.loads((Path(model["directory"]) / "lineage.json").read_text())
    assert set(lineage["batches"]) == {"demo-001", "demo-002"}
    config = json.loads((Path(model["directory"]) / "model_config.json").read_text())
    assert config["resampler"] == RESAMPLER_VERSION  # inference decodes uploads with it
    assert lineage["feature_config_hash"] and lineage["code_version"]
    assert lineage["packages"]["torch"].startswith("2.11")
    assert {p.name for p in Path(model["directory"]).iterdir()} >= {
        "weights.pt",
        "model.pt2",
        "model_config.json",
        "lineage.json",
    }

    second = materialize_shared(instance, ("spira_model",), resources={"training": FAST})
    assert second.ok
    record = instance.get_latest_materialization_event(dg.AssetKey("spira_model"))
    assert record is not None and record.asset_materialization is not None
    assert record.asset_materialization.metadata["reused"].value is True
    assert len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'")) == 1


def test_split_asset_passes_its_checks_and_covers_every_recording(root: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_shared(instance, ("dataset_split",)).ok
    warehouse = Warehouse(UPath(root / "warehouse.duckdb"), Lake(UPath(root / "lake")))
    split = warehouse.query("SELECT participant, audio_sha256, split FROM dataset_split")
    recordings = warehouse.query("SELECT audio_sha256 FROM audio_16k")
    assert split.height == recordings.height and split["participant"].n_unique() == 8
    checks = ("no_participant_in_two_splits", "no_audio_in_two_splits", "one_pseudonym_key")
    executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("dataset_split"), name) for name in checks]
    )
    assert len(executions) == 3
    assert all(e.evaluation is not None and e.evaluation.passed for e in executions.values())  # type: ignore[union-attr]


def test_a_reused_version_restores_its_row_and_its_registration(root: Path) -> None:
    """`make clean-data` kept models/ once while the lake went: reuse must put back every row
    it needs, and register again in a tracking store that no longer knows the version."""
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_shared(
        instance, ("dataset_split", "spira_model"), resources={"training": FAST}
    ).ok
    for part in (root / "lake" / "model_versions").glob("*.parquet"):
        part.unlink()
    again = materialize_shared(instance, ("spira_model",), resources={"training": FAST})
    assert again.ok
    warehouse = Warehouse(UPath(root / "warehouse.duckdb"), Lake(UPath(root / "lake")))
    (version,) = warehouse.query("SELECT model_version FROM model_versions").to_series()
    fresh = f"sqlite:///{root / 'replaced.db'}"
    replaced = materialize_shared(
        instance,
        ("spira_model",),
        resources={"training": FAST, "mlflow_tracking": {"tracking_uri": fresh}},
    )
    assert replaced.ok
    record = instance.get_latest_materialization_event(dg.AssetKey("spira_model"))
    assert record is not None and record.asset_materialization is not None
    assert record.asset_materialization.metadata["reused"].value is False
    assert record.asset_materialization.metadata["model_version"].value == version
    registered = MlflowClient(fresh).get_model_version(REGISTERED_MODEL, "1")
    assert MlflowClient(fresh).get_run(registered.run_id).data.params["model_version"] == version
    assert (root / "models" / version / "split.parquet").exists()


def test_a_version_is_reused_only_whole_and_with_the_split_it_names(root: Path) -> None:
    """A saved version missing a file, or whose split.parquet was edited, is never completed
    or reused from today's data: spira_model fails naming it (on the main of 2026-12-04 a
    version without its split or configuration was reused)."""
    one = {**FAST, "seeds": [42]}
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_shared(
        instance, ("dataset_split", "spira_model"), resources={"training": one}
    ).ok
    (directory,) = (root / "models").iterdir()
    split = directory / "split.parquet"
    kept = split.read_bytes()
    for planted in ("split.parquet", "model_config.json"):
        saved = (directory / planted).read_bytes()
        (directory / planted).unlink()
        missing = materialize_shared(instance, ("spira_model",), resources={"training": one})
        assert not missing.ok and f"lacks {planted}" in step_failures(instance, missing.run_id)
        (directory / planted).write_bytes(saved)
    frame = pl.read_parquet(split)
    frame.with_columns(pl.col("split").reverse()).write_parquet(split)  # planted: edited
    edited = materialize_shared(instance, ("spira_model",), resources={"training": one})
    assert not edited.ok
    assert "is not the split the version was trained on" in step_failures(instance, edited.run_id)
    split.write_bytes(kept)
    again = materialize_shared(instance, ("spira_model",), resources={"training": one})
    assert again.ok
