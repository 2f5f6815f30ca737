"""Asset ``sweep_trial`` and job ``sweep_trials``: one partition per trial of a sweep (one
combination of training parameters with one seed), so every trial is a Dagster run that the
UI lists, the run queue and the ``gpu`` pool admit, and the deployment's training executor runs
(a pod with a GPU on Kubernetes). ``spira sweep`` plans the trials and launches the runs."""

from typing import TYPE_CHECKING, Any

import dagster as dg

from spira_assets.assets import versions
from spira_assets.assets.training import GPU_TAGS
from spira_assets.automation.jobs import DEPLOYMENT
from spira_assets.partitions import sweep_trial_partitions
from spira_assets.resources import ComputeResource, FeatureSettings, MlflowTracking, StorageResource

if TYPE_CHECKING:
    from spira_assets.ml.sweep import Trial, TrialResult

ALL_BATCHES = dg.AllPartitionMapping()  # a trial reads every batch of the split


@dg.asset(
    code_version=versions.SWEEP_TRIAL,
    partitions_def=sweep_trial_partitions,
    deps=[
        dg.AssetDep("dataset_split"),
        dg.AssetDep("audio_16k", partition_mapping=ALL_BATCHES),
        dg.AssetDep("spectrogram_features", partition_mapping=ALL_BATCHES),
        dg.AssetDep("hospital_noise"),
        # the split guard leaves out batches blocked now (caught by test_declared_reads)
        dg.AssetDep("batch_checks", partition_mapping=ALL_BATCHES),
    ],
    group_name="sweeps",
    kinds={"pytorch", "mlflow"},
    op_tags=GPU_TAGS,
    pool="gpu",
)
def sweep_trial(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    features: FeatureSettings,
    compute: ComputeResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """One sweep trial: the combination and seed its partition key names in the sweep's plan
    (sweeps/<sweep>/plan.json), trained on the current train split and scored on the
    validation split, logged as a child of the sweep's MLflow run; the result (best epoch,
    validation AUROC and loss, per-epoch history) goes to sweeps/<sweep>/results/, which is
    what spira sweep ranks and what tells it a trial is done. Partitions are added by
    spira sweep, one per trial: 0 partitions means no sweep has been planned yet (not part of
    the main path: split, model, evaluation, champion)."""
    from mlflow.tracking import MlflowClient

    from spira_assets.ml.sweep import (
        SweepStore,
        finish_trial_run,
        label,
        log_epoch,
        run_trial,
        start_trial_run,
        sweep_of,
    )
    from spira_assets.ml.train import EpochLog
    from spira_assets.ml.training_inputs import TrainingInputsRefused

    key = context.partition_key
    layout = storage.layout()
    store = SweepStore(layout.root)
    sweep = store.load_plan(sweep_of(key))
    if sweep is None:
        raise dg.Failure(
            f"trial {key}: no plan for sweep {sweep_of(key)} under {store.root}; "
            "start sweeps with `spira sweep`"
        )
    try:
        trial = sweep.trial(key)
    except KeyError as error:
        raise dg.Failure(str(error)) from error
    device = compute.torch_device()
    client = MlflowClient(mlflow_tracking.resolved_uri())
    mlflow_run = start_trial_run(client, sweep, key, trial, context.run.run_id)
    context.log.info(f"trial {label(trial.combination)} seed={trial.seed} on {device}")

    def epoch(entry: EpochLog) -> None:
        log_epoch(client, mlflow_run, entry)
        context.log.info(
            f"epoch {entry.epoch}: train {entry.train_loss:.3f} val {entry.val_loss:.3f} "
            f"AUROC {entry.val_auroc:.3f}"
        )

    try:
        result = run_trial(layout, features.config(), trial, sweep.split, device, epoch)
    except TrainingInputsRefused as error:
        client.set_terminated(mlflow_run, "FAILED")
        raise dg.Failure(
            description=str(error), metadata={"problems": dg.MetadataValue.json(error.problems)}
        ) from error
    except BaseException:
        client.set_terminated(mlflow_run, "FAILED")
        raise
    finish_trial_run(client, mlflow_run, result)
    result.mlflow_run_id = mlflow_run
    result.dagster_run_id = context.run.run_id
    store.save_result(key, result)
    return dg.MaterializeResult(metadata=_trial_metadata(sweep.name, trial, result))


def _trial_metadata(sweep: str, trial: "Trial", result: "TrialResult") -> dict[str, Any]:
    """What the UI shows of a trial: its combination and seed, best epoch and scores."""
    from spira_assets.ml.sweep import label

    return {
        "sweep": sweep,
        "combination": label(trial.combination),
        "seed": trial.seed,
        "val_auroc": dg.MetadataValue.float(float(result.best_val_auroc)),
        "val_loss": dg.MetadataValue.float(float(result.best_val_loss)),
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "device": result.device,
        "error": result.error or "",
        "mlflow_run_id": result.mlflow_run_id,
    }


sweep_trials_job = dg.define_asset_job(
    name="sweep_trials",
    selection=dg.AssetSelection.assets(sweep_trial),
    description="One sweep trial per run (partition = trial), launched by `spira sweep`.",
    executor_def=DEPLOYMENT.training_executor,
)
