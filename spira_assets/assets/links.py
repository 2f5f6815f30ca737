"""Links shown on assets: the MLflow UI (run, experiment, registered model version) and the
HTML reports, served over HTTP by ``make ui`` (``spira_assets/app/ui.py``).

Base addresses come from ``SPIRA_MLFLOW_UI_URL`` (default ``http://127.0.0.1:5000``),
``SPIRA_DAGSTER_URL`` (default ``http://127.0.0.1:3000``) and ``SPIRA_REPORTS_URL`` (default
``http://127.0.0.1:8001``: ``data/reports`` served as is). A tracking server given as
``MLFLOW_TRACKING_URI=http(s)://...`` is its own UI. MLflow links open its model-training
view (``TRAINING_VIEW``), not the GenAI one it shows by default.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dagster as dg

from spira_assets.environment import setting

MLFLOW_UI_URL = "http://127.0.0.1:5000"
REPORTS_URL = "http://127.0.0.1:8001"
# MLflow 3's UI opens in its GenAI mode unless the address asks for model training
TRAINING_VIEW = "workflowType=machine_learning"
DAGSTER_UI_URL = "http://127.0.0.1:3000"  # make ui; SPIRA_DAGSTER_URL elsewhere


def mlflow_ui(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return (setting("SPIRA_MLFLOW_UI_URL") or MLFLOW_UI_URL).rstrip("/")


def reports_base() -> str:
    return (setting("SPIRA_REPORTS_URL") or REPORTS_URL).rstrip("/")


def mlflow_links(
    tracking_uri: str,
    experiment_id: str,
    run_id: str,
    registered_model: str | None = None,
    registered_version: str | None = None,
) -> dict[str, Any]:
    base = mlflow_ui(tracking_uri)
    experiment = f"{base}/#/experiments/{experiment_id}"
    links: dict[str, Any] = {
        "mlflow_run": dg.MetadataValue.url(f"{experiment}/runs/{run_id}?{TRAINING_VIEW}"),
        "mlflow_experiment": dg.MetadataValue.url(f"{experiment}?{TRAINING_VIEW}"),
    }
    if registered_model and registered_version:
        links["mlflow_model_version"] = dg.MetadataValue.url(
            f"{base}/#/models/{quote(registered_model)}/versions/{registered_version}"
        )
    return links


def report_url(version: str, name: str) -> dg.MetadataValue:
    """A report of ``reports/<version>/`` as served over HTTP."""
    return dg.MetadataValue.url(f"{reports_base()}/{quote(version)}/{quote(name)}")


def dagster_run_url(run_id: str) -> str:
    """A Dagster run's page (``SPIRA_DAGSTER_URL``, the address ``--dagster-url`` takes)."""
    base = (setting("SPIRA_DAGSTER_URL") or DAGSTER_UI_URL).rstrip("/")
    return f"{base}/runs/{run_id}"
