"""`dagster dev` (webserver + daemon, as `make ui` starts it) serves the code location; a run
launched through its GraphQL API (what the UI's "Materialize" button sends) materializes one
batch, and the landing-zone sensor, ticking in the daemon, picks up the other batch by itself."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from spira_assets.layout import DataLayout
from spira_assets.partitions import collection_batch
from spira_assets.storage.lake import Lake
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.conftest import data_root_with
from spira_assets_tests.servers import free_port, server

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def graphql(port: int, query: str, variables: dict[str, object] | None = None) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload: dict[str, object] = json.load(response)
    assert "errors" not in payload, payload
    data = payload["data"]
    assert isinstance(data, dict)
    return data


@pytest.fixture
def webserver(tmp_path: Path, clean_corpus: Path) -> Iterator[tuple[int, DataLayout, Path]]:
    layout = data_root_with(tmp_path, clean_corpus)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPIRA_DATA_DIR": str(layout.root)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(collection_batch.name, ["demo-001"])
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-w",
        "workspace.yaml",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with server(command, f"http://127.0.0.1:{port}/server_info", env, ROOT):
        yield port, layout, home


def test_ui_serves_assets_and_materializes_a_batch(webserver: tuple[int, DataLayout, Path]) -> None:
    port, layout, _home = webserver
    nodes = graphql(port, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    keys = {n["assetKey"]["path"][0] for n in nodes}  # type: ignore[index, union-attr]
    assert {"raw_audio", "validated_metadata"} <= keys

    launched = graphql(
        port,
        """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
             __typename ... on LaunchRunSuccess { run { runId } }
             ... on PythonError { message } } }""",
        {
            "p": {
                "selector": {
                    "repositoryLocationName": "spira_assets",
                    "repositoryName": "__repository__",
                    "jobName": "process_batch",
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "demo-001"}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched  # type: ignore[index]
    run_id = launched["run"]["runId"]  # type: ignore[index]
    deadline = time.monotonic() + 240
    status = "STARTING"
    while status not in {"SUCCESS", "FAILURE", "CANCELED"} and time.monotonic() < deadline:
        time.sleep(1)
        run = graphql(
            port,
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
            {"id": run_id},
        )["runOrError"]
        status = run["status"]  # type: ignore[index]
    assert status == "SUCCESS"
    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    query = "SELECT batch_id, count(*) FROM validated_metadata GROUP BY ALL ORDER BY ALL"
    assert warehouse.query(query).rows()[0] == ("demo-001", 16)
    while time.monotonic() < deadline:  # the sensor's own run for demo-002
        if len(warehouse.query(query).rows()) == 2:
            break
        time.sleep(1)
    assert warehouse.query(query).rows() == [("demo-001", 16), ("demo-002", 16)]
    runs = graphql(port, "{ runsOrError { ... on Runs { results { tags { key value } } } } }")
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in runs["runsOrError"]["results"]]  # type: ignore[index]
    assert any(t.get("dagster/sensor_name") == "landing_zone_sensor" for t in tags)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


def test_asset_catalog_renders_in_headless_chromium(
    webserver: tuple[int, DataLayout, Path],
) -> None:
    """Debian's chromium (installed by .ci/run) loads the UI, dismisses the first-visit
    dialog and shows every SPIRA asset in the catalog; the screenshots are kept as artefacts."""
    from playwright.sync_api import sync_playwright

    port = webserver[0]
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
    for asset in (
        "raw_audio",
        "validated_metadata",
        "audio_16k",
        "spectrogram_features",
        "batch_drift",
        "hospital_noise",
        "dataset_split",
        "spira_model",
        "evaluation_report",
        "champion",
    ):
        assert asset in text, asset
    assert (ARTIFACTS / "asset_graph.png").stat().st_size > 10_000
