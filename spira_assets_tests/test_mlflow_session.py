"""dagster-mlflow tracks the runs (issue 27), with the faults it would bring planted and absent.

dagster-mlflow's ``MlFlow`` calls ``mlflow.set_experiment(name)``, which would create a missing
experiment with the artifact root ``./mlruns`` of whichever process starts the run, and it ends a
run only in its job-wide hook. Here a step runs from a working directory with no experiment: the
experiment is created beforehand under the data root, nothing appears in that directory, the run
carries dagster-mlflow's tag, and the step ends it (FINISHED, or FAILED when it raises).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from spira_assets.mlflow_session import open_run
from spira_assets.resources import MlflowTracking, StorageResource


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowTracking:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    elsewhere = tmp_path / "some-process-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    storage = StorageResource(data_dir=str(tmp_path / "data"))
    return MlflowTracking(storage=storage, experiment="session-test")


def test_a_step_tracked_by_dagster_mlflow_scatters_nothing_and_ends_its_run(
    tracking: MlflowTracking, tmp_path: Path
) -> None:
    with tracking.run("0123456789abcdef") as run_id:
        mlflow.log_metric("loss", 0.5)
        note = tmp_path / "note.txt"
        note.write_text("x")
        mlflow.log_artifact(str(note))
    assert mlflow.active_run() is None
    assert list((tmp_path / "some-process-cwd").iterdir()) == []  # no ./mlruns
    run = MlflowClient(tracking.resolved_uri()).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "01234567"
    assert run.data.tags["dagster.run_id"] == "0123456789abcdef"
    assert run.data.tags["dagster_run_id"] == "0123456789abcdef"  # set by dagster-mlflow
    assert run.info.artifact_uri.startswith((tmp_path / "data").resolve().as_uri())
    # a second step of the same Dagster run resumes the same MLflow run
    with tracking.run("0123456789abcdef") as again:
        pass
    assert again == run_id


def test_a_failing_step_leaves_no_run_running(tracking: MlflowTracking) -> None:
    with pytest.raises(RuntimeError), tracking.run("feedfacecafebeef") as run_id:
        raise RuntimeError("planted")
    assert mlflow.active_run() is None
    run = MlflowClient(tracking.resolved_uri()).get_run(run_id)
    assert run.info.status == "FAILED"


def test_the_evaluation_reopens_the_model_run_keeping_its_name(tracking: MlflowTracking) -> None:
    with tracking.run("aaaabbbbccccdddd") as run_id:
        pass
    client = MlflowClient(tracking.resolved_uri())
    client.set_tag(run_id, "mlflow.runName", "renamed-by-training")
    # another Dagster run (the evaluation's) logs into the model's own run
    open_run(tracking.resolved_uri(), tracking.experiment, run_id)
    active = mlflow.active_run()
    assert active is not None and active.info.run_id == run_id
    mlflow.end_run()
    run = client.get_run(run_id)
    assert run.info.run_name == "renamed-by-training"
    assert run.data.tags["dagster_run_id"] == "aaaabbbbccccdddd"


def test_without_the_experiment_made_first_dagster_mlflow_scatters(
    tracking: MlflowTracking, tmp_path: Path
) -> None:
    """The planted fault: dagster-mlflow alone, on a store with no experiment yet."""
    from types import SimpleNamespace

    import dagster as dg
    from dagster_mlflow.resources import MlFlow

    uri = f"sqlite:///{tmp_path / 'bare.db'}"
    config = {"experiment_name": "bare", "mlflow_tracking_uri": uri, "env": {}}
    context = SimpleNamespace(
        log=dg.get_dagster_logger(),
        dagster_run=SimpleNamespace(job_name="job"),
        run_id="r1",
        resource_config=config,
    )
    MlFlow(context)
    mlflow.end_run()
    experiment = MlflowClient(uri).get_experiment_by_name("bare")
    assert experiment is not None
    assert "some-process-cwd" in experiment.artifact_location  # ./mlruns of this process
