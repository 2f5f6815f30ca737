"""The platform as people run it: `dagster dev` (webserver + daemon, what `make ui` starts) on a
free port in its own process group, observed through its GraphQL API and a headless browser.

One session, in the order things happen in real life:
1. a run launched through GraphQL (what the UI's "Materialize" button sends) processes one batch;
2. a second batch copied into the landing zone is picked up by the landing-zone sensor;
3. with two new batches in, the retraining sensor trains, evaluates and gates a model;
4. meanwhile Debian's chromium loads the UI, dismisses the first-visit dialog and lists every
   SPIRA asset (screenshots kept in test-artifacts/);
5. a drifted batch (ages +35, one device) fails its drift check and starts a retraining.

The code location is the product's with test-sized training and a lenient gate
(``e2e_definitions.py``); sensors, the run queue and the instance are real.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.layout import DataLayout
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.storage.lake import Lake
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.servers import free_port, graphql, server

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow
Run = dict[str, object]
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status
            tags { key value } } } } }"""
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
              __typename ... on LaunchRunSuccess { run { runId } }
              ... on PythonError { message } } }"""
SPIRA_ASSETS = ("raw_audio", "validated_metadata", "audio_16k", "spectrogram_features",
                "batch_drift", "hospital_noise", "dataset_split", "spira_model",
                "evaluation_report", "champion")  # fmt: skip


def _runs(port: int) -> list[Run]:
    results = graphql(port, RUNS)["runsOrError"]["results"]  # type: ignore[index]
    return [
        {**r, "tags": {t["key"]: t["value"] for t in r["tags"]}}  # type: ignore[index]
        for r in results  # type: ignore[union-attr]
    ]


def _tags(run: Run) -> dict[str, str]:
    tags = run["tags"]
    assert isinstance(tags, dict)
    return tags


def _wait_for(
    port: int, what: str, done: Callable[[list[Run]], bool], timeout_s: float = 420
) -> list[Run]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = _runs(port)
        failed = [r for r in runs if r["status"] == "FAILURE"]
        assert not failed, f"failed runs while waiting for {what}: {failed}"
        if done(runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}: {_runs(port)}")


def _trainings(runs: list[Run], trigger: str) -> list[Run]:
    return [
        r
        for r in runs
        if r["jobName"] == "train_model" and _tags(r).get("spira/trigger") == trigger
    ]


def _wait_for_location(port: int, log: Path) -> None:
    query = "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name } } } }"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = graphql(port, query)["repositoriesOrError"]
        if found.get("nodes"):  # type: ignore[union-attr]
            return
        time.sleep(1)
    raise AssertionError(f"the code location did not load:\n{log.read_text()[-3000:]}")


def _land(source: Path, landing: Path, batch: str) -> None:
    """Copy a batch the way an upload arrives: files first, the _READY marker last."""
    shutil.copytree(source / batch, landing / batch, ignore=shutil.ignore_patterns("_READY"))
    (landing / batch / "_READY").write_text("")


def _launch_batch(port: int, batch: str) -> str:
    launched = graphql(
        port,
        LAUNCH,
        {
            "p": {
                "selector": {
                    "repositoryLocationName": "spira_assets_tests.e2e_definitions",
                    "repositoryName": "__repository__",
                    "jobName": "process_batch",
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": batch}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched  # type: ignore[index]
    return str(launched["run"]["runId"])  # type: ignore[index]


def _asset_catalog_in_chromium(port: int) -> str:
    """The UI's asset catalog and graph in headless chromium; returns the catalog's text."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/assets", wait_until="networkidle", timeout=90_000)
            for label in ("Skip", "Dismiss"):  # the first-visit dialog, when shown
                button = page.get_by_role("button", name=label)
                if button.count():
                    button.first.click()
            for asset in ("raw_audio", "spectrogram_features", "batch_drift", "champion"):
                page.get_by_text(asset, exact=True).first.wait_for(timeout=60_000)
            text = page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "asset_catalog.png"))
            page.goto(f"http://127.0.0.1:{port}/asset-groups", wait_until="networkidle")
            page.get_by_text("monitoring", exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))
        finally:
            browser.close()
    return text


@pytest.mark.timeout(900)
def test_ui_sensors_retraining_and_drift_under_dagster_dev(tmp_path: Path) -> None:
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
    _land(uploads, landing, "demo-001")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:  # known: the sensor skips it
        instance.add_dynamic_partitions(COLLECTION_BATCH, ["demo-001"])
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SPIRA_DATA_DIR": str(layout.root),
        "SPIRA_SENSOR_INTERVAL_S": "5",  # the product's 30/60 s would be idle minutes here
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-m", "spira_assets_tests.e2e_definitions", "-h", "127.0.0.1",
               "-p", str(port)]  # fmt: skip
    log = tmp_path / "dagster.log"
    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    with server(command, f"http://127.0.0.1:{port}/server_info", env, ROOT, log):
        _wait_for_location(port, log)
        nodes = graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert {n["assetKey"]["path"][0] for n in nodes} >= set(SPIRA_ASSETS)  # type: ignore[index, union-attr]

        # 1. the UI's Materialize button; 2. a batch landing by itself
        launched = _launch_batch(port, "demo-001")
        _land(uploads, landing, "demo-002")
        runs = _wait_for(
            port,
            "both batches processed",
            lambda runs: (
                sum(r["jobName"] == "process_batch" and r["status"] == "SUCCESS" for r in runs) == 2
            ),
        )
        by_batch = {
            _tags(r)["dagster/partition"]: r for r in runs if r["jobName"] == "process_batch"
        }
        assert by_batch["demo-001"]["runId"] == launched
        assert _tags(by_batch["demo-002"]).get("dagster/sensor_name") == "landing_zone_sensor"
        query = "SELECT batch_id, count(*) FROM validated_metadata GROUP BY ALL ORDER BY ALL"
        assert [b for b, _ in warehouse.query(query).rows()] == ["demo-001", "demo-002"]

        # 4. the browser, while the retraining sensor gets going
        text = _asset_catalog_in_chromium(port)
        for asset in SPIRA_ASSETS:
            assert asset in text, asset
        assert (ARTIFACTS / "asset_graph.png").stat().st_size > 10_000

        # 3. two new batches: a model is trained, evaluated and gated without a click
        _wait_for(
            port,
            "a model trained on two new batches",
            lambda runs: any(r["status"] == "SUCCESS" for r in _trainings(runs, "new_batches")),
        )
        assert warehouse.query("SELECT count(*) FROM model_versions").item() == 1
        assert warehouse.query("SELECT passed FROM promotions").to_series().to_list() == [True]

        # 5. a drifted batch fails its drift check and starts a retraining
        _land(uploads, landing, "demo-003")
        _wait_for(port, "a retraining started by drift", lambda r: bool(_trainings(r, "drift")))
        drift = warehouse.query(
            "SELECT feature FROM batch_drift WHERE batch_id = 'demo-003' AND drifted"
        )
        assert drift.height > 0, "demo-003 should fail its drift check"
