"""SPIRA's noise-insertion augmentation and mixup, on batches of waveforms on the device.

For each sample, ``k`` slices of hospital noise of the sample's length are cut at random
offsets, each rescaled to a random peak amplitude drawn from [0.0335, 0.1923] (measured by
SPIRA on noise-only stretches of patient audio, SPIRA.md), and added; ``k`` is configured per
class. Random numbers are drawn on the CPU (tiny) and the heavy gather/scale/add runs on the
waveforms' device, so results do not depend on the device. With ``sample_seeds`` every sample
draws from its own seed: the noisy test set is the same in every experiment, whatever the
batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spira_assets.audio.resample import from_int16

NOISE_PEAK_RANGE = (0.0335, 0.1923)


@dataclass(frozen=True)
class AugmentConfig:
    k_control: int = 2
    k_patient: int = 2
    min_peak: float = NOISE_PEAK_RANGE[0]
    max_peak: float = NOISE_PEAK_RANGE[1]
    mixup_alpha: float = 0.0  # 0 disables mixup

    def __post_init__(self) -> None:
        if self.k_control < 0 or self.k_patient < 0:
            raise ValueError("noise slice counts must be >= 0")
        if not 0 <= self.min_peak <= self.max_peak:
            raise ValueError("need 0 <= min_peak <= max_peak")


class NoiseBank:
    """All hospital noise, concatenated, on one device."""

    def __init__(self, noise: torch.Tensor) -> None:
        if noise.ndim != 1 or noise.numel() == 0:
            raise ValueError("the noise bank needs a non-empty 1-D waveform")
        self.noise = noise.float()

    @classmethod
    def from_int16(cls, samples: np.ndarray, device: torch.device | str = "cpu") -> NoiseBank:
        return cls(torch.from_numpy(from_int16(np.asarray(samples))).to(device))

    def covering(self, length: int) -> torch.Tensor:
        """The bank, tiled when shorter than ``length`` so any slice fits."""
        if self.noise.numel() >= length:
            return self.noise
        repeats = -(-length // self.noise.numel())
        return self.noise.repeat(repeats)


def _draws(
    count: int, slices: int, room: int, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, room + 1, (count, slices), generator=generator)
    peaks = config.min_peak + (config.max_peak - config.min_peak) * torch.rand(
        (count, slices), generator=generator
    )
    return starts, peaks


def insert_noise(
    waves: torch.Tensor,
    labels: torch.Tensor,
    bank: NoiseBank,
    config: AugmentConfig,
    generator: torch.Generator | None = None,
    sample_seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """``waves`` (batch x samples) plus k rescaled noise slices per sample."""
    batch, length = waves.shape
    counts = torch.where(labels.cpu() == 1, config.k_patient, config.k_control)
    most = int(counts.max()) if batch else 0
    if most == 0:
        return waves
    noise = bank.covering(length).to(waves.device)
    room = noise.numel() - length
    if sample_seeds is not None:
        if len(sample_seeds) != batch:
            raise ValueError("one seed per sample")
        pairs = [
            _draws(1, most, room, config, torch.Generator().manual_seed(int(seed)))
            for seed in sample_seeds
        ]
        starts = torch.cat([p[0] for p in pairs])
        peaks = torch.cat([p[1] for p in pairs])
    else:
        starts, peaks = _draws(batch, most, room, config, generator or torch.Generator())
    used = torch.arange(most)[None, :] < counts[:, None]
    index = starts.to(waves.device)[..., None] + torch.arange(length, device=waves.device)
    slices = noise[index]  # batch x k x samples
    scale = peaks.to(waves.device) * used.to(waves.device)
    slices = slices / slices.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) * scale[..., None]
    return waves + slices.sum(dim=1).to(waves.dtype)


def mixup(
    waves: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convex combinations of sample pairs and of their targets (Zhang et al. 2018)."""
    if alpha <= 0:
        return waves, targets.float()
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(waves.shape[0], generator=generator).to(waves.device)
    mixed = weight * waves + (1 - weight) * waves[order]
    soft = weight * targets.float() + (1 - weight) * targets.float()[order]
    return mixed, soft


class AugmentedFeatures(torch.nn.Module):
    """Waveform windows -> noise insertion (-> mixup) -> spectrogram features, all on the
    device, so training augments on the fly without touching disk."""

    def __init__(
        self, transform: torch.nn.Module, bank: NoiseBank, config: AugmentConfig, frames: int
    ) -> None:
        super().__init__()
        self.transform = transform
        self.bank = bank
        self.config = config
        self.frames = frames

    def forward(
        self,
        waves: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        sample_seeds: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        noisy = insert_noise(waves, labels, self.bank, self.config, generator, sample_seeds)
        targets = labels.float()
        if self.config.mixup_alpha > 0 and sample_seeds is None:
            noisy, targets = mixup(
                noisy, labels, self.config.mixup_alpha, generator or torch.Generator()
            )
        # A channel axis makes torchaudio's dB clamp per sample, not per batch.
        features = self.transform(noisy[:, None]).squeeze(1).transpose(1, 2)[:, : self.frames]
        return features, targets
