"""The deployment instance (deploy/dagster/dagster-postgres.yaml) against a real PostgreSQL
server: the whole graph with one process per step, 8 batches at once from 8 processes, and a
run killed with SIGKILL in the middle of a batch, then run again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from spira_assets.app.runner import materialize_batch, materialize_shared
from spira_assets.automation.jobs import TRAINING_ASSETS
from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.storage.layout import DataLayout
from spira_assets_tests.conftest import LENIENT_GATE, SMALL_TRAINING
from spira_assets_tests.postgres import PostgresServer, postgres_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
INSTANCE_YAML = REPO / "deploy" / "dagster" / "dagster-postgres.yaml"
SPIRA = str(Path(sys.executable).with_name("spira"))
DAGSTER = str(Path(sys.executable).with_name("dagster"))
# each per-batch table and the column that identifies one of its rows within a batch
PER_BATCH_TABLES = {
    "raw_audio": "path_key",
    "validated_metadata": "row_number",
    "audio_16k": "audio_sha256",
    "spectrogram_features": "audio_sha256",
}


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def _use_instance(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: PostgresServer, database: str
) -> dict[str, str]:
    """A DAGSTER_HOME holding the deployment yaml, on its own database; returns the env."""
    server.create_database(database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    values = {**server.environment(), "DAGSTER_PG_DB": database, "DAGSTER_HOME": str(home)}
    values["SPIRA_DATA_DIR"] = str(tmp_path / "data")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    # the schema is created once, before any run: 8 processes creating it at once would race
    # (the deployment guide and the compose file do the same)
    subprocess.run([DAGSTER, "instance", "migrate"], check=True, capture_output=True)
    return {**os.environ, **values}


def _expected_files(layout: DataLayout, batch: str) -> int:
    """The audio files the generator wrote for the batch (its manifest says how many)."""
    manifest = json.loads((Path(str(layout.batch_dir(batch))) / "_demo_manifest.json").read_text())
    return int(manifest["files"])


def _assert_exact_rows(layout: DataLayout, batches: list[str]) -> None:
    """Every table has each batch's rows exactly once: as many as the batch has files."""
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.warehouse import Warehouse

    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    for table, key in PER_BATCH_TABLES.items():
        counts = warehouse.query(
            f"SELECT batch_id, count(*) AS n, count(DISTINCT {key}) AS d FROM {table} "
            "GROUP BY batch_id ORDER BY batch_id"
        )
        assert counts.get_column("batch_id").to_list() == sorted(batches), table
        for row in counts.iter_rows(named=True):
            expected = _expected_files(layout, row["batch_id"])
            assert (row["n"], row["d"]) == (expected, expected), (table, row)
    leftovers = [p for p in Path(str(layout.root)).rglob("*.tmp")]
    assert not leftovers, f"partial files left behind: {leftovers}"


def test_whole_graph_for_two_batches_with_one_process_per_step(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_instance(monkeypatch, tmp_path, postgres, "graph")
    landing = tmp_path / "data" / "landing"
    generate_corpus(
        DemoSpec(landing, batches=2, participants=12, seed=17, defect_rate=0.0, noise_files=1),
        workers=1,
    )
    layout = DataLayout.from_location(tmp_path / "data")
    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"

    assert materialize_shared(instance, executor="multiprocess").ok
    for batch in ("demo-001", "demo-002"):
        outcome = materialize_batch(instance, layout, batch, executor="multiprocess")
        assert outcome.ok, outcome
    training = materialize_shared(
        instance,
        TRAINING_ASSETS,
        resources={"training": SMALL_TRAINING, "evaluation": LENIENT_GATE},
        executor="multiprocess",
    )
    assert training.ok, training

    runs = instance.get_runs()
    assert len(runs) == 4 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert {r.tags.get("dagster/partition") for r in runs} == {None, "demo-001", "demo-002"}
    assert instance.get_dynamic_partitions(COLLECTION_BATCH) == ["demo-001", "demo-002"]
    # one process per step: the multiprocess executor's events name each step's process
    engine = [
        record.event_log_entry.dagster_event
        for record in instance.get_records_for_run(training.run_id).records
        if record.event_log_entry.dagster_event is not None
        and record.event_log_entry.dagster_event.event_type_value == "STEP_WORKER_STARTED"
    ]
    # one process per step: split, model (+ model_versions), evaluation (+ its tables), gate
    # (+ comparisons, promotions), the champion's drift reference
    steps = {event.step_key for event in engine}
    assert len(engine) == len(steps)
    assert steps == {
        "dataset_split", "spira_model", "evaluation_report", "champion", "drift_reference"
    }  # fmt: skip
    for asset in ("raw_audio", "validated_metadata", "audio_16k", "spectrogram_features"):
        materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert materialized == {"demo-001", "demo-002"}, asset
    assert postgres.scalar("SELECT count(*) FROM runs", "graph") == 4  # straight from PostgreSQL
    _assert_exact_rows(layout, ["demo-001", "demo-002"])
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.warehouse import Warehouse

    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    assert warehouse.query("SELECT count(*) AS n FROM model_versions").item() == 1
    assert warehouse.query("SELECT count(*) AS n FROM promotions").item() == 1


def _materialize(
    batch: str, env: dict[str, str], log: Path, executor: str = "multiprocess"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [SPIRA, "materialize", "--batch", batch, "--executor", executor],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: kill -9 reaches every step process
    )


def test_eight_batches_in_parallel_then_a_killed_run_is_redone(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _use_instance(monkeypatch, tmp_path, postgres, "load")
    landing = tmp_path / "data" / "landing"
    generate_corpus(
        DemoSpec(landing, batches=9, participants=2, seed=23, defect_rate=0.0, noise_files=0),
        workers=2,
    )
    layout = DataLayout.from_location(tmp_path / "data")
    eight = [f"demo-{i:03d}" for i in range(1, 9)]

    # 8 processes write runs, events and warehouse rows at once; each runs its batch in its own
    # process (one process per step is the previous test's and the killed run's below: 8 x 5
    # step processes on 2 cores took four minutes and tested nothing more about concurrency)
    started = time.monotonic()
    processes = {b: _materialize(b, env, tmp_path / f"{b}.log", "in_process") for b in eight}
    for batch, process in processes.items():
        assert process.wait(timeout=540) == 0, (tmp_path / f"{batch}.log").read_text()[-3000:]
    print(f"8 batches in parallel: {time.monotonic() - started:.1f} s")

    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    assert len(runs) == 8 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert sorted(instance.get_dynamic_partitions(COLLECTION_BATCH)) == eight
    _assert_exact_rows(layout, eight)

    # kill -9 the 9th batch's run once its first asset is written, i.e. mid-batch
    victim = _materialize("demo-009", env, tmp_path / "killed.log")
    first_part = Path(str(layout.lake)) / "raw_audio" / "demo-009.parquet"
    deadline = time.monotonic() + 240
    while not first_part.exists():
        assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the run never wrote its first asset"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    killed = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "demo-009"}))
    assert [r.status for r in killed] == [dg.DagsterRunStatus.STARTED]  # nobody said it died
    assert not instance.get_materialized_partitions(dg.AssetKey("spectrogram_features")) >= {
        "demo-009"
    }

    rerun = _materialize("demo-009", env, tmp_path / "rerun.log")
    assert rerun.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    _assert_exact_rows(layout, [*eight, "demo-009"])
