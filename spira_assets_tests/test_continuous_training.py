"""The platform as people run it: `dagster dev` (webserver + daemon, what `make ui` starts) on a
free port in its own process group, observed through its GraphQL API and a headless browser.

One session, in the order things happen in real life:
1. ``spira materialize --dagster-url`` launches a run through GraphQL (what the UI's
   "Materialize" button sends): it belongs to the UI's code location and processes one batch;
2. a second batch copied into the landing zone is picked up by the landing-zone sensor;
3. with two new batches in, the retraining sensor trains, evaluates and gates a model;
4. meanwhile Debian's chromium loads the UI, dismisses the first-visit dialog and lists every
   SPIRA asset; once a model is gated, it walks through a data scientist's day
   (``ui_walkthrough.py``): the batch with the most rejections and its reasons, each plot by
   name, the MLflow link of the model followed to the MLflow UI, the model card opened from the
   champion (screenshots kept in test-artifacts/);
5. a drifted batch (ages +35, one device) fails its drift check and starts a retraining; the
   batches processed before any champion show their drift check skipped, not passed.

The MLflow UI and the report server are started the way ``make ui`` starts them
(``spira_assets.app.ui.commands``).

The code location is the product's with test-sized training and a lenient gate
(``e2e_definitions.py``), deployed ``single-process`` (steps in the run's process); sensors,
the run queue and the instance are real.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from spira_assets.app.ui import commands as ui_commands
from spira_assets.assets.monitoring import DRIFT_CHECK
from spira_assets.assets.presentation import (
    PLOT_CLASS_BALANCE,
    PLOT_DRIFT,
    PLOT_EXAMPLES,
    PLOT_RAW_AUDIO,
    PLOT_TRAINING,
    plot_evaluation,
)
from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.servers import free_port, graphql, servers
from spira_assets_tests.ui_walkthrough import (
    ARTIFACTS,
    browser_page,
    column_header,
    dismiss_first_visit,
    link,
    metadata_row,
    open_asset,
    row_text,
    shot,
    show_plot,
    text_of,
    text_uncut,
    visible_at_width,
    wait_for_row,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
Run = dict[str, object]
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status
            tags { key value } } } } }"""
ORIGIN = """query($id: ID!) { runOrError(runId: $id) { ... on Run {
              repositoryOrigin { repositoryLocationName repositoryName } } } }"""
SPIRA_ASSETS = ("raw_audio", "validated_metadata", "audio_16k", "spectrogram_features",
                "batch_drift", "drift_reference", "hospital_noise", "dataset_split",
                "spira_model", "evaluation_report", "champion")  # fmt: skip


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


def _asset_catalog_in_chromium(port: int) -> str:
    """The UI's asset catalog and graph in headless chromium; returns the catalog's text."""
    with browser_page() as page:
        # the catalog renders only the rows on screen (a virtual list): tall enough for all
        page.set_viewport_size({"width": 1600, "height": 2400})
        page.goto(f"http://127.0.0.1:{port}/assets", wait_until="networkidle", timeout=90_000)
        dismiss_first_visit(page)
        for asset in ("raw_audio", "spectrogram_features", "batch_drift", "champion"):
            page.get_by_text(asset, exact=True).first.wait_for(timeout=60_000)
        text = text_of(page)
        shot(page, "asset_catalog.png")
        page.goto(f"http://127.0.0.1:{port}/asset-groups", wait_until="networkidle")
        page.get_by_text("monitoring", exact=True).first.wait_for(timeout=60_000)
        shot(page, "asset_graph.png")
    return text


def _a_day_in_the_ui(port: int, warehouse: Warehouse) -> None:
    """Rejections of the worst batch, every plot by name, MLflow and the model card."""
    worst, rejected = warehouse.query(
        "SELECT batch_id, count(*) AS n FROM quarantine WHERE batch_id LIKE 'demo-%' "
        "GROUP BY ALL ORDER BY n DESC, batch_id LIMIT 1"
    ).row(0)
    assert rejected > 0, "the corpus should have rejected files"
    reasons = warehouse.query(
        f"SELECT stage, rule, detail FROM quarantine WHERE batch_id = '{worst}'"
    ).rows()
    with browser_page() as page:
        open_asset(page, port, "quarantine", worst, expect="rows")  # both ingest stages' rejections
        text = text_of(page)
        for stage, rule, detail in reasons:
            assert rule in text and detail[:40] in text, (stage, rule, detail)
        assert "file(s) and" in row_text(page, "rejected")  # by file, not echoes
        visible_at_width(page, column_header(page, "rows", "detail"), "the rejection detail")
        shot(page, "batch_rejections.png", metadata_row(page, "rows").first)
        open_asset(page, port, "raw_audio", worst)
        show_plot(page, PLOT_RAW_AUDIO)
        open_asset(page, port, "validated_metadata", worst)
        show_plot(page, PLOT_CLASS_BALANCE)
        open_asset(page, port, "spectrogram_features", worst)
        show_plot(page, PLOT_EXAMPLES, "feature_examples.png")

        open_asset(page, port, "spira_model")
        show_plot(page, PLOT_TRAINING, "model_curves.png")
        version = row_text(page, "model_version").split()[-1]
        run_name = f"model {version[:8]} · "
        run_url, experiment_url = link(page, "mlflow_run"), link(page, "mlflow_experiment")
        run_id = run_url.rsplit("/", 1)[-1].split("?")[0]
        response = page.goto(run_url, wait_until="load")
        assert response is not None and response.ok, run_url
        page.get_by_text(run_id).first.wait_for()  # the MLflow UI shows the model's run
        page.get_by_text(run_name).first.wait_for()  # named by version, batches and seed
        shot(page, "mlflow_run.png")
        page.goto("about:blank")  # a fresh page: the run page's header stays in the DOM
        page.goto(experiment_url, wait_until="load")  # the training runs, not GenAI
        try:
            page.get_by_text(run_name).first.wait_for()
        finally:
            shot(page, "mlflow_experiment.png")
        assert not page.get_by_text("Judges", exact=True).count()  # GenAI's side bar

        open_asset(page, port, "evaluation_report", expect="headline")
        headline = text_uncut(page, "headline", "the evaluation's headline")
        assert "per recording: AUROC" in headline and "per participant: AUROC" in headline
        assert headline.count("95% CI") >= 6, headline
        wait_for_row(page, "metrics"), wait_for_row(page, "subgroups")
        visible_at_width(page, column_header(page, "metrics", "specificity"), "specificity")
        shot(page, "evaluation_headline.png")
        show_plot(page, plot_evaluation("clean"), "evaluation_clean.png")
        show_plot(page, plot_evaluation("noisy"))

        open_asset(page, port, "champion", expect="gate_criteria")
        assert "per recording: AUROC" in text_uncut(page, "headline", "the champion's headline")
        verdict = text_uncut(page, "gate_verdict", "the gate's verdict")
        assert "first champion: non-inferiority did not apply" in verdict, verdict
        for key in ("evaluation_report", "model_card", "mlflow_run", "mlflow_model_version"):
            link(page, key)
        visible_at_width(page, column_header(page, "gate_criteria", "passed"), "passed")
        shot(page, "champion_headline.png")
        shot(page, "gate_decision.png", metadata_row(page, "gate_criteria").first)
        card = link(page, "model_card")
        response = page.goto(card, wait_until="load")
        assert response is not None and response.ok, card
        page.get_by_text("Model card: SpiraConv").first.wait_for()
        shot(page, "model_card.png")
        page.goto(card.rsplit("/", 2)[0] + "/", wait_until="load")  # the reports server's root
        page.get_by_text("champion", exact=True).first.wait_for()  # the index marks it
        shot(page, "reports_index.png")


def _drift_in_the_ui(port: int) -> None:
    with browser_page() as page:
        open_asset(page, port, "batch_drift", "demo-003", expect="drift")
        said = row_text(page, "drift")  # the reference is the champion's data, without demo-003
        assert "demo-003 is not among them" in said and "drifted from champion" in said, said
        shot(page, "batch_drift_headline.png")
        show_plot(page, PLOT_DRIFT, "batch_drift.png")


def _check_executions(port: int, asset: str, check: str, batch: str) -> list[tuple[str, str]]:
    """(status, description) of each execution of a check in runs of ``batch``, oldest first."""
    query = """query($a: [String!]!, $c: String!) { assetCheckExecutions(assetKey: {path: $a},
               checkName: $c, limit: 50) { status evaluation { description }
               run { tags { key value } } } }"""
    executions = graphql(port, query, {"a": [asset], "c": check})["assetCheckExecutions"]
    return [
        (str(e["status"]), str((e["evaluation"] or {}).get("description")))
        for e in reversed(executions)  # type: ignore[arg-type]
        if {t["key"]: t["value"] for t in e["run"]["tags"]}.get("dagster/partition") == batch
    ]


@pytest.mark.timeout(900)
def test_ui_sensors_retraining_and_drift_under_dagster_dev(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    generate_corpus(
        DemoSpec(uploads, batches=2, participants=12, seed=17, defect_rate=0.08, noise_files=1),
        workers=2,
    )
    drifted = tmp_path / "drifted"
    generate_corpus(
        DemoSpec(drifted, batches=1, participants=12, seed=71, defect_rate=0.0, noise_files=0,
                 age_shift=35, devices=("ios-app",)),
        workers=2,
    )  # fmt: skip
    shutil.move(drifted / "demo-001", uploads / "demo-003")
    layout = DataLayout.from_location(tmp_path / "data")
    landing = tmp_path / "data" / "landing"
    shutil.copytree(uploads / "noise", landing / "noise")
    _land(uploads, landing, "demo-001")
    home = tmp_path / "dagster_home"
    home.mkdir()
    # the run queue polls every second, as make ui's instance.yaml (Dagster's 5 s was 6-8 s of
    # this test per queued run)
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_queue:\n  dequeue_interval_seconds: 1\n"
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:  # known: the sensor skips it
        instance.add_dynamic_partitions(COLLECTION_BATCH, ["demo-001"])
    port, ports = free_port(), argparse.Namespace(mlflow_port=free_port(), reports_port=free_port())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SPIRA_DATA_DIR": str(layout.root),
        "SPIRA_SENSOR_INTERVAL_S": "5",  # the product's 30/60 s would be idle minutes here
        # every step in its run's process: the daemon, sensors, queue and UI are what this
        # test is about; one process per step under a daemon is the deployment check's (compose)
        # and test_postgres_instance's, and cost this test a forkserver and five step
        # processes per run on 2 cores
        "SPIRA_DEPLOYMENT": "single-process",
        "SPIRA_MLFLOW_UI_URL": f"http://127.0.0.1:{ports.mlflow_port}",
        "SPIRA_REPORTS_URL": f"http://127.0.0.1:{ports.reports_port}",
    }
    reports_server, mlflow_ui = ui_commands(ports, layout.local_root)  # what `make ui` starts
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-m", "spira_assets_tests.e2e_definitions", "-h", "127.0.0.1",
               "-p", str(port)]  # fmt: skip
    log = tmp_path / "dagster.log"
    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    with servers(
        [
            (reports_server, env["SPIRA_REPORTS_URL"], None),
            (mlflow_ui, env["SPIRA_MLFLOW_UI_URL"] + "/health", tmp_path / "mlf.log"),
            (command, f"http://127.0.0.1:{port}/server_info", log),
        ],
        env,
        ROOT,
    ):
        _wait_for_location(port, log)
        nodes = graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert {n["assetKey"]["path"][0] for n in nodes} >= set(SPIRA_ASSETS)  # type: ignore[index, union-attr]

        # 1. the CLI through the UI's API; 2. a batch landing by itself
        spira = str(Path(sys.executable).parent / "spira")
        cli = subprocess.Popen(
            [spira, "materialize", "--batch", "demo-001", "--dagster-url",
             f"http://127.0.0.1:{port}"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
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
        output = cli.communicate(timeout=120)[0]
        assert cli.returncode == 0, output
        launched = str(by_batch["demo-001"]["runId"])
        assert f"demo-001: run {launched[:8]} ok" in output, output
        origin = graphql(port, ORIGIN, {"id": launched})["runOrError"]["repositoryOrigin"]  # type: ignore[index]
        assert origin["repositoryLocationName"] == "spira_assets_tests.e2e_definitions", origin  # type: ignore[index]
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
        _a_day_in_the_ui(port, warehouse)

        # 5. a drifted batch fails its drift check and starts a retraining
        _land(uploads, landing, "demo-003")
        _wait_for(port, "a retraining started by drift", lambda r: bool(_trainings(r, "drift")))
        drift = warehouse.query(
            "SELECT feature FROM batch_drift WHERE batch_id = 'demo-003' AND drifted"
        )
        assert drift.height > 0, "demo-003 should fail its drift check"
        _drift_in_the_ui(port)
        drift_003 = _check_executions(port, "batch_drift", DRIFT_CHECK, "demo-003")
        assert drift_003[0][0] == "FAILED" and drift_003[0][1].startswith("demo-003: "), drift_003
        # processed before any champion: nothing to compare with, so skipped (not passed)
        drift_001 = _check_executions(port, "batch_drift", DRIFT_CHECK, "demo-001")
        assert drift_001[0] == ("SKIPPED", "None"), drift_001
        # an asset over all batches through the UI's API (the path of `spira demo --dagster-url`)
        done = subprocess.run(
            [spira, "materialize", "--batch", "demo-003", "--select", "hospital_noise",
             "--dagster-url", f"http://127.0.0.1:{port}"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        noise_run = next(
            r for r in _runs(port) if r["jobName"] == "prepare_noise" and
            _tags(r).get("spira/launched_by") == "cli"
        )  # fmt: skip
        assert f"hospital_noise: run {str(noise_run['runId'])[:8]} ok" in done.stdout
        origin = graphql(port, ORIGIN, {"id": noise_run["runId"]})["runOrError"]["repositoryOrigin"]  # type: ignore[index]
        assert origin["repositoryLocationName"] == "spira_assets_tests.e2e_definitions", origin  # type: ignore[index]
        # every ingest check names its batch (the UI shows no partition for check executions)
        for asset, check in (("raw_audio", "quarantine_share_within_limit"),
                             ("raw_audio", "stored_table_matches_schema"),
                             ("validated_metadata", "both_classes_present")):  # fmt: skip
            executions = _check_executions(port, asset, check, "demo-002")
            assert executions, (asset, check)
            for _status, description in executions:
                assert description.startswith("batch demo-002: "), (asset, check, description)
