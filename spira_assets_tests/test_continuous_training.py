"""Continuous training end to end under `dagster dev` (webserver + daemon): batches copied into
the landing zone are processed without a click, the retraining sensor trains, evaluates and
gates a model once two new batches are in, and a drifted batch (ages +35, one device) fails its
drift check and starts a retraining by itself. Everything is observed through GraphQL."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.layout import DataLayout
from spira_assets.storage.lake import Lake
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.servers import free_port, server
from spira_assets_tests.test_ui import graphql

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status
            tags { key value } } } } }"""


def _runs(port: int) -> list[dict[str, object]]:
    results = graphql(port, RUNS)["runsOrError"]["results"]  # type: ignore[index]
    return [
        {**r, "tags": {t["key"]: t["value"] for t in r["tags"]}}  # type: ignore[index]
        for r in results  # type: ignore[union-attr]
    ]


def _wait_for(port: int, what: str, done, timeout_s: float = 420) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = _runs(port)
        failed = [r for r in runs if r["status"] == "FAILURE"]
        assert not failed, f"failed runs while waiting for {what}: {failed}"
        if done(runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}: {_runs(port)}")


def _wait_for_location(port: int, log: Path) -> None:
    query = "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name } } } }"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = graphql(port, query)["repositoriesOrError"]
        if found.get("nodes"):  # type: ignore[union-attr]
            return
        time.sleep(1)
    raise AssertionError(f"the code location did not load:\n{log.read_text()[-3000:]}")


def _trainings(runs: list[dict[str, object]], trigger: str) -> list[dict[str, object]]:
    return [
        r
        for r in runs
        if r["jobName"] == "train_model" and r["tags"].get("spira/trigger") == trigger  # type: ignore[union-attr]
    ]


def _land(source: Path, landing: Path, batch: str) -> None:
    """Copy a batch the way an upload arrives: files first, the _READY marker last."""
    shutil.copytree(source / batch, landing / batch, ignore=shutil.ignore_patterns("_READY"))
    (landing / batch / "_READY").write_text("")


@pytest.mark.timeout(900)
def test_batches_land_a_model_follows_and_drift_retrains(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    generate_corpus(
        DemoSpec(uploads, batches=2, participants=12, seed=17, defect_rate=0.0, noise_files=1),
        workers=2,
    )
    drifted = tmp_path / "drifted"
    generate_corpus(
        DemoSpec(drifted, batches=1, participants=12, seed=71, defect_rate=0.0, noise_files=0,
                 age_shift=35, devices=("whatsapp",)),
        workers=2,
    )  # fmt: skip
    shutil.move(drifted / "demo-001", uploads / "demo-003")
    layout = DataLayout.from_location(tmp_path / "data")
    landing = tmp_path / "data" / "landing"
    shutil.copytree(uploads / "noise", landing / "noise")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPIRA_DATA_DIR": str(layout.root)}
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-m", "spira_assets_tests.e2e_definitions", "-h", "127.0.0.1",
               "-p", str(port)]  # fmt: skip
    log = tmp_path / "dagster.log"
    with server(command, f"http://127.0.0.1:{port}/server_info", env, ROOT, log):
        _wait_for_location(port, log)
        for batch in ("demo-001", "demo-002"):
            _land(uploads, landing, batch)
        runs = _wait_for(
            port,
            "a model trained on two new batches",
            lambda runs: any(r["status"] == "SUCCESS" for r in _trainings(runs, "new_batches")),
        )
        batch_runs = [r for r in runs if r["jobName"] == "process_batch"]
        assert {r["tags"]["dagster/partition"] for r in batch_runs} == {"demo-001", "demo-002"}  # type: ignore[index]
        assert all(r["tags"].get("dagster/sensor_name") == "landing_zone_sensor"  # type: ignore[union-attr]
                   for r in batch_runs)  # fmt: skip
        warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
        assert warehouse.query("SELECT count(*) FROM model_versions").item() == 1
        gate = warehouse.query("SELECT passed FROM promotions").to_series().to_list()
        assert gate == [True]  # trained, evaluated and gated without a click

        _land(uploads, landing, "demo-003")
        _wait_for(
            port,
            "a retraining started by drift",
            lambda runs: bool(_trainings(runs, "drift")),
        )
        drift = warehouse.query(
            "SELECT batch_id, drifted FROM batch_drift WHERE batch_id = 'demo-003' AND drifted"
        )
        assert drift.height > 0, "demo-003 should fail its drift check"
