"""Hyperparameter sweeps: a grid over training parameters, each combination trained per seed
(in parallel processes when asked), scored on the validation split and ranked (no Dagster).

Parameters are TrainConfig fields; short aliases (``lr``, ``window``...) are accepted. Every
trial returns its per-epoch history, so the caller can log it (MLflow) and rank the trials.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from spira_assets.features.config import FeatureConfig
from spira_assets.layout import DataLayout
from spira_assets.ml.inputs import (
    noise_bank,
    recordings_by_split,
    recordings_with_split,
    stored_features,
)
from spira_assets.ml.train import EpochLog, TrainConfig, train
from spira_assets.storage.lake import Lake

ALIASES = {
    "lr": "learning_rate",
    "window": "window_s",
    "step": "step_s",
    "batch": "batch_size",
    "epochs": "max_epochs",
    "warmup": "warmup_steps",
    "wd": "weight_decay",
}
TUNABLE = {
    f.name: f.type
    for f in fields(TrainConfig)
    if f.name not in ("augment", "eval_batch_size", "max_loss", "profile")
}


class SweepSpecError(ValueError):
    """A --param that names no training parameter or has a value of the wrong type."""


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(text)


def parse_param(text: str) -> tuple[str, list[Any]]:
    """``lr=1e-3,3e-4`` -> ("learning_rate", [0.001, 0.0003])."""
    name, sep, values = text.partition("=")
    name = ALIASES.get(name.strip(), name.strip())
    if not sep or not values.strip():
        raise SweepSpecError(f"--param {text!r}: expected name=value[,value...]")
    if name not in TUNABLE:
        known = ", ".join(sorted({*TUNABLE, *ALIASES}))
        raise SweepSpecError(f"--param {text!r}: unknown parameter {name!r} (known: {known})")
    declared = TUNABLE[name]
    type_name = declared if isinstance(declared, str) else getattr(declared, "__name__", "str")
    kinds: dict[str, Callable[[str], Any]] = {"float": float, "int": int, "bool": _boolean}
    kind = kinds.get(type_name, str)
    parsed = []
    for raw in values.split(","):
        try:
            parsed.append(kind(raw.strip()))
        except ValueError:
            raise SweepSpecError(
                f"--param {text!r}: {raw.strip()!r} is not a valid {type_name}"
            ) from None
    return name, parsed


def grid(params: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, in a stable order."""
    names = list(params)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*params.values())]


@dataclass(frozen=True)
class Trial:
    combination: dict[str, Any]
    seed: int
    config: TrainConfig


@dataclass
class TrialResult:
    combination: dict[str, Any]
    seed: int
    history: list[EpochLog]
    best_epoch: int
    best_val_loss: float
    best_val_auroc: float
    seconds: float
    error: str | None = None


def plan(base: TrainConfig, params: dict[str, list[Any]], seeds: list[int]) -> list[Trial]:
    return [Trial(combo, seed, replace(base, **combo)) for combo in grid(params) for seed in seeds]


def run_trial(root: Path, features: FeatureConfig, trial: Trial, threads: int) -> TrialResult:
    """Train one combination with one seed on the train split; best epoch by validation loss.
    Runs in a worker process, so it reads its inputs from the lake itself."""
    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    layout = DataLayout.from_location(str(root))
    lake = Lake(layout.lake)
    recordings = recordings_with_split(lake)
    cfg = trial.config
    index = (
        stored_features(lake, layout, features.config_hash())
        if cfg.transform_unit == "recording"
        else None
    )
    sets = recordings_by_split(
        recordings, root, ("train", "validation"), index, features.n_features
    )
    device = torch.device("cpu")
    try:
        result = train(
            sets["train"],
            sets["validation"],
            features,
            noise_bank(lake, layout, device),
            cfg,
            trial.seed,
            device,
        )
    except (ValueError, RuntimeError) as error:  # diverged or no data: a result, not a crash
        return TrialResult(
            trial.combination, trial.seed, [], 0, float("nan"), float("nan"), 0.0, str(error)
        )
    return TrialResult(
        trial.combination,
        trial.seed,
        result.history,
        result.best_epoch,
        result.best_val_loss,
        result.best.val_auroc,
        time.perf_counter() - started,
    )


def run_trials(
    root: Path,
    features: FeatureConfig,
    trials: list[Trial],
    workers: int = 1,
    on_result: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """All trials, ``workers`` at a time in separate processes (torch threads split evenly)."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, workers))
    results: list[TrialResult] = []

    def finished(result: TrialResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    if workers <= 1:
        for trial in trials:
            finished(run_trial(root, features, trial, torch.get_num_threads()))
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_trial, root, features, t, threads) for t in trials]
        for future in as_completed(futures):
            finished(future.result())
    return results


def ranking(results: list[TrialResult]) -> pl.DataFrame:
    """One row per combination: validation AUROC mean/std over seeds (higher first), then the
    mean best validation loss (lower first)."""
    rows = [
        {
            "combination": label(r.combination),
            "seed": r.seed,
            "val_auroc": r.best_val_auroc,
            "val_loss": r.best_val_loss,
            "best_epoch": r.best_epoch,
            "seconds": r.seconds,
            "failed": r.error is not None,
        }
        for r in results
    ]
    frame = pl.DataFrame(rows)
    table = (
        frame.group_by("combination", maintain_order=True)
        .agg(
            pl.col("val_auroc").mean().alias("val_auroc_mean"),
            pl.col("val_auroc").std(ddof=0).alias("val_auroc_std"),
            pl.col("val_loss").mean().alias("val_loss_mean"),
            pl.col("seed").n_unique().alias("seeds"),
            pl.col("failed").sum().alias("failed"),
            pl.col("seconds").sum().alias("seconds"),
        )
        .with_columns(pl.col("val_auroc_mean").fill_nan(None))
        .sort(
            ["val_auroc_mean", "val_loss_mean"],
            descending=[True, False],
            nulls_last=True,
        )
    )
    return table.with_row_index("rank", offset=1)


def label(combination: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in combination.items())


def history_metrics(result: TrialResult) -> Iterator[tuple[str, float, int]]:
    """(metric, value, epoch) for every epoch of a trial, for the tracking store."""
    for entry in result.history:
        for name in ("train_loss", "val_loss", "val_auroc", "val_accuracy"):
            value = float(getattr(entry, name))
            if np.isfinite(value):
                yield name, value, entry.epoch


def log_trial(client: MlflowClient, experiment_id: str, parent_run_id: str, r: TrialResult) -> str:
    """A child run of the sweep's parent run with the trial's parameters and curves."""
    run = client.create_run(
        experiment_id,
        run_name=f"{label(r.combination)} seed={r.seed}",
        tags={"mlflow.parentRunId": parent_run_id, "spira.sweep_trial": "true"},
    )
    run_id = str(run.info.run_id)
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in {**r.combination, "seed": r.seed}.items()],
        metrics=[
            Metric(name, value, int(time.time() * 1000), step)
            for name, value, step in history_metrics(r)
        ],
    )
    if r.error is None:
        client.log_metric(run_id, "best_val_auroc", r.best_val_auroc)
        client.log_metric(run_id, "best_val_loss", r.best_val_loss)
        client.log_metric(run_id, "best_epoch", r.best_epoch)
    else:
        client.set_tag(run_id, "spira.error", r.error[:5000])
    client.set_terminated(run_id, "FINISHED" if r.error is None else "FAILED")
    return run_id
