"""The training loop: BCE, Adam, Noam warm-up, early stopping, best checkpoint by validation
loss, abort on NaN or exploding loss; seeded and deterministic on the CPU."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from spira_assets.features.augment import AugmentConfig, AugmentedFeatures, NoiseBank
from spira_assets.features.config import FeatureConfig
from spira_assets.ml.data import WindowSet
from spira_assets.ml.metrics import accuracy, auroc, mean_by_group
from spira_assets.ml.model import Norm, SpiraConv


@dataclass(frozen=True)
class TrainConfig:
    """Published defaults (SPIRA.md): Adam lr 1e-3, weight decay 0.01, Noam warm-up, batch
    5-30, dropout 0.7, GroupNorm (v2), 4 s windows every 1 s, noise insertion."""

    norm: Norm = "group"
    dropout: float = 0.7
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 500
    batch_size: int = 30
    max_epochs: int = 30
    patience: int = 6
    max_loss: float = 100.0
    window_s: float = 4.0
    step_s: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_batch_size: int = 64


def train_config_from(record: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from its recorded ``asdict`` form (model_config.json, lineage.json)."""
    values = dict(record)
    values["augment"] = AugmentConfig(**values["augment"])
    return TrainConfig(**values)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/inf or exploded; training stops instead of saving garbage."""


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    val_auroc: float  # recording level (mean of window scores)
    val_accuracy: float
    seconds: float
    windows_per_s: float
    data_wait_share: float


@dataclass
class TrainResult:
    seed: int
    state_dict: dict[str, torch.Tensor]
    history: list[EpochLog]
    best_epoch: int
    best_val_loss: float
    device: str

    @property
    def best(self) -> EpochLog:
        return self.history[self.best_epoch - 1]


def noam(warmup: int) -> Callable[[int], float]:
    """Noam schedule scaled so the factor peaks at 1.0 at the end of the warm-up."""
    warmup = max(1, warmup)
    return lambda step: warmup**0.5 * min((step + 1) ** -0.5, (step + 1) * warmup**-1.5)


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def feature_pipeline(
    features: FeatureConfig,
    noise: NoiseBank | None,
    augment: AugmentConfig,
    frames: int,
    device: torch.device,
) -> AugmentedFeatures:
    bank = noise or NoiseBank(torch.zeros(1))
    if noise is None:
        augment = AugmentConfig(0, 0, augment.min_peak, augment.max_peak, augment.mixup_alpha)
    return AugmentedFeatures(features.build_transform().to(device), bank, augment, frames)


@torch.no_grad()
def window_scores(
    model: SpiraConv,
    windows: WindowSet,
    pipeline: AugmentedFeatures,
    device: torch.device,
    batch_size: int,
    noisy_seed: int | None = None,
) -> np.ndarray:
    """Probability per window; with ``noisy_seed``, fixed-seed noise per window."""
    model.eval()
    scores = []
    for first in range(0, len(windows), batch_size):
        rows = np.arange(first, min(first + batch_size, len(windows)))
        waves = windows.waves(rows).to(device)
        labels = torch.from_numpy(windows.labels[rows])
        seeds = windows.seeds(rows, noisy_seed) if noisy_seed is not None else None
        if seeds is None:
            feats = pipeline.transform(waves[:, None]).squeeze(1).transpose(1, 2)
            feats = feats[:, : pipeline.frames]
        else:
            feats, _ = pipeline(waves, labels, sample_seeds=seeds)
        scores.append(torch.sigmoid(model(feats)).float().cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def evaluate(
    model: SpiraConv,
    windows: WindowSet,
    pipeline: AugmentedFeatures,
    device: torch.device,
    batch_size: int,
) -> tuple[float, float, float]:
    """(window BCE loss, recording AUROC, recording accuracy) on clean windows."""
    scores = window_scores(model, windows, pipeline, device, batch_size)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    labels = windows.labels
    loss = float(-(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)).mean())
    groups, means = mean_by_group(windows.recording, scores)
    recording_labels = windows.recordings.get_column("label").to_numpy()[groups]
    return loss, auroc(recording_labels, means), accuracy(recording_labels, means)


def train(
    train_set: WindowSet,
    val_set: WindowSet,
    features: FeatureConfig,
    noise: NoiseBank | None,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    log: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(
            f"need training and validation windows (got {len(train_set)} and {len(val_set)})"
        )
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    frames = round(config.window_s * features.sample_rate / features.hop_length)
    pipeline = feature_pipeline(features, noise, config.augment, frames, device)
    model = SpiraConv(frames, features.n_features, config.norm, config.dropout).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, noam(config.warmup_steps))
    loss_fn = nn.BCEWithLogitsLoss()
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    history: list[EpochLog] = []
    best_state: dict[str, torch.Tensor] = {}
    best_loss, best_epoch, step = math.inf, 0, 0
    with deterministic(device):
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            started, waiting, total, batches = time.perf_counter(), 0.0, 0.0, 0
            order = order_rng.permutation(len(train_set))
            for first in range(0, len(order), config.batch_size):
                rows = order[first : first + config.batch_size]
                t0 = time.perf_counter()
                waves = train_set.waves(rows).to(device, non_blocking=True)
                labels = torch.from_numpy(train_set.labels[rows]).to(device)
                waiting += time.perf_counter() - t0
                feats, targets = pipeline(waves, labels, generator=generator)
                with autocast:
                    loss = loss_fn(model(feats).float(), targets)
                value = float(loss.detach())
                step += 1
                if not math.isfinite(value) or value > config.max_loss:
                    raise TrainingDivergedError(
                        f"seed {seed}, epoch {epoch}, step {step}: training loss {value}; "
                        "lower the learning rate or check the input features"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += value
                batches += 1
            elapsed = time.perf_counter() - started
            val_loss, val_auc, val_acc = evaluate(
                model, val_set, pipeline, device, config.eval_batch_size
            )
            entry = EpochLog(
                epoch,
                total / max(batches, 1),
                val_loss,
                val_auc,
                val_acc,
                elapsed,
                len(train_set) / elapsed,
                waiting / elapsed,
            )
            history.append(entry)
            if log:
                log(entry)
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            elif epoch - best_epoch >= config.patience:
                break
    return TrainResult(seed, copy.deepcopy(best_state), history, best_epoch, best_loss, str(device))


def validation_threshold(
    model: SpiraConv,
    val_set: WindowSet,
    pipeline: AugmentedFeatures,
    device: torch.device,
    batch_size: int,
) -> float:
    """The decision threshold recorded with a model: Youden's J over validation recordings
    (mean of clean window probabilities), so the test set never influences it."""
    from spira_assets.ml.evaluation import youden_threshold

    scores = window_scores(model, val_set, pipeline, device, batch_size)
    groups, means = mean_by_group(val_set.recording, scores)
    return youden_threshold(val_set.recordings.get_column("label").to_numpy()[groups], means)
