"""How noise is inserted and mixup applied during training (SPIRA's draws: ``augment.py``):
settings only, without torch, so the training profiles and the Dagster resources that carry
them load without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NOISE_PEAK_RANGE = (0.033474047, 0.19233719)  # exp3.5.json noise_min_amp / noise_max_amp
NoiseScale = Literal["peak", "signed_max"]


@dataclass(frozen=True)
class AugmentConfig:
    k_control: int = 2
    k_patient: int = 2
    min_peak: float = NOISE_PEAK_RANGE[0]
    max_peak: float = NOISE_PEAK_RANGE[1]
    scale: NoiseScale = "peak"  # "signed_max": as published
    mixup_alpha: float = 0.0  # 0 disables mixup (applied to feature windows)
    # SPIRA-ACL2021 reads its headerless noise_data.csv with a header row, so the file on its
    # first line is never drawn; True reads an imported list the same way
    skip_noise_list_header: bool = False

    def __post_init__(self) -> None:
        if self.k_control < 0 or self.k_patient < 0:
            raise ValueError("noise slice counts must be >= 0")
        if not 0 <= self.min_peak <= self.max_peak:
            raise ValueError("need 0 <= min_peak <= max_peak")
        if self.scale not in ("peak", "signed_max"):
            raise ValueError(f"noise scale {self.scale!r} is not 'peak' or 'signed_max'")

    def slices_for(self, label: int) -> int:
        return self.k_patient if label == 1 else self.k_control
