"""Links on assets point at the services ``make ui`` starts (or a tracking server's own UI)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from spira_assets.app.ui import commands
from spira_assets.assets.links import mlflow_links, report_url
from spira_assets_tests.servers import free_port, wait_until_answers

ROOT = Path(__file__).resolve().parents[1]


def test_mlflow_links_are_urls_to_the_run_experiment_and_model_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPIRA_MLFLOW_UI_URL", "http://mlflow.example:5000/")
    links = mlflow_links("sqlite:////data/mlflow.db", "3", "abc", "spira model", "7")
    assert all(isinstance(v, dg.UrlMetadataValue) for v in links.values())
    assert links["mlflow_run"].value == (
        "http://mlflow.example:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert links["mlflow_model_version"].value.endswith("/#/models/spira%20model/versions/7")
    # a tracking server is its own UI, whatever the local default says
    served = mlflow_links("https://tracking.example", "3", "abc")
    assert served["mlflow_experiment"].value == (
        "https://tracking.example/#/experiments/3?workflowType=machine_learning"
    )


def test_report_links_follow_the_served_reports_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIRA_REPORTS_URL", "http://reports.example:8001")
    link = report_url("0ae2146f", "model_card.html")
    assert link.value == "http://reports.example:8001/0ae2146f/model_card.html"


def test_make_ui_serves_reports_and_a_local_mlflow_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = argparse.Namespace(port=3000, mlflow_port=5000, reports_port=8001)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    started = commands(args, tmp_path)
    assert any("http.server" in c and str(tmp_path / "reports") in c for c in started)
    assert any(Path(c[0]).name == "mlflow" and "sqlite:///" in c[3] for c in started)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example")
    assert not any(Path(c[0]).name == "mlflow" for c in commands(args, tmp_path))


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


@pytest.mark.timeout(240)
def test_stopping_the_ui_launcher_stops_everything_it_started(tmp_path: Path) -> None:
    """`kill` of `make ui`'s launcher (as a service manager stops it) reaches the MLflow UI's
    job consumers and dagster dev's webserver, daemon and code server, not only its children."""
    ports = {name: free_port() for name in ("port", "mlflow", "reports")}
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"),
           "SPIRA_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    launcher = subprocess.Popen(
        [sys.executable, "-m", "spira_assets.app.ui", "--port", str(ports["port"]),
         "--mlflow-port", str(ports["mlflow"]), "--reports-port", str(ports["reports"])],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started: set[int] = set()
    try:
        for url in (f"http://127.0.0.1:{ports['reports']}/",
                    f"http://127.0.0.1:{ports['mlflow']}/health",
                    f"http://127.0.0.1:{ports['port']}/server_info"):  # fmt: skip
            wait_until_answers(url, launcher, timeout_s=150)
        started = _descendants(launcher.pid)
        assert len(started) >= 5, started  # http.server, mlflow (+ workers), dagster dev (+ ...)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=90) == 143
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [p for p in started if _alive(p)]
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]
    finally:
        if launcher.poll() is None:
            started |= _descendants(launcher.pid)
            launcher.kill()
        for pid in started:
            if _alive(pid):  # nothing outlives a failed test
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=30)
