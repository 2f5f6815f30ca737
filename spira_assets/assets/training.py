"""Asset ``spira_model``: SpiraConv trained on the verified split (one model per seed, best
kept), saved with the split it was trained on, tracked and registered in MLflow."""

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

import spira_assets
from spira_assets.assets import versions
from spira_assets.assets.links import mlflow_links
from spira_assets.assets.presentation import PLOT_TRAINING, image
from spira_assets.assets.tables import metadata_text, table_out, with_tables
from spira_assets.ingest.gates import blocked_batches, describe_blocked
from spira_assets.ingest.provenance import NOT_SPEAKER_SAFE, SPEAKER_WARNING
from spira_assets.ml.lineage import code_version, fingerprint, package_versions, pinned_requirements
from spira_assets.ml.split import SplitConfig, key_ids_by_batch, split_problems
from spira_assets.ml.tracking import has_registered_version
from spira_assets.resources import (
    ComputeResource,
    FeatureSettings,
    MlflowTracking,
    StorageResource,
    TrainingSettings,
)
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import (
    AUDIO_16K,
    DATASET_SPLIT,
    HOSPITAL_NOISE,
    MODEL_VERSIONS,
    UNPARTITIONED,
)

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
SPLIT_ROW_COLUMNS = ("source_batch", "audio_sha256", "participant", "split")


def verified_split(lake: Lake, config: SplitConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The stored split and its 16 kHz recordings, re-checked before anything trains on them:
    ``dataset_split``'s blocking checks stop only their own run, and the table may have been
    edited or a batch blocked since. Raises a Failure naming every problem."""
    from spira_assets.ml.inputs import with_split

    if not lake.has_part(DATASET_SPLIT, UNPARTITIONED):
        raise dg.Failure("dataset_split has not been materialized yet")
    split = lake.read_part(DATASET_SPLIT, UNPARTITIONED)
    recordings = with_split(lake.read_table(AUDIO_16K), split)
    problems = split_problems(split, config)
    keys = key_ids_by_batch(recordings)
    if len(keys) > 1:
        problems.append(f"batches pseudonymized under different keys: {keys}")
    blocked = blocked_batches(lake, split.get_column("source_batch").unique().to_list())
    if blocked:
        problems.append(describe_blocked(blocked))
    if recordings.height != split.height:
        problems.append(
            f"{split.height - recordings.height} recordings of the split are no longer in audio_16k"
        )
    if problems:
        raise dg.Failure(
            description="refusing to train on dataset_split: "
            + "; ".join(problems[:20])
            + ". Re-materialize dataset_split (and the named batches).",
            metadata={"problems": dg.MetadataValue.json(problems)},
        )
    return split, recordings


def speaker_independence(split: pl.DataFrame) -> str:
    not_safe = split.filter(pl.col("speaker_grouping").is_in(sorted(NOT_SPEAKER_SAFE))).height
    return SPEAKER_WARNING.format(n=not_safe) if not_safe else "guaranteed"


def _version_row(
    layout_root: str, summary: dict[str, Any], lineage: dict[str, Any]
) -> pl.DataFrame:
    """The ``model_versions`` row of a saved version, from its own files (so a reused version
    restores it when the lake was cleared)."""
    version = summary["model_version"]
    return pl.DataFrame(
        {
            "batch_id": [version],
            "model_version": [version],
            "trained_at": [datetime.fromisoformat(lineage["trained_at"])],
            "best_seed": [summary["best_seed"]],
            "seeds": [json.dumps(lineage["seeds"])],
            "val_loss": [summary["val_loss"]],
            "val_auroc": [summary["val_auroc"]],
            "val_auroc_mean": [summary["val_auroc_mean"]],
            "val_auroc_std": [summary["val_auroc_std"]],
            "best_epoch": [summary["best_epoch"]],
            "device": [summary["device"]],
            "feature_config_hash": [lineage["feature_config_hash"]],
            "code_version": [lineage["code_version"]],
            "mlflow_run_id": [summary["mlflow_run_id"]],
            "registered_version": [summary["registered_version"]],
            "directory": [f"{layout_root}/models/{version}"],
        },
        schema=MODEL_VERSIONS.schema,
    )


def _mlflow_link(uri: str, run_id: str, registered_model: str, registered: str) -> dict[str, Any]:
    import mlflow

    experiment_id = str(mlflow.get_run(run_id).info.experiment_id)
    return mlflow_links(uri, experiment_id, run_id, registered_model, registered)


def _spira_model(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    features: FeatureSettings,
    training: TrainingSettings,
    compute: ComputeResource,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """SpiraConv trained on the train split of every open batch (one model per seed, the best
    by validation loss kept), on the configured device with on-the-fly noise insertion; saved
    with its exported program, lineage and the split it was trained on, logged and
    registered in MLflow. The split is verified first (no leak, one pseudonym key, no blocked
    batch). An unchanged input set reuses the existing version instead of retraining, and
    restores its rows and registration if they are gone."""
    import mlflow

    from spira_assets.ml.artifacts import LINEAGE, SUMMARY, WEIGHTS
    from spira_assets.ml.inference import THRESHOLD_FILE
    from spira_assets.ml.serving import PIP_PACKAGES, log_pyfunc

    layout, lake = storage.layout(), storage.lake()
    feature_config, train_config = features.config(), training.train_config()
    device = compute.torch_device()
    split, recordings = verified_split(lake, training.split_config())
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
        "split_rows": fingerprint(
            {"rows": split.select(SPLIT_ROW_COLUMNS).sort(SPLIT_ROW_COLUMNS).rows()}
        ),
        "seeds": training.seed_list(),
        "code_version": code_version(),
    }
    version = fingerprint(inputs)
    directory = layout.fetch_if_present(f"models/{version}")
    uri = mlflow_tracking.resolved_uri()
    saved = all((directory / f).exists() for f in (WEIGHTS, SUMMARY, LINEAGE, THRESHOLD_FILE))
    summary: dict[str, Any] = json.loads((directory / SUMMARY).read_text()) if saved else {}
    params = {
        "model_version": version,
        "device": str(device),
        "code_version": inputs["code_version"],
        "feature_config_hash": inputs["feature_config_hash"],
        "seeds": training.seed_list(),
        **{f"train.{k}": v for k, v in asdict(train_config).items() if k != "augment"},
        **{f"augment.{k}": v for k, v in asdict(train_config.augment).items()},
        **{f"features.{k}": v for k, v in asdict(feature_config).items()},
    }
    if (
        saved
        and summary.get("registered_version")
        and has_registered_version(
            uri, summary["registered_version"], version, mlflow_tracking.registered_model
        )
    ):
        context.log.info(f"inputs unchanged: reusing model version {version}")
        lineage = json.loads((directory / LINEAGE).read_text())
        lake.write_part(MODEL_VERSIONS, version, _version_row(str(layout.root), summary, lineage))
        storage.warehouse().ensure_views()
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                "reused": True,
                "speaker_independence": speaker_independence(split),
                **_summary_metadata(summary),
            },
            data_version=dg.DataVersion(version),
        )
    with mlflow_tracking.run(context.run.run_id) as run_id:
        mlflow.log_params(params)
        if saved:
            context.log.warning(
                f"model version {version} is saved but not registered in {uri}: registering it"
            )
            lineage = json.loads((directory / LINEAGE).read_text())
            mlflow.log_param(
                "threshold", json.loads((directory / THRESHOLD_FILE).read_text())["threshold"]
            )
        else:
            summary, lineage = _train(
                context,
                directory,
                version,
                inputs,
                split,
                recordings,
                layout,
                lake,
                features,
                training,
                device,
                run_id,
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
    layout.publish(f"models/{version}")  # to object storage when the root is remote
    lake.write_part(MODEL_VERSIONS, version, _version_row(str(layout.root), summary, lineage))
    storage.warehouse().ensure_views()
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "reused": False,
            "mlflow_tracking_uri": uri,
            "mlflow_run_id": run_id,
            **_mlflow_link(uri, run_id, mlflow_tracking.registered_model, registered),
            "registered_model": f"{mlflow_tracking.registered_model} v{registered}",
            "speaker_independence": speaker_independence(split),
            **_summary_metadata(summary),
        },
        data_version=dg.DataVersion(version),
    )


def _train(
    context: dg.AssetExecutionContext,
    directory: Path,
    version: str,
    inputs: dict[str, Any],
    split: pl.DataFrame,
    recordings: pl.DataFrame,
    layout: Any,
    lake: Lake,
    features: FeatureSettings,
    training: TrainingSettings,
    device: Any,
    run_id: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train every seed (a nested MLflow run each), keep the best, save the version with its
    split and threshold; returns (summary, lineage)."""
    import mlflow
    import torch

    from spira_assets.ml.artifacts import build_model, model_config, save_model_version
    from spira_assets.ml.inference import THRESHOLD_CHOICE
    from spira_assets.ml.inputs import (
        local_shards,
        noise_bank,
        recordings_by_split,
        stored_features,
        training_resampler,
    )
    from spira_assets.ml.metrics import defined_or_none, spread_of_defined
    from spira_assets.ml.train import EpochLog, TrainResult, train, validation_threshold

    feature_config, train_config = features.config(), training.train_config()
    root = local_shards(layout, recordings)
    index = (
        stored_features(lake, layout, feature_config.config_hash())
        if train_config.transform_unit == "recording"
        else None
    )
    sets = recordings_by_split(
        recordings, root, ("train", "validation"), index, feature_config.n_features
    )
    clean_source = (
        "feature store (spectrogram_features)"
        if sets["validation"].stored is not None
        else "computed from audio_16k (no stored features of this configuration"
        + (")" if train_config.transform_unit == "recording" else "; windows transformed alone)")
    )
    bank = noise_bank(lake, layout, device)
    seeds = training.seed_list()
    context.log.info(
        f"training ({train_config.profile} profile) on {device}: {len(sets['train'])} train / "
        f"{len(sets['validation'])} validation recordings, seeds {seeds}; clean validation "
        f"input: {clean_source}"
    )
    results: list[TrainResult] = []
    started = time.perf_counter()
    threads = torch.get_num_threads()
    mlflow.log_param("cpu_threads", threads)
    for seed in seeds:
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
                sets["train"],
                sets["validation"],
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
    auroc_mean, auroc_std, undefined = spread_of_defined(
        np.array([r.best.val_auroc for r in results])
    )
    featurizer = train_config.featurizer(feature_config, device)
    config = model_config(
        feature_config, train_config, featurizer.frames, training_resampler(recordings)
    )
    lineage = {
        **inputs,
        "model_version": version,
        "split_file": "split.parquet",
        "speaker_independence": speaker_independence(split),
        "noise_files": bank.spans if bank is not None else [],
        "clean_validation_input": clean_source,
        "packages": package_versions(),
        "device": str(device),
        # torch's CPU threads: part of what makes the weights (ml/train.py cpu_threads)
        "cpu_threads": threads,
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
        # None (JSON null, a null in model_versions) where validation holds one class
        "val_auroc": defined_or_none(best.best.val_auroc),
        "val_auroc_mean": auroc_mean,
        "val_auroc_std": auroc_std,
        "val_auroc_undefined_seeds": undefined,
        "windows_per_s": float(np.mean([e.windows_per_s for r in results for e in r.history])),
        "data_wait_share": float(np.mean([e.data_wait_share for r in results for e in r.history])),
        "device": str(device),
        "profile": train_config.profile,
        "excluded_recordings": results[0].excluded,
        "clean_validation_input": clean_source,
        "training_seconds": time.perf_counter() - started,
        "mlflow_run_id": run_id,
        "histories": {
            str(r.seed): [[e.epoch, e.train_loss, e.val_loss, e.val_auroc] for e in r.history]
            for r in results
        },
    }
    network = build_model(config)
    network.load_state_dict(best.state_dict)
    threshold = validation_threshold(
        network.to(device).eval(), sets["validation"], featurizer, device, train_config
    )
    summary["threshold"] = threshold
    chosen = {"threshold": threshold, "chosen_on": THRESHOLD_CHOICE[train_config.threshold_rule]}
    per_seed = {r.seed: r.state_dict for r in results} if train_config.keep_all_seeds else None
    save_model_version(
        directory, best.state_dict, config, lineage, summary, split, chosen, per_seed
    )
    mlflow.log_param("threshold", threshold)
    return summary, lineage


def _summary_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    from spira_assets.plots import training_curves

    histories = {
        int(seed): [tuple(row) for row in rows] for seed, rows in summary["histories"].items()
    }
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
        PLOT_TRAINING: image(
            training_curves(histories, (summary["best_seed"], summary["best_epoch"])),
            "training curves",
        ),
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
            "One row per trained model version: seeds, validation scores, device, feature "
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
    result = _spira_model(context, storage, features, training, compute, mlflow_tracking)
    version = metadata_text(result, "model_version")
    row = storage.lake().read_part(MODEL_VERSIONS, version)
    yield from with_tables(result, "spira_model", [(MODEL_VERSIONS, row)])
