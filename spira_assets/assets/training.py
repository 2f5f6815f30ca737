"""Assets ``dataset_split`` and ``spira_model``: patient-grouped splits over every batch, and
SpiraConv trained on them (one model per seed, best kept), tracked and registered in MLflow."""

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import numpy as np
import polars as pl

import spira_assets
from spira_assets.assets.presentation import column_schema, image, markdown_table
from spira_assets.assets.waveforms import audio_16k, hospital_noise
from spira_assets.ml.artifacts import load_model, model_config, save_model_version
from spira_assets.ml.inference import THRESHOLD_CHOICE, THRESHOLD_FILE
from spira_assets.ml.inputs import (
    local_shards,
    noise_bank,
    recordings_with_split,
    windows_by_split,
)
from spira_assets.ml.lineage import code_version, fingerprint, package_versions, pinned_requirements
from spira_assets.ml.serving import PIP_PACKAGES, log_pyfunc
from spira_assets.ml.split import SPLITS, assign_splits, leaked_participants
from spira_assets.ml.train import (
    EpochLog,
    TrainResult,
    feature_pipeline,
    train,
    validation_threshold,
)
from spira_assets.plots import training_curves
from spira_assets.resources import (
    ComputeResource,
    FeatureSettings,
    MlflowTracking,
    StorageResource,
    TrainingSettings,
)
from spira_assets.storage.tables import (
    AUDIO_16K,
    DATASET_SPLIT,
    HOSPITAL_NOISE,
    MODEL_VERSIONS,
    UNPARTITIONED,
)

LEAK_CHECK = "no_participant_in_two_splits"
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


@dg.asset(
    deps=[audio_16k],
    group_name="training",
    kinds={"python", "parquet"},
    check_specs=[dg.AssetCheckSpec(LEAK_CHECK, asset="dataset_split", blocking=True)],
    metadata={"dagster/column_schema": column_schema(DATASET_SPLIT)},
)
def dataset_split(
    context: dg.AssetExecutionContext, storage: StorageResource, training: TrainingSettings
) -> dg.MaterializeResult:
    """Every participant of every batch assigned to train / validation / test by a salted hash
    of its pseudonym: stable as batches arrive, never one voice in two splits."""
    lake = storage.lake()
    recordings = lake.read_table(AUDIO_16K)
    assignments = assign_splits(recordings, training.split_config()).with_columns(
        pl.lit(UNPARTITIONED).alias("batch_id")
    )
    lake.write_part(DATASET_SPLIT, UNPARTITIONED, assignments)
    storage.warehouse().ensure_views()
    stored = lake.read_part(DATASET_SPLIT, UNPARTITIONED)
    per_recording = recordings.join(stored.select("participant", "split"), on="participant")
    leaks = sorted(set(leaked_participants(stored)) | set(leaked_participants(per_recording)))
    counts = (
        stored.group_by("split", "label").agg(pl.len().alias("participants")).sort("split", "label")
    )
    context.log.info(f"split of {stored.height} participants: {counts.rows()}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored.height,
            "participants_by_split_and_label": markdown_table(counts),
            "recordings_by_split": {
                s: int(per_recording.filter(pl.col("split") == s).height) for s in SPLITS
            },
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=LEAK_CHECK,
                passed=not leaks,
                metadata={"leaked_participants": len(leaks)},
                description="participants found in more than one split" if leaks else "none",
            )
        ],
        data_version=dg.DataVersion(
            fingerprint({"split": stored.select("participant", "split").rows()})
        ),
    )


@dg.asset(
    deps=[dataset_split, audio_16k, hospital_noise],
    group_name="training",
    kinds={"pytorch", "mlflow"},
    op_tags=GPU_TAGS,
    pool="gpu",
    metadata={"dagster/column_schema": column_schema(MODEL_VERSIONS)},
)
def spira_model(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    features: FeatureSettings,
    training: TrainingSettings,
    compute: ComputeResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """SpiraConv trained on the train split of every batch (one model per seed, the best by
    validation loss kept), on the configured device with on-the-fly noise insertion; saved with
    its TorchScript export and lineage, logged and registered in MLflow. An unchanged input set
    reuses the existing version instead of retraining."""
    layout, lake = storage.layout(), storage.lake()
    feature_config, train_config = features.config(), training.train_config()
    device = compute.torch_device()
    recordings = recordings_with_split(lake)
    batch_versions = dict(
        recordings.group_by("batch_id").agg(pl.col("shard").first()).sort("batch_id").rows()
    )
    noise = lake.read_table(HOSPITAL_NOISE)
    inputs = {
        "batches": batch_versions,
        "noise": sorted(set(noise.get_column("shard").to_list())),
        "feature_config_hash": feature_config.config_hash(),
        "train_config": asdict(train_config),
        "split": asdict(training.split_config()),
        "seeds": list(training.seeds),
        "code_version": code_version(),
    }
    version = fingerprint(inputs)
    directory = layout.fetch_if_present(f"models/{version}")
    summary_file = directory / "summary.json"
    previous = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if previous.get("registered_version"):  # complete: saved, logged and registered
        summary = previous
        context.log.info(f"inputs unchanged: reusing model version {version}")
        return dg.MaterializeResult(
            metadata={"model_version": version, "reused": True, **_summary_metadata(summary)},
            data_version=dg.DataVersion(version),
        )

    windows = windows_by_split(
        recordings, local_shards(layout, recordings), train_config.window_s, train_config.step_s
    )
    bank = noise_bank(lake, layout, device)
    context.log.info(
        f"training on {device}: {len(windows['train'])} train / "
        f"{len(windows['validation'])} validation windows, seeds {list(training.seeds)}"
    )
    run_id = mlflow_tracking.start(context.run_id)
    mlflow.log_params(
        {
            "model_version": version,
            "device": str(device),
            "code_version": inputs["code_version"],
            "feature_config_hash": inputs["feature_config_hash"],
            "seeds": list(training.seeds),
            **{f"train.{k}": v for k, v in asdict(train_config).items() if k != "augment"},
            **{f"augment.{k}": v for k, v in asdict(train_config.augment).items()},
            **{f"features.{k}": v for k, v in asdict(feature_config).items()},
        }
    )
    results: list[TrainResult] = []
    started = time.perf_counter()
    for seed in training.seeds:
        with mlflow.start_run(run_name=f"seed-{seed}", nested=True):
            mlflow.log_param("seed", seed)

            def log(entry: EpochLog, seed: int = seed) -> None:
                mlflow.log_metrics(
                    {k: v for k, v in asdict(entry).items() if k != "epoch"}, step=entry.epoch
                )
                context.log.info(
                    f"seed {seed} epoch {entry.epoch}: train {entry.train_loss:.3f} "
                    f"val {entry.val_loss:.3f} AUROC {entry.val_auroc:.3f} "
                    f"({entry.windows_per_s:.0f} windows/s)"
                )

            result = train(
                windows["train"],
                windows["validation"],
                feature_config,
                bank,
                train_config,
                seed,
                device,
                log,
            )
            mlflow.log_metrics(
                {"best_val_loss": result.best_val_loss, "best_val_auroc": result.best.val_auroc}
            )
            results.append(result)
    best = min(results, key=lambda r: r.best_val_loss)
    aurocs = np.array([r.best.val_auroc for r in results])
    frames = round(train_config.window_s * feature_config.sample_rate / feature_config.hop_length)
    config = model_config(feature_config, train_config, frames)
    lineage = {
        **inputs,
        "model_version": version,
        "packages": package_versions(),
        "device": str(device),
        "best_seed": best.seed,
        "mlflow_run_id": run_id,
        "trained_at": datetime.now(UTC).isoformat(),
    }
    summary = {
        "model_version": version,
        "best_seed": best.seed,
        "best_epoch": best.best_epoch,
        "epochs_run": {str(r.seed): len(r.history) for r in results},
        "val_loss": best.best_val_loss,
        "val_auroc": best.best.val_auroc,
        "val_auroc_mean": float(np.nanmean(aurocs)),
        "val_auroc_std": float(np.nanstd(aurocs)),
        "windows_per_s": float(np.mean([e.windows_per_s for r in results for e in r.history])),
        "data_wait_share": float(np.mean([e.data_wait_share for r in results for e in r.history])),
        "device": str(device),
        "training_seconds": time.perf_counter() - started,
        "mlflow_run_id": run_id,
        "histories": {
            str(r.seed): [[e.epoch, e.train_loss, e.val_loss, e.val_auroc] for e in r.history]
            for r in results
        },
    }
    save_model_version(directory, best.state_dict, config, lineage, summary)
    pipeline = feature_pipeline(feature_config, bank, train_config.augment, frames, device)
    threshold = validation_threshold(
        load_model(directory).to(device),
        windows["validation"],
        pipeline,
        device,
        train_config.eval_batch_size,
    )
    (directory / THRESHOLD_FILE).write_text(
        json.dumps({"threshold": threshold, "chosen_on": THRESHOLD_CHOICE})
    )
    summary["threshold"] = threshold
    mlflow.log_param("threshold", threshold)
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
            "val_auroc_mean": summary["val_auroc_mean"],
            "val_auroc_std": summary["val_auroc_std"],
            "best_val_loss": best.best_val_loss,
        }
    )
    summary["registered_version"] = registered
    (directory / "summary.json").write_text(json.dumps(summary, indent=2))
    layout.publish(f"models/{version}")  # to object storage when the root is remote
    lake.write_part(
        MODEL_VERSIONS,
        version,
        pl.DataFrame(
            {
                "batch_id": [version],
                "model_version": [version],
                "trained_at": [datetime.now(UTC)],
                "best_seed": [best.seed],
                "seeds": [json.dumps(list(training.seeds))],
                "val_loss": [best.best_val_loss],
                "val_auroc": [best.best.val_auroc],
                "val_auroc_mean": [summary["val_auroc_mean"]],
                "val_auroc_std": [summary["val_auroc_std"]],
                "best_epoch": [best.best_epoch],
                "device": [str(device)],
                "feature_config_hash": [inputs["feature_config_hash"]],
                "code_version": [inputs["code_version"]],
                "mlflow_run_id": [run_id],
                "registered_version": [registered],
                "directory": [str(layout.root / "models" / version)],
            },
            schema=MODEL_VERSIONS.schema,
        ),
    )
    storage.warehouse().ensure_views()
    uri = mlflow_tracking.resolved_uri()
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    link: dict[str, Any] = (
        {
            "mlflow_run": dg.MetadataValue.url(
                f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
            )
        }
        if uri.startswith(("http://", "https://"))
        else {"mlflow_ui": dg.MetadataValue.text(f"mlflow ui --backend-store-uri {uri}")}
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "reused": False,
            "mlflow_tracking_uri": uri,
            "mlflow_run_id": run_id,
            **link,
            "registered_model": f"{mlflow_tracking.registered_model} v{registered}",
            **_summary_metadata(summary),
        },
        data_version=dg.DataVersion(version),
    )


def _summary_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    histories = {
        int(seed): [tuple(row) for row in rows] for seed, rows in summary["histories"].items()
    }
    return {
        "val_auroc_best_seed": round(summary["val_auroc"], 4),
        "val_auroc_mean": round(summary["val_auroc_mean"], 4),
        "val_auroc_std": round(summary["val_auroc_std"], 4),
        "val_loss": round(summary["val_loss"], 4),
        "best_seed": summary["best_seed"],
        "best_epoch": summary["best_epoch"],
        "epochs_run": summary["epochs_run"],
        "windows_per_s": round(summary["windows_per_s"], 1),
        "data_wait_share": round(summary["data_wait_share"], 4),
        "device": summary["device"],
        "training_seconds": round(summary["training_seconds"], 1),
        "curves": image(training_curves(histories), "training curves"),
    }
