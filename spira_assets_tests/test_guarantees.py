"""The guarantees behind every reported number, each fed the fault it exists for, through real
Dagster runs on materialized data roots: a blocked batch stays blocked, leaks make the split's
checks fail, a hand-edited split is refused, a model is judged on its own recorded split, the
champion on people neither model saw, and a champion that cannot be evaluated fails the gate."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from polars.testing import assert_frame_equal
from upath import UPath

from spira_assets.app.runner import RunOutcome, materialize_batch, materialize_shared
from spira_assets.assets.evaluation import model_version_of_run
from spira_assets.automation.jobs import TRAINING_ASSETS
from spira_assets.ml.tracking import REGISTERED_MODEL
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import (
    AUDIO_16K,
    DATASET_SPLIT,
    EVALUATION_METRICS,
    HOSPITAL_NOISE,
    UNPARTITIONED,
)
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.conftest import LENIENT_GATE, SMALL_TRAINING, TEST_KEY, copy_data_root


def messages(instance: dg.DagsterInstance, run: RunOutcome) -> str:
    return "\n".join(
        str(e.dagster_event.event_specific_data) if e.dagster_event else e.user_message
        for e in instance.all_logs(run.run_id)
    )


def check_passed(instance: dg.DagsterInstance, asset: str, check: str) -> bool:
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    (execution,) = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key]
    ).values()
    assert execution.evaluation is not None
    return bool(execution.evaluation.passed)


@pytest.fixture
def batches(tmp_path: Path, materialized_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two materialized batches (4 participants each), private to the test."""
    root = copy_data_root(materialized_root, tmp_path / "data")
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    return root


@pytest.fixture
def trained(tmp_path: Path, champion_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """24 participants with a promoted champion, private to the test."""
    root = copy_data_root(champion_root, tmp_path / "data")
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def test_a_blocked_batch_goes_no_further_whatever_starts_the_run(batches: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    layout = DataLayout.from_location(batches)
    # demo-002 is re-delivered with its controls' rows missing: only patients remain
    metadata = layout.batch_dir("demo-002") / "metadata.csv"
    lines = metadata.read_text().splitlines()
    label = lines[0].split(",").index("label")
    metadata.write_text(
        "\n".join([lines[0], *(r for r in lines[1:] if r.split(",")[label] == "1")])
    )
    refused = materialize_batch(instance, layout, "demo-002", ("validated_metadata",))
    assert refused.failed_checks == ("validated_metadata:both_classes_present",)
    # asking for audio_16k alone does not get past it
    alone = materialize_batch(instance, layout, "demo-002", ("audio_16k",))
    assert not alone.success and alone.failed_steps == ("audio_16k",)
    assert "validated_metadata:both_classes_present failed" in messages(instance, alone)
    # and the split (whose stale audio_16k rows of demo-002 are still in the lake) leaves it out
    assert materialize_shared(instance, ("dataset_split",)).ok
    split = Lake(layout.lake).read_part(DATASET_SPLIT, UNPARTITIONED)
    assert split.get_column("source_batch").unique().to_list() == ["demo-001"]
    record = instance.get_latest_materialization_event(dg.AssetKey("dataset_split"))
    assert record is not None and record.asset_materialization is not None
    assert "demo-002" in record.asset_materialization.metadata["blocked_batches_left_out"].value


def test_the_splits_checks_fail_on_planted_leaks(
    batches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    layout = DataLayout.from_location(batches)
    lake = Lake(layout.lake)
    assert materialize_shared(instance, ("dataset_split",)).ok

    # 1. the same audio under two participant ids (two batches ingested in a race)
    original = lake.read_part(AUDIO_16K, "demo-002")
    one = (
        lake.read_part(AUDIO_16K, "demo-001")
        .head(1)
        .with_columns(
            pl.lit("demo-002").alias("batch_id"), pl.lit("P-0000000000000bad").alias("participant")
        )
    )
    lake.write_part(AUDIO_16K, "demo-002", pl.concat([original, one]))
    assert not materialize_shared(instance, ("dataset_split",)).ok
    assert not check_passed(instance, "dataset_split", "no_audio_in_two_splits")
    lake.write_part(AUDIO_16K, "demo-002", original)
    assert materialize_shared(instance, ("dataset_split",)).ok

    # 2. a batch pseudonymized under another key: one person's ids no longer match
    monkeypatch.setenv("SPIRA_PSEUDONYM_KEY", hashlib.sha256(b"another key").hexdigest())
    assert materialize_batch(instance, layout, "demo-002").ok
    monkeypatch.setenv("SPIRA_PSEUDONYM_KEY", TEST_KEY)
    assert not materialize_shared(instance, ("dataset_split",)).ok
    assert not check_passed(instance, "dataset_split", "one_pseudonym_key")
    assert materialize_batch(instance, layout, "demo-002").ok
    assert materialize_shared(instance, ("dataset_split",)).ok

    # 3. the stored split edited by hand: training refuses it, naming the problem
    split = lake.read_part(DATASET_SPLIT, UNPARTITIONED)
    person = split.get_column("participant")[0]
    moved = "train" if split.get_column("split")[0] != "train" else "test"
    edited = split.with_columns(
        pl.when(pl.col("participant") == person)
        .then(pl.lit(moved))
        .otherwise(pl.col("split"))
        .alias("split")
    )
    lake.write_part(DATASET_SPLIT, UNPARTITIONED, edited)
    # the split shares the split was assigned with (the default): only the edit is wrong
    same_shares = {k: v for k, v in SMALL_TRAINING.items() if k != "split"}
    refused = materialize_shared(instance, ("spira_model",), resources={"training": same_shares})
    assert not refused.success
    assert f"edited by hand: {person} stored in {moved!r}" in messages(instance, refused)


def test_each_model_is_judged_on_its_own_split_and_against_people_neither_saw(
    trained: Path,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(UPath(trained / "lake"))
    warehouse = Warehouse(UPath(trained / "warehouse.duckdb"), lake)
    champion = warehouse.query("SELECT candidate_version FROM promotions").item()
    champion_split = pl.read_parquet(trained / "models" / champion / "split.parquet")
    # the shares change: people the champion trained on are now in the current test split
    shares = {**SMALL_TRAINING, "split": {"validation": 0.1, "test": 0.6}, "seeds": [7],
              "max_epochs": 1}  # fmt: skip
    outcome = materialize_shared(
        instance, TRAINING_ASSETS, resources={"training": shares, "evaluation": LENIENT_GATE}
    )
    assert outcome.ok, outcome
    candidate = warehouse.query(
        "SELECT model_version FROM model_versions WHERE model_version <> ?", [champion]
    ).item()
    candidate_split = pl.read_parquet(trained / "models" / candidate / "split.parquet")
    seen_by_champion = set(
        champion_split.filter(pl.col("split") != "test").get_column("participant")
    )
    newly_tested = set(candidate_split.filter(pl.col("split") == "test")["participant"])
    assert newly_tested & seen_by_champion  # the situation that used to leak
    # the candidate is evaluated on exactly its own recorded test recordings
    tested = warehouse.query(
        "SELECT value FROM evaluation_metrics WHERE model_version = ? AND condition = 'clean' "
        "AND level = 'recording' AND metric = 'accuracy' AND role = 'candidate'",
        [candidate],
    )
    assert tested.height == 1
    comparison = warehouse.query(
        "SELECT * FROM evaluation_comparisons WHERE model_version = ?", [candidate]
    ).row(0, named=True)
    unseen = set(candidate_split.filter(pl.col("split") == "test")["participant"]) & set(
        champion_split.filter(pl.col("split") == "test")["participant"]
    )
    assert comparison["reference_version"] == champion and comparison["error"] is None
    assert comparison["participants"] == len(unseen) > 0
    assert "candidate test & reference test" in comparison["from_splits"]

    # the model's recorded split edited so that a training recording is also a test one
    trained_on = candidate_split.filter(pl.col("split") == "train").head(1)
    pl.concat(
        [candidate_split, trained_on.with_columns(pl.lit("test").alias("split"))]
    ).write_parquet(trained / "models" / candidate / "split.parquet")
    again = materialize_shared(instance, ("evaluation_report",))
    assert not again.ok
    assert not check_passed(instance, "evaluation_report", "test_set_unseen_in_training")
    gate = materialize_shared(instance, ("champion",), resources={"evaluation": LENIENT_GATE})
    assert gate.failed_checks == ("champion:promotion_gate",)
    reasons = warehouse.query("SELECT reasons FROM promotions ORDER BY decided_at DESC").item(0, 0)
    assert "test set overlaps its training data" in reasons


def test_a_champion_that_cannot_be_evaluated_fails_the_gate(trained: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(UPath(trained / "lake"))
    warehouse = Warehouse(UPath(trained / "warehouse.duckdb"), lake)
    champion = warehouse.query("SELECT candidate_version FROM promotions").item()
    client = MlflowClient(f"sqlite:///{trained / 'mlflow.db'}")

    def last_reasons() -> str:
        return str(
            warehouse.query("SELECT reasons FROM promotions ORDER BY decided_at DESC").item(0, 0)
        )

    # its model folder is gone
    shutil.move(trained / "models" / champion, trained / "moved-away")
    other = {**SMALL_TRAINING, "seeds": [7], "max_epochs": 1}  # its quality is not the subject
    outcome = materialize_shared(
        instance, TRAINING_ASSETS, resources={"training": other, "evaluation": LENIENT_GATE}
    )
    assert outcome.failed_checks == ("champion:promotion_gate",)
    assert f"champion {champion}: cannot be evaluated" in last_reasons()
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version) == "1"
    shutil.move(trained / "moved-away", trained / "models" / champion)

    # the registry cannot answer
    broken = trained / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    outcome = materialize_shared(
        instance,
        ("champion",),
        resources={
            "evaluation": LENIENT_GATE,
            "mlflow_tracking": {"tracking_uri": f"sqlite:///{broken}"},
        },
    )
    assert outcome.failed_checks == ("champion:promotion_gate",)
    assert "the model registry at sqlite:///" in last_reasons()

    # the audit and the registry disagree (the promotions table was lost)
    for part in (trained / "lake" / "promotions").glob("*.parquet"):
        if not part.name.startswith("_"):
            part.unlink()
    outcome = materialize_shared(instance, ("champion",), resources={"evaluation": LENIENT_GATE})
    assert outcome.failed_checks == ("champion:promotion_gate",)
    assert "the promotions table has no passed decision" in last_reasons()


def test_the_noisy_test_uses_the_models_own_noise_set(trained: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(UPath(trained / "lake"))

    def noisy(version: str) -> pl.DataFrame:
        metrics = lake.read_part(EVALUATION_METRICS, version).filter(pl.col("condition") == "noisy")
        return metrics.sort("level", "metric").select("level", "metric", "value")

    version = lake.read_table(EVALUATION_METRICS).get_column("model_version")[0]
    before = noisy(version)
    noise = trained / "landing" / "noise"
    for path in noise.iterdir():
        data = path.read_bytes()
        path.unlink()
        (noise / f"re-recorded-{path.name}").write_bytes(data[:44] + data[44:][::-1])
    assert materialize_shared(instance, ("hospital_noise",)).ok
    assert materialize_shared(instance, ("evaluation_report",)).ok
    lineage = json.loads((trained / "models" / version / "lineage.json").read_text())
    current = lake.read_table(HOSPITAL_NOISE)
    assert current.get_column("shard")[0] not in lineage["noise"]  # the noise set changed
    # and the model is still tested with its own (NaN, e.g. an AUROC with one class in a
    # level, equals NaN here: a plain list comparison would call two identical tables different)
    assert_frame_equal(noisy(version), before, check_exact=True)


def test_overlapping_training_runs_each_judge_their_own_model() -> None:
    instance = dg.DagsterInstance.ephemeral()

    def trained_in_a_run(version: str) -> str:
        @dg.asset(name="spira_model")
        def fake() -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata={"model_version": version})

        result = dg.materialize([fake], instance=instance)
        return result.run_id

    first, second = trained_in_a_run("version-a"), trained_in_a_run("version-b")
    log = SimpleNamespace(info=lambda message: None)
    for run_id, expected in ((first, "version-a"), (second, "version-b"), ("other", "version-b")):
        run = SimpleNamespace(run_id=run_id)
        context = SimpleNamespace(instance=instance, run=run, log=log)
        assert model_version_of_run(context, "spira_model") == expected  # type: ignore[arg-type]
