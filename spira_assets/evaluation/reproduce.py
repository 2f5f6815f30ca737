"""Recreate a past model version from its lineage record and compare it with the original.

The record (``lineage.json`` next to the weights) names the 16 kHz data version of every input
batch, the noise data version, the feature and training configuration, the split and the seeds.
Reproduction checks that every one of them is still available, retrains the kept seed on the
same participants and compares weights and test-set metrics with the original model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from spira_assets.evaluation.config import EVALUATION
from spira_assets.evaluation.metrics import all_metrics
from spira_assets.features.config import FeatureConfig
from spira_assets.features.featurizer import Featurizer
from spira_assets.ml.artifacts import CONFIG, LINEAGE, build_model, load_model
from spira_assets.ml.calibration import Calibration, load_calibration
from spira_assets.ml.data import RecordingSet
from spira_assets.ml.inference import THRESHOLD_FILE
from spira_assets.ml.lineage import code_version
from spira_assets.ml.metrics import mean_by_group
from spira_assets.ml.model import SpiraConv
from spira_assets.ml.scoring import per_recording_noise
from spira_assets.ml.speed import training_speed
from spira_assets.ml.split import SPLITS
from spira_assets.ml.train import (
    Noise,
    cpu_threads,
    train,
    window_scores,
)
from spira_assets.ml.train_config import train_config_from
from spira_assets.ml.training_inputs import (
    ReproductionInputsMissing,
    load_training_data,
    recorded_plan,
)
from spira_assets.ml.validation_fit import fit_scoring
from spira_assets.storage.layout import DataLayout

REPORTED = ("auroc", "accuracy", "sensitivity", "specificity", "brier")


@dataclass
class Reproduction:
    model_version: str
    seed: int
    device: str
    recordings: dict[str, int]
    weights_identical: bool
    max_weight_difference: float
    threshold_original: float
    threshold_reproduced: float
    metrics: list[dict[str, Any]] = field(default_factory=list)
    # the calibration maps (ml/calibration.py): recorded with the model, and refitted on the
    # reproduced network's validation scores
    calibration_original: dict[str, Any] = field(default_factory=dict)
    calibration_reproduced: dict[str, Any] = field(default_factory=dict)
    code_version_recorded: str = ""
    code_version_now: str = ""
    tolerance: float = 0.0
    profile: str = ""
    cpu_threads: int = 0  # torch CPU threads the reproduction trained with
    cpu_threads_recorded: int | None = None  # None: the record predates the field

    @property
    def metrics_match(self) -> bool:
        return all(
            abs(m["original"] - m["reproduced"]) <= self.tolerance
            or (np.isnan(m["original"]) and np.isnan(m["reproduced"]))
            for m in self.metrics
        )

    @property
    def calibration_matches(self) -> bool:
        first, second = self.calibration_original, self.calibration_reproduced
        return first.get("method") == second.get("method") and all(
            abs(float(first.get(k, 0.0)) - float(second.get(k, 0.0))) <= self.tolerance
            for k in ("slope", "intercept")
        )

    @property
    def exact(self) -> bool:
        return (
            self.weights_identical
            and self.metrics_match
            and self.calibration_matches
            and self.tolerance == 0.0
        )

    @property
    def matches(self) -> bool:
        within = self.weights_identical or self.max_weight_difference <= self.tolerance
        return within and self.metrics_match and self.calibration_matches

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exact": self.exact, "matches": self.matches}


def recorded_inputs(root: Path, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(lineage, model configuration) of a model version, or ReproductionInputsMissing."""
    directory = root / "models" / version
    missing = [
        str(directory / name) for name in (LINEAGE, CONFIG) if not (directory / name).exists()
    ]
    if missing:
        raise ReproductionInputsMissing(version, missing)
    return (
        json.loads((directory / LINEAGE).read_text()),
        json.loads((directory / CONFIG).read_text()),
    )


def _test_metrics(
    model: SpiraConv,
    test: RecordingSet,
    featurizer: Featurizer,
    device: torch.device,
    threshold: float,
    calibration: Calibration,
    noise: Noise | None,
) -> dict[str, float]:
    scores, owners = window_scores(model, test, featurizer, device, 64, noise)
    groups, means = mean_by_group(owners, scores)
    return all_metrics(test.labels[groups], calibration.apply(means), threshold)


def reproduce(
    root: Path,
    version: str,
    device: torch.device | str = "cpu",
    tolerance: float = 0.0,
    noisy_seed: int = EVALUATION.noisy_seed,
) -> Reproduction:
    """Retrain ``version``'s kept seed from its record and compare with the original, on the
    recorded number of torch CPU threads."""
    lineage, config = recorded_inputs(root, version)
    recorded = lineage.get("cpu_threads")
    with cpu_threads(None if recorded is None else int(recorded)) as threads:
        result = _reproduce(
            root, version, (lineage, config), torch.device(device), tolerance, noisy_seed
        )
    result.cpu_threads, result.cpu_threads_recorded = threads, recorded
    return result


def _reproduce(
    root: Path,
    version: str,
    record: tuple[dict[str, Any], dict[str, Any]],
    device: torch.device,
    tolerance: float,
    noisy_seed: int,
) -> Reproduction:
    layout = DataLayout.from_location(str(root))
    lineage, config = record
    features = FeatureConfig(**config["features"])
    if features.config_hash() != lineage["feature_config_hash"]:
        raise ReproductionInputsMissing(
            version,
            [
                f"feature configuration {lineage['feature_config_hash']} (the model's "
                f"configuration hashes to {features.config_hash()})"
            ],
        )
    train_config = train_config_from(lineage["train_config"])
    plan = recorded_plan(layout, version, lineage)
    recordings = plan.recordings
    data = load_training_data(
        plan,
        layout,
        features,
        train_config,
        device,
        SPLITS,
        # the clean validation input the model was trained with (feature store or computed)
        lineage.get("clean_from_store"),
    )
    sets, bank = data.sets, data.bank
    seed = int(lineage["best_seed"])
    # the recorded step settings (a record without them: fp32 with PyTorch's dropout masks)
    speed = training_speed(train_config, device, recorded=lineage.get("training_speed", {}))
    result = train(
        sets["train"], sets["validation"], features, bank, train_config, seed, device, None, speed
    )
    original = load_model(root / "models" / version).to(device)
    rebuilt = build_model(config)
    rebuilt.load_state_dict(result.state_dict)
    rebuilt = rebuilt.to(device).eval()
    reference = original.state_dict()
    differences = [
        float((reference[name].float().cpu() - tensor.float().cpu()).abs().max())
        for name, tensor in result.state_dict.items()
    ]
    identical = all(
        torch.equal(reference[name].cpu(), tensor.cpu())
        for name, tensor in result.state_dict.items()
    )
    featurizer = train_config.featurizer(features, device)
    directory = root / "models" / version
    threshold_file = directory / THRESHOLD_FILE
    calibration, fitted = (
        (load_calibration(directory), None)
        if threshold_file.exists()
        else fit_scoring(original, sets["validation"], bank, features, train_config, device)
    )
    threshold = (
        float(json.loads(threshold_file.read_text())["threshold"])
        if fitted is None
        else fitted.threshold
    )
    reproduced_calibration, reproduced_point = fit_scoring(
        rebuilt, sets["validation"], bank, features, train_config, device
    )
    reproduced_threshold = reproduced_point.threshold
    metrics = []
    test = sets["test"]
    conditions: dict[str, Noise | None] = {"clean": None}
    if bank is not None:
        conditions["noisy"] = per_recording_noise(bank, train_config.augment, test, noisy_seed)
    for condition, noise in conditions.items():
        first = _test_metrics(original, test, featurizer, device, threshold, calibration, noise)
        second = _test_metrics(
            rebuilt, test, featurizer, device, reproduced_threshold, reproduced_calibration, noise
        )
        metrics += [
            {
                "condition": condition,
                "metric": name,
                "original": first[name],
                "reproduced": second[name],
            }
            for name in REPORTED
        ]
    return Reproduction(
        model_version=version,
        seed=seed,
        device=str(device),
        recordings={s: int(recordings.filter(pl.col("split") == s).height) for s in sets},
        weights_identical=identical,
        max_weight_difference=max(differences) if differences else 0.0,
        threshold_original=threshold,
        threshold_reproduced=reproduced_threshold,
        metrics=metrics,
        calibration_original=calibration.to_json(),
        calibration_reproduced=reproduced_calibration.to_json(),
        code_version_recorded=str(lineage.get("code_version", "")),
        code_version_now=code_version(),
        tolerance=tolerance,
        profile=train_config.profile,
    )
