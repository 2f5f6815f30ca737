"""Hyperparameter sweeps: a grid over training parameters, each combination trained per seed,
scored on the validation split and ranked (no Dagster).

Parameters are TrainConfig fields; short aliases (``lr``, ``window``...) are accepted. A sweep
is a ``SweepPlan`` written under the data root; each trial has a stable key (its Dagster
partition), trains with ``run_trial`` and leaves a ``TrialResult`` file, which is what resuming
and ranking read. Which process runs a trial (a Dagster run, on a pod or not) is the caller's
business.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import polars as pl
import torch
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from upath import UPath

from spira_assets.features.config import FeatureConfig
from spira_assets.ml.lineage import fingerprint
from spira_assets.ml.split import SplitConfig
from spira_assets.ml.train import EpochLog, train
from spira_assets.ml.train_config import TrainConfig, train_config_from
from spira_assets.ml.training_inputs import load_training_data, plan_training
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout

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


SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Trial:
    combination: dict[str, Any]
    seed: int
    config: TrainConfig

    @property
    def trial_id(self) -> str:
        """``<combination hash>-s<seed>``: the same combination and seed, the same id."""
        digest = hashlib.sha256(json.dumps(self.combination, sort_keys=True).encode())
        return f"{digest.hexdigest()[:8]}-s{self.seed}"


def trial_key(sweep: str, trial: Trial) -> str:
    """The trial's partition key, ``<sweep>/<combination hash>-s<seed>``."""
    return f"{sweep}/{trial.trial_id}"


def sweep_of(key: str) -> str:
    return key.partition("/")[0]


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
    device: str = "cpu"
    mlflow_run_id: str = ""
    dagster_run_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrialResult:
        values = json.loads(text)
        values["history"] = [EpochLog(**entry) for entry in values["history"]]
        return cls(**values)


def plan(base: TrainConfig, params: dict[str, list[Any]], seeds: list[int]) -> list[Trial]:
    return [Trial(combo, seed, replace(base, **combo)) for combo in grid(params) for seed in seeds]


def sweep_name(
    base: TrainConfig, params: dict[str, list[Any]], seeds: list[int], split_rows: str
) -> str:
    """A name that is the same for the same grid, seeds, base settings and split (so running a
    command again resumes it) and differs when any of them changes (new data: a new sweep)."""
    payload = {"base": asdict(base), "params": params, "seeds": seeds, "split": split_rows}
    return "sweep-" + fingerprint(payload)[:10]


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep trains, written once under the data root before any trial runs: each trial
    run reads its combination from here by its partition key, so a trial can be re-run from the
    UI with nothing but its key."""

    name: str
    base: TrainConfig
    params: dict[str, list[Any]]
    seeds: list[int]
    mlflow_experiment_id: str
    mlflow_parent_run_id: str
    # the split settings its trials verify the split with
    split: SplitConfig = field(default_factory=SplitConfig)

    def trials(self) -> list[Trial]:
        return plan(self.base, self.params, self.seeds)

    def trial_keys(self) -> list[str]:
        return [trial_key(self.name, t) for t in self.trials()]

    def trial(self, key: str) -> Trial:
        for candidate in self.trials():
            if trial_key(self.name, candidate) == key:
                return candidate
        raise KeyError(f"sweep {self.name} plans no trial {key!r} (trials: {self.trial_keys()})")

    def same_grid(self, other: SweepPlan) -> bool:
        mine = (self.base, self.params, self.seeds, self.split)
        return mine == (other.base, other.params, other.seeds, other.split)

    def to_json(self) -> str:
        values = asdict(self)
        return json.dumps(values, indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> SweepPlan:
        values = json.loads(text)
        values["base"] = train_config_from(values["base"])
        values["split"] = SplitConfig(**values.get("split", {}))
        return cls(**values)


class SweepStore:
    """Plans and trial results under ``<data root>/sweeps/<sweep>/`` (local or object store):
    ``plan.json`` and ``results/<trial id>.json``. A result is written only when its trial
    finished, whole (write then rename), so "has a result" means "trained"."""

    def __init__(self, root: UPath) -> None:
        self.root = root / "sweeps"

    def _plan_path(self, name: str) -> UPath:
        return self.root / name / "plan.json"

    def _result_path(self, key: str) -> UPath:
        name, _, trial = key.partition("/")
        return self.root / name / "results" / f"{trial}.json"

    @staticmethod
    def _write(path: UPath, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.rename(path)

    def save_plan(self, sweep: SweepPlan) -> None:
        self._write(self._plan_path(sweep.name), sweep.to_json())

    def load_plan(self, name: str) -> SweepPlan | None:
        path = self._plan_path(name)
        return SweepPlan.from_json(path.read_text(encoding="utf-8")) if path.exists() else None

    def save_result(self, key: str, result: TrialResult) -> None:
        self._write(self._result_path(key), result.to_json())

    def load_result(self, key: str) -> TrialResult | None:
        path = self._result_path(key)
        return TrialResult.from_json(path.read_text(encoding="utf-8")) if path.exists() else None

    def results(self, sweep: SweepPlan) -> dict[str, TrialResult]:
        """The finished trials of a sweep, by partition key, in plan order."""
        found = {key: self.load_result(key) for key in sweep.trial_keys()}
        return {key: result for key, result in found.items() if result is not None}


def run_trial(
    layout: DataLayout,
    features: FeatureConfig,
    trial: Trial,
    split: SplitConfig,
    device: torch.device,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrialResult:
    """Train one combination with one seed on the train split; best epoch by validation loss.
    Its inputs come from the training core, with the guards ``spira_model`` applies: a split
    that may not be trained on raises ``TrainingInputsRefused`` (the trial refuses; it is not
    a result); a run that diverges or has no data is a result with its error."""
    started = time.perf_counter()
    cfg = trial.config
    plan = plan_training(Lake(layout.lake), features, cfg, split, [trial.seed])
    data = load_training_data(plan, layout, features, cfg, device)
    try:
        result = train(
            data.sets["train"],
            data.sets["validation"],
            features,
            data.bank,
            cfg,
            trial.seed,
            device,
            on_epoch,
        )
    except (ValueError, RuntimeError) as error:  # diverged or no data: a result, not a crash
        return TrialResult(
            trial.combination,
            trial.seed,
            [],
            0,
            float("nan"),
            float("nan"),
            time.perf_counter() - started,
            str(error),
            str(device),
        )
    return TrialResult(
        trial.combination,
        trial.seed,
        result.history,
        result.best_epoch,
        result.best_val_loss,
        result.best.val_auroc,
        time.perf_counter() - started,
        device=str(device),
    )


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


def start_trial_run(
    client: MlflowClient, sweep: SweepPlan, key: str, trial: Trial, dagster_run_id: str
) -> str:
    """A child run of the sweep's parent run with the trial's parameters; epochs are logged
    to it as they finish (``log_epoch``), so the curves grow live in the MLflow UI."""
    run = client.create_run(
        sweep.mlflow_experiment_id,
        run_name=f"{label(trial.combination)} seed={trial.seed}",
        tags={
            "mlflow.parentRunId": sweep.mlflow_parent_run_id,
            "spira.sweep_trial": "true",
            "spira.sweep": sweep.name,
            "spira.trial_key": key,
            "dagster.run_id": dagster_run_id,
        },
    )
    run_id = str(run.info.run_id)
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in {**trial.combination, "seed": trial.seed}.items()],
    )
    return run_id


def log_epoch(client: MlflowClient, run_id: str, entry: EpochLog) -> None:
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(name, float(getattr(entry, name)), now, entry.epoch)
            for name in ("train_loss", "val_loss", "val_auroc", "val_accuracy")
            if np.isfinite(float(getattr(entry, name)))
        ],
    )


def finish_trial_run(client: MlflowClient, run_id: str, r: TrialResult) -> None:
    if r.error is None:
        client.log_metric(run_id, "best_val_auroc", r.best_val_auroc)
        client.log_metric(run_id, "best_val_loss", r.best_val_loss)
        client.log_metric(run_id, "best_epoch", r.best_epoch)
    else:
        client.set_tag(run_id, "spira.error", r.error[:5000])
    client.set_terminated(run_id, "FINISHED" if r.error is None else "FAILED")
