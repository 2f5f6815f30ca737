"""One training protocol as a value (``TrainConfig``), without torch: the profiles
(``protocol.py``), the Dagster resources and the code location load without importing the
training loop (``train.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from spira_assets.features.augment_config import AugmentConfig
from spira_assets.features.config import TransformUnit
from spira_assets.features.windows import WindowRule
from spira_assets.ml.calibration import CalibrationMethod, ThresholdRule

if TYPE_CHECKING:
    import torch

    from spira_assets.features.config import FeatureConfig
    from spira_assets.features.featurizer import Featurizer

InputScaling = Literal["train_standardize", "none"]
Norm = Literal["group", "batch"]  # GroupNorm (SpiraConv v2) or BatchNorm (v1): ml/model.py
# What a model recorded before these fields existed was trained and scored with: no input
# scaling, no calibration (a recorded configuration never takes today's defaults for them)
BEFORE_TRUST_FIELDS: dict[str, Any] = {"input_scaling": "none", "calibration": "none"}


@dataclass(frozen=True)
class TrainConfig:
    """One training protocol. Defaults are the platform's; ``protocol.PROFILES`` holds the
    published SPIRA-ACL2021 experiment 3.5 as another instance."""

    profile: str = "platform"
    norm: Norm = "group"
    dropout: float = 0.7
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 500
    batch_size: int = 8  # recordings per batch, each with all its windows
    drop_last: bool = False  # drop a last, incomplete batch of an epoch
    max_epochs: int = 30
    patience: int = 6  # epochs without a better validation loss before stopping; 0: never
    max_loss: float = 100.0
    window_s: float = 4.0
    step_s: float = 1.0
    window_rule: WindowRule = "platform"
    transform_unit: TransformUnit = "recording"
    validation_noise: bool = False  # validate on noisy recordings (fresh draws each time)
    validate_every_steps: int = 0  # also validate every N optimizer steps; 0: per epoch only
    # the operating point: the highest threshold whose validation sensitivity (clean and
    # noisy validation pooled) reaches target_sensitivity (ml/calibration.py)
    threshold_rule: ThresholdRule = "sensitivity_margin"
    target_sensitivity: float = 0.90
    fixed_threshold: float = 0.5
    # inputs standardized per coefficient with statistics of the training split (stored in
    # the weights), and Platt scaling fitted on validation (calibration.json)
    input_scaling: InputScaling = "train_standardize"
    calibration: CalibrationMethod = "platt"
    keep_all_seeds: bool = False  # save every seed's model, not only the best
    mixed_precision: bool = True  # bf16 autocast of the forward pass on CUDA (fp32 on CPU)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_batch_size: int = 64

    def featurizer(self, features: FeatureConfig, device: torch.device | str) -> Featurizer:
        from spira_assets.features.featurizer import Featurizer

        return Featurizer(
            features, self.transform_unit, self.window_rule, self.window_s, self.step_s, device
        )


def train_config_from(record: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from its recorded ``asdict`` form (model_config.json, lineage.json)."""
    values = {**BEFORE_TRUST_FIELDS, **record}
    values["augment"] = AugmentConfig(**values["augment"])
    return TrainConfig(**values)
