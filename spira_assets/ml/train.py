"""The training loop: batches of recordings with all their windows, noise inserted into whole
recordings, BCE, Adam, Noam warm-up, validation every epoch (and every N steps), the checkpoint
with the lowest validation loss kept, optional early stopping, abort on NaN or exploding loss;
seeded and deterministic on the CPU for a given number of torch CPU threads (the number
changes the order of float sums in convolutions and matmuls, hence the weights: it is recorded
in the lineage and reproduction uses it again, see ``cpu_threads``).

Every choice that differs between the platform and SPIRA's published experiment is a field of
``TrainConfig`` (the profiles are in ``protocol.py``).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from spira_assets.features.augment import AugmentConfig, NoiseBank, insert_noise, mixup
from spira_assets.features.config import FeatureConfig
from spira_assets.features.featurizer import Featurizer
from spira_assets.ml.data import RecordingSet
from spira_assets.ml.metrics import accuracy, auroc, mean_by_group
from spira_assets.ml.model import SpiraConv
from spira_assets.ml.speed import TrainingSpeed, training_speed
from spira_assets.ml.train_config import TrainConfig


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
    best_step: int = 0
    excluded: int = 0  # recordings with no window under the window rule
    speed: dict[str, Any] = field(default_factory=dict)  # ml/speed.py TrainingSpeed.record()

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


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[int]:
    """Torch's intra-op CPU threads set to ``threads`` (None: left as they are) for the block,
    restored after; yields the number in force. A model trained with 2 threads is not bit for
    bit the one trained with 1 (measured on the small test champion: weights apart by up to
    1.6e-7 after 3 epochs; scores equal to 4 decimals), so an exact reproduction needs the
    recorded number."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def usable(recordings: RecordingSet, featurizer: Featurizer) -> list[int]:
    """Recordings with at least one window under the window rule."""
    return [i for i in range(len(recordings)) if featurizer.count(int(recordings.samples[i]))]


@dataclass(frozen=True)
class Noise:
    """Noise to insert: the bank, how much per class, and one generator per recording (or one
    shared generator, for sequential training and validation draws)."""

    bank: NoiseBank
    config: AugmentConfig
    rngs: Callable[[list[int]], list[random.Random]]


def recording_windows(
    recordings: RecordingSet,
    rows: list[int],
    featurizer: Featurizer,
    device: torch.device,
    noise: Noise | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Windows of ``rows`` (clean from the feature store when it has them and the transform
    unit allows, else computed) and the position in ``rows`` of each window's recording."""
    if noise is None and recordings.stored is not None and featurizer.unit == "recording":
        frames = recordings.stored.get(rows, device)
        return featurizer.from_frames(frames, [int(recordings.samples[r]) for r in rows])
    waves = [w.to(device) for w in recordings.waves(rows)]
    if noise is not None:
        labels = [int(recordings.labels[r]) for r in rows]
        waves = insert_noise(waves, labels, noise.bank, noise.config, noise.rngs(rows))
    return featurizer.windows(waves)


@torch.no_grad()
def window_scores(
    model: SpiraConv,
    recordings: RecordingSet,
    featurizer: Featurizer,
    device: torch.device,
    batch_size: int,
    noise: Noise | None = None,
    chunk: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """(probability per window, recording row per window) over every recording."""
    model.eval()
    scores, owners = [], []
    for first in range(0, len(recordings), chunk):
        rows = list(range(first, min(first + chunk, len(recordings))))
        windows, owner = recording_windows(recordings, rows, featurizer, device, noise)
        for start in range(0, windows.shape[0], batch_size):
            logits = model(windows[start : start + batch_size])
            scores.append(torch.sigmoid(logits).float().cpu().numpy())
        owners.append(np.asarray(rows, dtype=np.int64)[owner])
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(scores), np.concatenate(owners)


def evaluate(
    model: SpiraConv,
    recordings: RecordingSet,
    featurizer: Featurizer,
    device: torch.device,
    batch_size: int,
    noise: Noise | None = None,
) -> tuple[float, float, float]:
    """(window BCE loss, recording AUROC, recording accuracy at 0.5)."""
    scores, owners = window_scores(model, recordings, featurizer, device, batch_size, noise)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    labels = recordings.labels[owners]
    loss = float(-(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)).mean())
    per_recording, means = by_recording(recordings, owners, scores)
    return loss, auroc(per_recording, means), accuracy(per_recording, means)


def by_recording(
    recordings: RecordingSet, owners: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(label, raw score) per recording with a window: the mean of its window probabilities."""
    groups, means = mean_by_group(owners, scores)
    return recordings.labels[groups], means


def input_statistics(
    recordings: RecordingSet, featurizer: Featurizer, device: torch.device, chunk: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coefficient mean and standard deviation of the clean windows of ``recordings``
    (the training split), accumulated in float64 over every frame of every window."""
    rows = usable(recordings, featurizer)
    total = squares = None
    count = 0
    for first in range(0, len(rows), chunk):
        windows, _ = recording_windows(recordings, rows[first : first + chunk], featurizer, device)
        frames = windows.reshape(-1, windows.shape[-1]).double().cpu()
        total = frames.sum(0) if total is None else total + frames.sum(0)
        squares = (frames**2).sum(0) if squares is None else squares + (frames**2).sum(0)
        count += frames.shape[0]
    if total is None or squares is None or count == 0:
        raise ValueError("no training window to compute the input statistics from")
    mean = total / count
    std = (squares / count - mean**2).clamp(min=0).sqrt()
    return mean.float(), std.float()


def precision(config: TrainConfig, device: torch.device) -> AbstractContextManager[object]:
    """The forward pass's precision: bf16 autocast where the profile allows mixed precision and
    the device runs bf16 natively (CUDA; a CPU with AVX-512 BF16 or AMX, detected at run time),
    else fp32 (the published profile). ``ml/speed.py`` holds the rest of the step's settings."""
    return training_speed(config, device).autocast()


def train(
    train_set: RecordingSet,
    val_set: RecordingSet,
    features: FeatureConfig,
    noise: NoiseBank | None,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    log: Callable[[EpochLog], None] | None = None,
    speed: TrainingSpeed | None = None,
) -> TrainResult:
    """One seed's training; ``speed``: the step's settings (default: the fast ones the profile
    and device allow, ``ml/speed.py``; a reproduction passes the recorded ones)."""
    speed = speed or training_speed(config, device)
    featurizer = config.featurizer(features, device)
    train_rows, val_rows = usable(train_set, featurizer), usable(val_set, featurizer)
    if not train_rows or not val_rows:
        raise ValueError(
            f"need training and validation recordings with at least one window (got "
            f"{len(train_rows)} and {len(val_rows)} under the {config.window_rule} window rule)"
        )
    excluded = len(train_set) - len(train_rows) + len(val_set) - len(val_rows)
    train_set, val_set = train_set.subset(train_rows), val_set.subset(val_rows)
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    noise_rng, val_rng = random.Random(seed), random.Random(f"validation:{seed}")
    generator = torch.Generator().manual_seed(seed)
    scaled = config.input_scaling == "train_standardize"
    model = SpiraConv(
        featurizer.frames, features.n_features, config.norm, config.dropout, scaled
    ).to(device)
    speed.prepare(model, seed)
    if model.scale is not None:
        model.scale.set(*(t.to(device) for t in input_statistics(train_set, featurizer, device)))
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, noam(config.warmup_steps))
    loss_fn = nn.BCEWithLogitsLoss()
    autocast = speed.autocast()
    inserting = noise is not None and config.augment.k_control + config.augment.k_patient > 0
    train_noise = (
        Noise(noise, config.augment, lambda rows: [noise_rng] * len(rows))
        if inserting and noise is not None
        else None
    )
    val_noise = (
        Noise(noise, config.augment, lambda rows: [val_rng] * len(rows))
        if config.validation_noise and train_noise is not None and noise is not None
        else None
    )
    history: list[EpochLog] = []
    best_state: dict[str, torch.Tensor] = {}
    best_loss, best_epoch, best_step, step = math.inf, 0, 0, 0

    def validate(epoch: int) -> tuple[float, float, float]:
        nonlocal best_loss, best_epoch, best_step, best_state
        result = evaluate(model, val_set, featurizer, device, config.eval_batch_size, val_noise)
        if result[0] < best_loss:
            best_loss, best_epoch, best_step = result[0], epoch, step
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        model.train()
        return result

    with deterministic(device):
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            started, waiting, total, batches, seen = time.perf_counter(), 0.0, 0.0, 0, 0
            order = order_rng.permutation(len(train_set))
            for first in range(0, len(order), config.batch_size):
                rows = [int(r) for r in order[first : first + config.batch_size]]
                if config.drop_last and len(rows) < config.batch_size:
                    continue
                t0 = time.perf_counter()
                windows, owners = recording_windows(
                    train_set, rows, featurizer, device, train_noise
                )
                labels = torch.from_numpy(train_set.labels[rows][owners]).to(device)
                windows, targets = mixup(windows, labels, config.augment.mixup_alpha, generator)
                waiting += time.perf_counter() - t0
                with autocast:
                    loss = loss_fn(model(windows).float(), targets.float())
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
                seen += int(windows.shape[0])
                if config.validate_every_steps and step % config.validate_every_steps == 0:
                    validate(epoch)
            elapsed = time.perf_counter() - started
            val_loss, val_auc, val_acc = validate(epoch)
            entry = EpochLog(
                epoch,
                total / max(batches, 1),
                val_loss,
                val_auc,
                val_acc,
                elapsed,
                seen / elapsed if elapsed else 0.0,
                waiting / elapsed if elapsed else 0.0,
            )
            history.append(entry)
            if log:
                log(entry)
            # no early stop while the learning rate is still warming up: a seed whose loss
            # has not moved yet has not had its learning rate (on the demo, a seed stopped at
            # epoch 3 of a 100-step warm-up, at chance)
            warm = step >= config.warmup_steps
            if config.patience and warm and epoch - best_epoch >= config.patience:
                break
    return TrainResult(
        seed,
        copy.deepcopy(best_state),
        history,
        best_epoch,
        best_loss,
        str(device),
        best_step,
        excluded,
        speed.record(),
    )
