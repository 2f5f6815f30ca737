"""After ``spira demo``, ``make ui``'s first screen (Overview's timeline) shows the demo's runs,
and the model's pages show their headlines whole.

Dagster gives a run executed in the calling process no code-location origin, and the timeline
draws only runs that have one: until 2026-12-05 a user who ran the demo and opened the UI saw
an empty first screen (issue 31). ``app/runner.py`` files the CLI's runs under workspace.yaml's
code location; this test opens the session's fresh demo in the webserver ``make ui`` starts
and reads the first screen in Chromium at 1600 px."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from spira_assets.app.runner import (
    DEFINITIONS_MODULE,
    LOCATION_NAME,
    filed_under_code_location,
    train_model_job_def,
)
from spira_assets_tests.fresh_demo import DEMO_GROUP, FreshDemo
from spira_assets_tests.servers import free_port, graphql, server
from spira_assets_tests.ui_walkthrough import (
    browser_page,
    dismiss_first_visit,
    open_asset,
    shot,
    text_uncut,
)

ROOT = Path(__file__).resolve().parents[1]
RUNS = """{ runsOrError { ... on Runs { results { runId jobName status tags { key value }
            repositoryOrigin { repositoryLocationName repositoryName } } } } }"""


@pytest.mark.parametrize("workspace", ["workspace.yaml", "deploy/compose/workspace.yaml"])
def test_the_runners_code_location_is_the_workspaces(workspace: str) -> None:
    """The origin given to the CLI's runs names the location the webserver loads; another name
    would file them under a location the UI does not have (off the timeline again)."""
    (entry,) = yaml.safe_load((ROOT / workspace).read_text())["load_from"]
    (location,) = entry.values()  # python_module here, grpc_server (compose's "code") there
    assert location["location_name"] == LOCATION_NAME
    assert location.get("module_name", DEFINITIONS_MODULE) == DEFINITIONS_MODULE


def test_the_origin_is_given_for_the_call_only() -> None:
    instance = dg.DagsterInstance.ephemeral()
    with filed_under_code_location(instance, "train_model"):
        run = instance.create_run_for_job(train_model_job_def())
    origin = run.remote_job_origin
    assert origin is not None and origin.job_name == "train_model"
    assert origin.repository_origin.code_location_origin.location_name == LOCATION_NAME
    # afterwards the instance creates runs as Dagster does (a test run, an asset check's run)
    assert instance.create_run_for_job(train_model_job_def()).remote_job_origin is None


@pytest.mark.xdist_group(DEMO_GROUP)
@pytest.mark.timeout(240)
def test_the_first_screen_shows_the_demos_runs_and_the_model_pages_their_headlines_whole(
    tmp_path: Path, fresh_demo: FreshDemo
) -> None:
    assert fresh_demo.exit_code == 0, fresh_demo.output
    machine = fresh_demo.data.parent
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(machine / "dagster_home"),
        "XDG_CONFIG_HOME": str(machine / "config"),
        "SPIRA_DATA_DIR": str(fresh_demo.data),
    }
    env.pop("SPIRA_PSEUDONYM_KEY", None)  # the demo's own key, as the demo used
    webserver = str(Path(sys.executable).parent / "dagster-webserver")
    command = [webserver, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with server(command, f"http://127.0.0.1:{port}/server_info", env, ROOT, tmp_path / "w.log"):
        runs: list[dict[str, Any]] = graphql(port, RUNS)["runsOrError"]["results"]  # type: ignore[index]
        jobs = {run["jobName"] for run in runs}
        assert jobs == {"prepare_noise", "process_batch", "train_model"}, runs
        for run in runs:
            assert run["repositoryOrigin"] == {
                "repositoryLocationName": LOCATION_NAME,
                "repositoryName": "__repository__",
            }, run
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            if run["status"] == "FAILURE":
                # with an origin, `make ui`'s daemon could retry it (instance.yaml run_retries):
                # the CLI's runs are not retried (a refused gate, retrained, is refused again)
                assert tags.get("dagster/will_retry") == "false", tags
        # the fresh demo's two-epoch model is refused (test_cli): a failed run is in view
        assert any(run["status"] == "FAILURE" for run in runs), runs
        with browser_page() as page:
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle", timeout=90_000)
            dismiss_first_visit(page)
            assert page.url.endswith("/overview/activity/timeline"), page.url  # the first screen
            for job in sorted(jobs):  # a job's row is drawn only when it has runs in view
                page.get_by_text(job, exact=True).first.wait_for()
            shot(page, "overview_timeline.png")
            # the model's pages lead with their headline, whole at 1600 px on the Overview
            # tab (a wide table below once pushed it under the definition panel)
            for asset, keys in (("evaluation_report", ["headline"]),
                                ("champion", ["headline", "gate_verdict"])):  # fmt: skip
                open_asset(page, port, asset, expect="headline")
                for key in keys:
                    said = text_uncut(page, key, f"{asset}'s {key}")
                    assert said.count("95% CI") >= 6 or key == "gate_verdict", said
                    # the demo's two-epoch model is refused (test_cli)
                    assert asset != "champion" or said.startswith("REFUSED"), said
