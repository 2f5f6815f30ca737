"""MLflow tracking store and experiment set-up (no Dagster).

The embedded default is a SQLite store under the data root with artefacts next to it, so every
process (CLI, webserver-launched runs, tests) writes to the same place whatever its working
directory. A tracking server is used instead when ``MLFLOW_TRACKING_URI`` or the resource says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

REGISTERED_MODEL = "spira-respiratory-insufficiency"
EXPERIMENT = "spira-training"


def default_tracking_uri(data_root: Path) -> str:
    explicit = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if explicit:
        return explicit
    return f"sqlite:///{(data_root / 'mlflow.db').resolve()}"


def ensure_experiment(tracking_uri: str, name: str, artifact_root: Path | None) -> str:
    """The experiment id, creating it with an artifact location under the data root."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = artifact_root.resolve().as_uri() if artifact_root is not None else None
    return str(client.create_experiment(name, artifact_location=location))


def champion_model_version(
    tracking_uri: str, registered_model: str = REGISTERED_MODEL, alias: str = "champion"
) -> str | None:
    """Our model version (the fingerprint) that holds the registry alias, or None."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        version = client.get_model_version_by_alias(registered_model, alias)
    except MlflowException:
        return None
    return str(client.get_run(str(version.run_id)).data.params["model_version"])
