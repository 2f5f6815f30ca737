"""One model version trained from a verified plan: every seed, the best by validation loss
kept, its threshold chosen on validation, saved with its lineage, summary and split (no
Dagster; the asset wraps the seeds in MLflow runs through the callbacks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spira_assets.features.config import FeatureConfig
from spira_assets.ml.artifacts import build_model, model_config, save_model_version
from spira_assets.ml.inputs import training_resampler
from spira_assets.ml.lineage import package_versions
from spira_assets.ml.metrics import defined_or_none, spread_of_defined
from spira_assets.ml.train import EpochLog, TrainResult, train
from spira_assets.ml.train_config import TrainConfig
from spira_assets.ml.training_inputs import TrainingData, TrainingPlan
from spira_assets.ml.validation_fit import fit_scoring

SeedScope = Callable[[int], AbstractContextManager[Any]]
EpochCallback = Callable[[int, EpochLog], None]
ResultCallback = Callable[[TrainResult], None]


@dataclass(frozen=True)
class TrainedVersion:
    summary: dict[str, Any]
    lineage: dict[str, Any]
    results: list[TrainResult]


def train_seeds(
    plan: TrainingPlan,
    data: TrainingData,
    features: FeatureConfig,
    config: TrainConfig,
    device: torch.device,
    seed_scope: SeedScope | None = None,
    on_epoch: EpochCallback | None = None,
    on_result: ResultCallback | None = None,
) -> list[TrainResult]:
    """One model per seed of the plan, each inside ``seed_scope(seed)`` (an MLflow run), where
    ``on_result`` sees the seed's result."""
    results = []
    for seed in plan.seeds:
        with seed_scope(seed) if seed_scope else nullcontext():

            def log(entry: EpochLog, seed: int = seed) -> None:
                if on_epoch:
                    on_epoch(seed, entry)

            result = train(
                data.sets["train"],
                data.sets["validation"],
                features,
                data.bank,
                config,
                seed,
                device,
                log,
            )
            if on_result:
                on_result(result)
            results.append(result)
    return results


def save_version(
    directory: Path,
    plan: TrainingPlan,
    data: TrainingData,
    features: FeatureConfig,
    config: TrainConfig,
    device: torch.device,
    results: list[TrainResult],
    seconds: float,
    run_id: str,
) -> TrainedVersion:
    """Keep the seed with the lowest validation loss, fit its calibration map and operating
    point on validation, and write the version (weights with the input statistics, exported
    program, lineage, summary, split, threshold, calibration)."""
    best = min(results, key=lambda r: r.best_val_loss)
    auroc_mean, auroc_std, undefined = spread_of_defined(
        np.array([r.best.val_auroc for r in results])
    )
    featurizer = config.featurizer(features, device)
    saved_config = model_config(
        features, config, featurizer.frames, training_resampler(plan.recordings)
    )
    lineage = {
        **plan.inputs,
        "model_version": plan.version,
        "split_file": "split.parquet",
        "speaker_independence": plan.speaker_independence,
        "noise_files": list(plan.noise.spans),
        "noise_files_left_out": list(plan.noise.left_out),
        "clean_from_store": data.clean_from_store,
        "clean_validation_input": data.clean_source,
        "packages": package_versions(),
        "device": str(device),
        # torch's CPU threads: part of what makes the weights (ml/train.py cpu_threads)
        "cpu_threads": torch.get_num_threads(),
        # precision and dropout masks of the step (ml/speed.py): reproduction uses them again
        "training_speed": best.speed,
        "best_seed": best.seed,
        "mlflow_run_id": run_id,
        "trained_at": datetime.now(UTC).isoformat(),
    }
    summary = {
        "model_version": plan.version,
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
        "precision": best.speed.get("precision", "fp32"),
        "profile": config.profile,
        "excluded_recordings": results[0].excluded,
        "clean_validation_input": data.clean_source,
        "training_seconds": seconds,
        "mlflow_run_id": run_id,
        "histories": {
            str(r.seed): [[e.epoch, e.train_loss, e.val_loss, e.val_auroc] for e in r.history]
            for r in results
        },
    }
    network = build_model(saved_config)
    network.load_state_dict(best.state_dict)
    calibration, point = fit_scoring(
        network, data.sets["validation"], data.bank, features, config, device
    )
    summary |= {
        "threshold": point.threshold,
        "operating_point": point.statement(),
        "validation_sensitivity": point.sensitivity,
        "validation_specificity": point.specificity,
        "calibration": calibration.method,
    }
    per_seed = {r.seed: r.state_dict for r in results} if config.keep_all_seeds else None
    save_model_version(
        directory,
        best.state_dict,
        saved_config,
        lineage,
        summary,
        plan.split,
        point.to_json(),
        per_seed,
        calibration.to_json(),
    )
    return TrainedVersion(summary, lineage, results)


def train_version(
    directory: Path,
    plan: TrainingPlan,
    data: TrainingData,
    features: FeatureConfig,
    config: TrainConfig,
    device: torch.device,
    run_id: str,
    seed_scope: SeedScope | None = None,
    on_epoch: EpochCallback | None = None,
    on_result: ResultCallback | None = None,
) -> TrainedVersion:
    """Train every seed and save the version of the best."""
    started = time.perf_counter()
    results = train_seeds(plan, data, features, config, device, seed_scope, on_epoch, on_result)
    return save_version(
        directory,
        plan,
        data,
        features,
        config,
        device,
        results,
        time.perf_counter() - started,
        run_id,
    )


def train_config_params(features: FeatureConfig, config: TrainConfig) -> dict[str, Any]:
    """The flat parameters a tracking run records for a training configuration."""
    return {
        **{f"train.{k}": v for k, v in asdict(config).items() if k != "augment"},
        **{f"augment.{k}": v for k, v in asdict(config.augment).items()},
        **{f"features.{k}": v for k, v in asdict(features).items()},
    }
