"""What a trained network is fitted with on its validation split, after training: the input
statistics before it (``input_statistics``), the calibration map and the operating point
after it (``fit_scoring``). Used by training (``training_run.py``) and by reproduction, so a
reproduced model is scored exactly as the original was."""

from __future__ import annotations

import numpy as np
import torch

from spira_assets.features.augment import NoiseBank
from spira_assets.features.config import FeatureConfig
from spira_assets.features.featurizer import Featurizer
from spira_assets.ml.calibration import (
    Calibration,
    OperatingPoint,
    choose_operating_point,
    fit_platt,
)
from spira_assets.ml.data import RecordingSet
from spira_assets.ml.model import SpiraConv
from spira_assets.ml.scoring import per_recording_noise
from spira_assets.ml.train import (
    Noise,
    by_recording,
    recording_windows,
    usable,
    window_scores,
)
from spira_assets.ml.train_config import TrainConfig

# the fixed noise draw of validation recordings (per recording, by content): another salt
# than the test's, so the operating point never sees the test's noisy audio
VALIDATION_NOISE_SALT = 7


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


def recording_scores(
    model: SpiraConv,
    recordings: RecordingSet,
    featurizer: Featurizer,
    device: torch.device,
    batch_size: int,
    noise: Noise | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(label, raw score) per recording with a window: the mean window probability."""
    scores, owners = window_scores(model, recordings, featurizer, device, batch_size, noise)
    return by_recording(recordings, owners, scores)


def fit_scoring(
    model: SpiraConv,
    validation: RecordingSet,
    bank: NoiseBank | None,
    features: FeatureConfig,
    config: TrainConfig,
    device: torch.device,
) -> tuple[Calibration, OperatingPoint]:
    """The calibration map (fitted on clean validation recordings) and the operating point
    (chosen on calibrated clean and, with hospital noise, noisy validation recordings)."""
    featurizer = config.featurizer(features, device)
    chosen = validation.subset(usable(validation, featurizer))
    model = model.to(device).eval()
    raw = {"clean": recording_scores(model, chosen, featurizer, device, config.eval_batch_size)}
    augment = config.augment
    if bank is not None and augment.k_control + augment.k_patient > 0:
        noise = per_recording_noise(bank, augment, chosen, VALIDATION_NOISE_SALT)
        raw["noisy"] = recording_scores(
            model, chosen, featurizer, device, config.eval_batch_size, noise
        )
    labels, clean = raw["clean"]
    calibration = (
        fit_platt(labels, clean, "clean validation recordings")
        if config.calibration == "platt"
        else Calibration("none", note=f"the {config.profile} profile keeps the raw score")
    )
    calibrated = {name: (lab, calibration.apply(s)) for name, (lab, s) in raw.items()}
    point = choose_operating_point(
        config.threshold_rule, calibrated, config.target_sensitivity, config.fixed_threshold
    )
    return calibration, point
