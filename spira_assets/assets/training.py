"""Asset ``spira_model``: SpiraConv trained on the verified split (one model per seed, best
kept), saved with the split it was trained on, tracked and registered in MLflow. The inputs
and their guards are the training core's (``ml/training_inputs.py``, ``ml/training_run.py``),
shared with sweep trials and reproduction; this module adapts them to Dagster and MLflow."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

import spira_assets
from spira_assets.assets import versions
from spira_assets.assets.links import dagster_run_url, mlflow_links
from spira_assets.assets.presentation import PLOT_TRAINING, image
from spira_assets.assets.tables import metadata_text, table_out, with_tables
from spira_assets.features.config import FeatureConfig
from spira_assets.ml.lineage import pinned_requirements
from spira_assets.ml.split import SplitConfig
from spira_assets.ml.tracking import ModelFacts, describe_model, has_registered_version, log_png
from spira_assets.ml.train_config import TrainConfig
from spira_assets.ml.training_rows import version_row
from spira_assets.resources import (
    ComputeResource,
    FeatureSettings,
    MlflowTracking,
    StorageResource,
    TrainingSettings,
)
from spira_assets.storage.tables import MODEL_VERSIONS

if TYPE_CHECKING:
    from spira_assets.ml.training_inputs import TrainingPlan

# On Kubernetes (SPIRA_DEPLOYMENT=k8s) the training step is a pod of its own: one GPU, room for
# the features of every batch in memory, and a toleration for the usual GPU-node taint.
GPU_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "requests": {"cpu": "4", "memory": "16Gi"},
                "limits": {"nvidia.com/gpu": "1", "memory": "32Gi"},
            }
        },
        "pod_spec_config": {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        },
    }
}


def _mlflow_link(uri: str, run_id: str, registered_model: str, registered: str) -> dict[str, Any]:
    import mlflow

    experiment_id = str(mlflow.get_run(run_id).info.experiment_id)
    return mlflow_links(uri, experiment_id, run_id, registered_model, registered)


def _refused(error: Exception) -> dg.Failure:
    problems = getattr(error, "problems", [str(error)])
    return dg.Failure(
        description=str(error), metadata={"problems": dg.MetadataValue.json(problems)}
    )


def reusable(directory: Path, plan: "TrainingPlan") -> bool:
    """Whether ``directory`` holds the whole saved version of ``plan``; a folder missing one of
    its files, or whose split is not the one the version names, fails naming it (a version is
    never completed from today's data)."""
    from spira_assets.ml.artifacts import CONFIG, LINEAGE, SPLIT, SUMMARY, WEIGHTS
    from spira_assets.ml.inference import THRESHOLD_FILE
    from spira_assets.ml.training_inputs import split_rows_fingerprint

    files = (WEIGHTS, CONFIG, SUMMARY, LINEAGE, THRESHOLD_FILE, SPLIT)
    present = [f for f in files if (directory / f).exists()]
    if not present:
        return False
    missing = [f for f in files if f not in present]
    if missing:
        raise dg.Failure(
            f"model version {plan.version} in {directory} lacks {', '.join(missing)}: a version "
            "is never completed from today's data; delete the folder to train it again"
        )
    if split_rows_fingerprint(pl.read_parquet(directory / SPLIT)) != plan.inputs["split_rows"]:
        raise dg.Failure(
            f"model version {plan.version}: {directory / SPLIT} is not the split the version "
            "was trained on (edited since); delete the folder to train it again"
        )
    return True


def _spira_model(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    feature_config: FeatureConfig,
    train_config: TrainConfig,
    split_config: SplitConfig,
    seeds: list[int],
    device: Any,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """Plan (verified split), reuse a complete saved version of the same inputs, or train one;
    register it in MLflow and record its row."""
    from spira_assets.ml.artifacts import LINEAGE, SUMMARY
    from spira_assets.ml.training_inputs import TrainingInputsRefused, plan_training

    layout, lake = storage.layout(), storage.lake()
    try:
        plan = plan_training(lake, feature_config, train_config, split_config, seeds)
    except TrainingInputsRefused as error:
        raise _refused(error) from error
    version = plan.version
    directory = layout.fetch_if_present(f"models/{version}")
    uri = mlflow_tracking.resolved_uri()
    saved = reusable(directory, plan)
    summary: dict[str, Any] = json.loads((directory / SUMMARY).read_text()) if saved else {}
    reused = (
        saved
        and summary.get("registered_version")
        and has_registered_version(
            uri, summary["registered_version"], version, mlflow_tracking.registered_model
        )
    )
    metadata: dict[str, Any] = {"model_version": version, "reused": bool(reused)}
    if reused:
        context.log.info(f"inputs unchanged: reusing model version {version}")
        lineage = json.loads((directory / LINEAGE).read_text())
    else:
        summary, lineage, run_id, registered = _train_and_register(
            context, directory, plan, saved, layout, feature_config, train_config, device,
            mlflow_tracking,
        )  # fmt: skip
        layout.publish(f"models/{version}")  # to object storage when the root is remote
        metadata |= {
            "mlflow_tracking_uri": uri,
            "mlflow_run_id": run_id,
            **_mlflow_link(uri, run_id, mlflow_tracking.registered_model, registered),
            "registered_model": f"{mlflow_tracking.registered_model} v{registered}",
        }
    lake.write_part(MODEL_VERSIONS, version, version_row(str(layout.root), summary, lineage))
    storage.warehouse().ensure_views()
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "speaker_independence": plan.speaker_independence,
            **_summary_metadata(summary),
        },
        data_version=dg.DataVersion(version),
    )


def _train_and_register(
    context: dg.AssetExecutionContext,
    directory: Path,
    plan: "TrainingPlan",
    saved: bool,
    layout: Any,
    feature_config: FeatureConfig,
    train_config: TrainConfig,
    device: Any,
    mlflow_tracking: MlflowTracking,
) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """Train the plan (or take a saved version the tracking store does not know), log it and
    register the pyfunc model; returns (summary, lineage, MLflow run id, registered version)."""
    import mlflow

    from spira_assets.ml.artifacts import LINEAGE, SUMMARY
    from spira_assets.ml.inference import THRESHOLD_FILE
    from spira_assets.ml.serving import PIP_PACKAGES, log_pyfunc
    from spira_assets.ml.training_run import train_config_params

    with mlflow_tracking.run(context.run.run_id) as run_id:
        mlflow.log_params(
            {
                "model_version": plan.version,
                "device": str(device),
                "code_version": plan.inputs["code_version"],
                "feature_config_hash": plan.inputs["feature_config_hash"],
                "seeds": plan.seeds,
                **train_config_params(feature_config, train_config),
            }
        )
        if saved:
            context.log.warning(
                f"model version {plan.version} is saved but not registered in "
                f"{mlflow_tracking.resolved_uri()}: registering it"
            )
            summary = json.loads((directory / SUMMARY).read_text())
            lineage = json.loads((directory / LINEAGE).read_text())
            mlflow.log_param(
                "threshold", json.loads((directory / THRESHOLD_FILE).read_text())["threshold"]
            )
        else:
            summary, lineage = _train(
                context, directory, plan, layout, feature_config, train_config, device, run_id
            )
        lineage["mlflow_run_id"] = run_id
        (directory / LINEAGE).write_text(json.dumps(lineage, indent=2, default=str))
        mlflow.log_artifacts(str(directory), artifact_path="spira_model")
        context.log.info("logging and registering the MLflow pyfunc model")
        info = log_pyfunc(
            directory,
            mlflow_tracking.registered_model,
            Path(spira_assets.__file__).parent,
            pinned_requirements(PIP_PACKAGES),
        )
        registered = str(info.registered_model_version or "")
        mlflow.log_metrics(
            {
                key: value
                for key, value in (
                    ("val_auroc_mean", summary["val_auroc_mean"]),
                    ("val_auroc_std", summary["val_auroc_std"]),
                    ("best_val_loss", summary["val_loss"]),
                )
                if value is not None  # an undefined AUROC is left out, not logged as NaN
            }
        )
        summary["registered_version"] = registered
        summary["mlflow_run_id"] = run_id
        (directory / SUMMARY).write_text(json.dumps(summary, indent=2))
        log_png(_curves(summary), "plots/training_curves.png")
        run = context.run.run_id
        facts = ModelFacts.of(lineage, summary, train_config.profile, run, dagster_run_url(run))
        uri = mlflow_tracking.resolved_uri()
        describe_model(uri, run_id, mlflow_tracking.registered_model, registered, facts)
    return summary, lineage, run_id, registered


def _train(
    context: dg.AssetExecutionContext,
    directory: Path,
    plan: "TrainingPlan",
    layout: Any,
    feature_config: FeatureConfig,
    train_config: TrainConfig,
    device: Any,
    run_id: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train every seed of the plan (a nested MLflow run each) through the training core;
    returns (summary, lineage)."""
    import mlflow
    import torch

    from spira_assets.ml.train import EpochLog, TrainResult
    from spira_assets.ml.training_inputs import load_training_data
    from spira_assets.ml.training_run import train_version

    data = load_training_data(plan, layout, feature_config, train_config, device)
    context.log.info(
        f"training ({train_config.profile} profile) on {device}: {len(data.sets['train'])} "
        f"train / {len(data.sets['validation'])} validation recordings, seeds {plan.seeds}; "
        f"clean validation input: {data.clean_source}"
        + (
            f"; noise files left out by the profile: {list(plan.noise.left_out)}"
            if plan.noise.left_out
            else ""
        )
    )
    mlflow.log_param("cpu_threads", torch.get_num_threads())

    @contextmanager
    def seed_run(seed: int) -> Iterator[None]:
        with mlflow.start_run(run_name=f"seed-{seed}", nested=True):
            mlflow.log_param("seed", seed)
            yield

    def log(seed: int, entry: EpochLog) -> None:
        mlflow.log_metrics(
            {k: v for k, v in asdict(entry).items() if k != "epoch"}, step=entry.epoch
        )
        context.log.info(
            f"seed {seed} epoch {entry.epoch}: train {entry.train_loss:.3f} "
            f"val {entry.val_loss:.3f} AUROC {entry.val_auroc:.3f} "
            f"({entry.windows_per_s:.0f} windows/s)"
        )

    def seed_done(result: TrainResult) -> None:  # inside the seed's nested run
        mlflow.log_metrics(
            {"best_val_loss": result.best_val_loss, "best_val_auroc": result.best.val_auroc}
        )

    trained = train_version(
        directory,
        plan,
        data,
        feature_config,
        train_config,
        device,
        run_id,
        seed_run,
        log,
        seed_done,
    )
    mlflow.log_param("threshold", trained.summary["threshold"])
    return trained.summary, trained.lineage


def _curves(summary: dict[str, Any]) -> bytes:
    from spira_assets.plots import training_curves

    histories = {int(s): [tuple(r) for r in rows] for s, rows in summary["histories"].items()}
    return training_curves(histories, (summary["best_seed"], summary["best_epoch"]))


def _summary_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    histories = summary["histories"]
    aurocs = {
        name: round(summary[key], 4)
        for name, key in (
            ("val_auroc_best_seed", "val_auroc"),
            ("val_auroc_mean", "val_auroc_mean"),
            ("val_auroc_std", "val_auroc_std"),
        )
        if summary[key] is not None
    }
    undefined = summary.get("val_auroc_undefined_seeds", 0)
    if undefined:
        aurocs["val_auroc_undefined"] = (
            f"{undefined} of {len(histories)} seeds have no validation AUROC: their validation "
            "split holds recordings of one class only (add batches or participants of the other)"
        )
    return {
        **aurocs,
        "val_loss": round(summary["val_loss"], 4),
        "best_seed": summary["best_seed"],
        "best_epoch": summary["best_epoch"],
        "epochs_run": summary["epochs_run"],
        "windows_per_s": round(summary["windows_per_s"], 1),
        "data_wait_share": round(summary["data_wait_share"], 4),
        "device": summary["device"],
        "training_seconds": round(summary["training_seconds"], 1),
        PLOT_TRAINING: image(_curves(summary), "training curves"),
    }


@dg.multi_asset(
    name="spira_model",
    outs={
        "spira_model": dg.AssetOut(
            group_name="training",
            kinds={"pytorch", "mlflow"},
            code_version=versions.SPIRA_MODEL,
            description="SpiraConv trained on the train split of every open batch (one model per "
            "seed, the best by validation loss kept): clean windows read from the feature "
            "store, noisy ones transformed on the device; exported program, lineage, split; "
            "logged and registered in MLflow.",
        ),
        "model_versions": table_out(
            MODEL_VERSIONS,
            "The table of trained models (spira_model is the model itself): one row per "
            "version: seeds, validation scores, device, feature "
            "configuration, code version, MLflow run and registered version.",
            "training",
            versions.SPIRA_MODEL,
        ),
    },
    deps=["dataset_split", "audio_16k", "spectrogram_features", "hospital_noise", "batch_checks"],
    op_tags=GPU_TAGS,
    pool="gpu",
)
def spira_model(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    features: FeatureSettings,
    training: TrainingSettings,
    compute: ComputeResource,
    mlflow_tracking: MlflowTracking,
) -> Iterator[dg.MaterializeResult]:
    """Train (or reuse) the model version of the current inputs and record its row."""
    result = _spira_model(
        context,
        storage,
        features.config(),
        training.train_config(),
        training.split_config(),
        training.seed_list(),
        compute.torch_device(),
        mlflow_tracking,
    )
    version = metadata_text(result, "model_version")
    row = storage.lake().read_part(MODEL_VERSIONS, version)
    yield from with_tables(result, "spira_model", [(MODEL_VERSIONS, row)])
