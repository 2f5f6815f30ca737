"""Journeys through real Dagster runs that used to end somewhere wrong (issue 26):

- a run selecting ``spira_model`` and ``champion`` without ``evaluation_report`` gated the
  previously evaluated model; now it fails, naming both versions;
- a lost row of the promotion history (a past champion) let the gate judge without it; now the
  gate fails on the disagreement with the registry until ``spira restore-promotions`` rebuilds
  the row, and then judges against that champion again;
- a batch blocked after the model was trained was still evaluated and compared on; now both
  leave its recordings out and say so."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner
from upath import UPath

from spira_assets.app.runner import materialize_shared
from spira_assets.automation.jobs import TRAINING_ASSETS
from spira_assets.cli import main
from spira_assets.ingest.gates import BOTH_CLASSES, CheckOutcome, record_outcomes
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import AUDIO_16K, BATCH_CHECKS, PROMOTIONS
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.conftest import LENIENT_GATE, SMALL_TRAINING, copy_data_root
from spira_assets_tests.test_guarantees import messages


@pytest.fixture
def trained(tmp_path: Path, champion_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = copy_data_root(champion_root, tmp_path / "data")
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict[str, object]:
    record = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert record is not None and record.asset_materialization is not None
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


@pytest.mark.timeout(900)
def test_the_gate_judges_the_model_of_its_run_and_a_history_that_agrees_with_the_registry(
    trained: Path,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(UPath(trained / "lake"))
    warehouse = Warehouse(UPath(trained / "warehouse.duckdb"), lake)
    first = warehouse.query("SELECT candidate_version FROM promotions").item()
    # this instance stands for the one that evaluated the champion (the fixture's own is gone)
    instance.report_runless_asset_event(
        dg.AssetMaterialization("evaluation_report", metadata={"model_version": first})
    )

    # 1. a new model trained in a run that does not evaluate it: the gate refuses to judge the
    #    previously evaluated model in its place, naming both
    other = {**SMALL_TRAINING, "seeds": [7], "max_epochs": 1}  # its quality is not the subject
    skipped = materialize_shared(
        instance,
        ("spira_model", "champion"),
        resources={"training": other, "evaluation": LENIENT_GATE},
    )
    assert not skipped.success and skipped.failed_steps == ("champion",)
    second = warehouse.query(
        "SELECT model_version FROM model_versions WHERE model_version <> ?", [first]
    ).item()
    log = messages(instance, skipped)
    assert f"spira_model's model is {second}" in log and f"evaluated {first}" in log
    assert warehouse.query("SELECT count(*) FROM promotions").item() == 1  # nothing decided

    # 2. evaluated and gated: the second model becomes champion, the first a past champion
    promoted = materialize_shared(
        instance, ("evaluation_report", "champion"), resources={"evaluation": LENIENT_GATE}
    )
    assert promoted.ok, promoted
    history = lake.read_table(PROMOTIONS).sort("decided_at")
    assert history.get_column("candidate_version").to_list() == [first, second]

    # 3. the fault: the past champion's row is lost (the alias, on the second, still agrees
    #    with the audit): the gate used to judge without it; now it names the disagreement
    (lost,) = history.filter(pl.col("candidate_version") == first).get_column("batch_id")
    (trained / "lake" / "promotions" / f"{lost}.parquet").unlink()
    refused = materialize_shared(instance, ("champion",), resources={"evaluation": LENIENT_GATE})
    assert refused.failed_checks == ("champion:promotion_gate",)
    reasons = warehouse.query("SELECT reasons FROM promotions ORDER BY decided_at DESC").item(0, 0)
    assert f"no passed decision for {first} (registered version 1, tagged at promotion)" in reasons
    assert "spira restore-promotions" in reasons

    # 4. restored from the registry's records, the gate judges against that champion again
    restored = CliRunner().invoke(main, ["restore-promotions", "--data-dir", str(trained)])
    assert restored.exit_code == 0, restored.output
    assert f"restored promotion {lost}: model {first} (registered version 1)" in restored.output
    assert f"agree: champion {second}" in restored.output
    again = materialize_shared(instance, ("champion",), resources={"evaluation": LENIENT_GATE})
    assert again.ok, again
    compared = warehouse.query(
        "SELECT role, error FROM evaluation_comparisons WHERE model_version = ? "
        "AND reference_version = ?",
        [second, first],
    )
    assert compared.rows() == [("past champion", None)]


def block(lake: Lake, batch_id: str) -> None:
    """Plant what a re-delivered batch that lost its controls leaves: validated_metadata's
    both_classes_present failed (its other outcomes as they were)."""
    kept = lake.read_part(BATCH_CHECKS, batch_id, sub="validated_metadata")
    outcomes = [
        CheckOutcome(name, name != BOTH_CLASSES and passed, description, blocking)
        for name, passed, description, blocking in kept.select(
            "check_name", "passed", "description", "blocking"
        ).iter_rows()
    ]
    record_outcomes(lake, batch_id, "validated_metadata", outcomes, datetime.now(UTC))


@pytest.mark.timeout(900)
def test_evaluation_and_the_comparison_pool_leave_out_a_batch_blocked_after_training(
    tmp_path: Path, materialized_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_data_root(materialized_root, tmp_path / "data")
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(UPath(root / "lake"))
    # shares that put people of both batches in the test split of these 8 participants (the
    # training split then holds one patient: enough to make a model to evaluate)
    shares = {**SMALL_TRAINING, "split": {"validation": 0.3, "test": 0.57}}
    resources = {"training": shares, "evaluation": LENIENT_GATE}
    trained = materialize_shared(instance, TRAINING_ASSETS, resources=resources)
    assert trained.success, trained  # (the gate may refuse a model of 8 people: not the point)
    version = str(latest_metadata(instance, "spira_model")["model_version"])
    split = pl.read_parquet(root / "models" / version / "split.parquet")
    tested = split.filter(pl.col("split") == "test").group_by("source_batch").len()
    in_test = dict(tested.rows())
    assert set(in_test) == {"demo-001", "demo-002"}, in_test  # both batches are in its test set
    before = latest_metadata(instance, "evaluation_report")
    assert before["test_recordings"] == sum(in_test.values())

    block(lake, "demo-002")  # the fault: blocked after the model was trained on it
    again = materialize_shared(
        instance, ("evaluation_report", "champion"), resources={"evaluation": LENIENT_GATE}
    )
    assert again.success, again
    evaluated = latest_metadata(instance, "evaluation_report")
    assert evaluated["blocked_batches_left_out"] == {"demo-002": in_test["demo-002"]}
    assert evaluated["test_recordings"] == in_test["demo-001"]
    report = (root / "reports" / version / "evaluation.md").read_text()
    assert (
        f"batch demo-002 ({in_test['demo-002']} recordings) is blocked by "
        "validated_metadata:both_classes_present failed" in report
    )
    gated = latest_metadata(instance, "champion")
    pool = lake.read_table(AUDIO_16K).filter(pl.col("batch_id") == "demo-002").height
    assert gated["blocked_batches_left_out"] == {"demo-002": pool}


def test_a_model_is_evaluated_only_with_its_own_split_and_configuration(trained: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    version = (
        Warehouse(UPath(trained / "warehouse.duckdb"), Lake(UPath(trained / "lake")))
        .query("SELECT model_version FROM model_versions")
        .item()
    )
    folder = trained / "models" / version
    # the fault: a file of the model's record is gone; the split used to be rebuilt from
    # today's data (whose shares may put the model's training people in its test set)
    for name in ("split.parquet", "model_config.json"):
        (folder / name).rename(trained / name)
        refused = materialize_shared(instance, ("evaluation_report",))
        assert not refused.success and refused.failed_steps == ("evaluation_report",)
        assert f"model {version}: {name} missing under" in messages(instance, refused)
        (trained / name).rename(folder / name)
