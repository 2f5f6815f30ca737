"""What a trained network is fitted with on its validation split after training: the
calibration map and the operating point (``fit_scoring``; the input statistics before
training are ``train.input_statistics``). Used by training (``training_run.py``) and by
reproduction, so a reproduced model is scored exactly as the original was."""

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
    usable,
    window_scores,
)
from spira_assets.ml.train_config import TrainConfig

# the fixed noise draw of validation recordings (per recording, by content): another salt
# than the test's, so the operating point never sees the test's noisy audio
VALIDATION_NOISE_SALT = 7


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
