"""dagster-mlflow's resource object (``dagster_mlflow.MlFlow``) opened on an MLflow run we chose.

dagster-mlflow does the tracking session: it points MLflow at the tracking URI, selects the
experiment by name, makes the run active (``mlflow.start_run(run_id=...)``), tags it with
``dagster_run_id`` and unregisters MLflow's ``atexit`` ``end_run``. What it would get wrong for
this project is done around it (docs/ARCHITECTURE.md, "experiment tracking"): the experiment
exists beforehand with its artifact location under the data root (``ensure_experiment``), so its
``set_experiment`` creates nothing and no ``./mlruns`` appears in whichever process starts the run;
the run is chosen by us (``mlflow_run_id``: this Dagster run's training run, or the model's own run
for the evaluation) and keeps its name; each step ends it (``MlflowTracking.finish``), because
dagster-mlflow only ends it in its job-wide hook or ``cleanup_on_error``.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import dagster as dg


def open_run(tracking_uri: str, experiment: str, run_id: str) -> Any:
    """``dagster_mlflow.MlFlow`` with MLflow run ``run_id`` active (its name and the Dagster run
    that trained it, tag ``dagster.run_id``, unchanged)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.tracking.MlflowClient(tracking_uri).get_run(run_id)
    active = mlflow.active_run()
    if active is not None and active.info.run_id != run_id:
        mlflow.end_run()  # MlFlow keeps an active run rather than switching to ours
    # the init context dagster-mlflow's legacy @resource reads (MlFlow.__init__); its
    # run_name comes from the job name, given here as the run's current name so it is kept
    context = SimpleNamespace(
        log=dg.get_dagster_logger(),
        dagster_run=SimpleNamespace(job_name=run.info.run_name),
        run_id=run.data.tags.get("dagster.run_id", ""),
        resource_config={
            "experiment_name": experiment,
            "mlflow_tracking_uri": tracking_uri,
            "mlflow_run_id": run_id,
            "parent_run_id": None,
            "env": {},
            "env_to_tag": None,
            "extra_tags": None,
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # the class and its hook are beta
        from dagster_mlflow.resources import MlFlow

        return MlFlow(context)
