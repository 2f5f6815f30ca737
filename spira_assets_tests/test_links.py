"""Links on assets point at the services ``make ui`` starts (or a tracking server's own UI)."""

from __future__ import annotations

import argparse
from pathlib import Path

import dagster as dg
import pytest

from spira_assets.assets.links import mlflow_links, report_url
from spira_assets.ui import commands


def test_mlflow_links_are_urls_to_the_run_experiment_and_model_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPIRA_MLFLOW_UI_URL", "http://mlflow.example:5000/")
    links = mlflow_links("sqlite:////data/mlflow.db", "3", "abc", "spira model", "7")
    assert all(isinstance(v, dg.UrlMetadataValue) for v in links.values())
    assert links["mlflow_run"].value == "http://mlflow.example:5000/#/experiments/3/runs/abc"
    assert links["mlflow_model_version"].value.endswith("/#/models/spira%20model/versions/7")
    # a tracking server is its own UI, whatever the local default says
    served = mlflow_links("https://tracking.example", "3", "abc")
    assert served["mlflow_experiment"].value == "https://tracking.example/#/experiments/3"


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
