"""SPIRA's noise insertion, per recording and before windowing, as published in
Edresson/SPIRA-ACL2021 (``utils/dataset.py``, ``Dataset.__getitem__``).

For each recording, ``k`` slices of hospital noise as long as the *whole recording* are added
(``k`` per class), so the overlapping windows cut afterwards share the same noise. Each slice
comes from a noise file picked uniformly, at a uniform offset, and is rescaled so that its
reference value equals a peak drawn uniformly from [0.033474047, 0.19233719] (measured by SPIRA
on noise-only stretches of patient audio). The published reference value is the slice's
*signed* maximum (``noise_wav.max()``); the platform default uses its absolute peak, which
cannot flip the sign of a slice whose samples are mostly negative.

Draws use Python's ``random.Random`` in the published order (file, offset, amplitude), so a
per-recording seed reproduces SPIRA's noisy test set draw for draw; the arithmetic runs on
the waveforms' device.

Where the published code fails, this module does not: a noise file shorter than the recording
is tiled (SPIRA raises), and a slice whose signed maximum is not positive falls back to its
absolute peak (SPIRA divides by it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from spira_assets.audio.resample import from_int16
from spira_assets.features.augment_config import AugmentConfig


class NoiseBank:
    """The hospital-noise files on one device: one waveform and each file's (offset, length)."""

    def __init__(self, noise: torch.Tensor, spans: Sequence[tuple[int, int]] | None = None) -> None:
        if noise.ndim != 1 or noise.numel() == 0:
            raise ValueError("the noise bank needs a non-empty 1-D waveform")
        self.noise = noise.float()
        self.spans = list(spans) if spans is not None else [(0, noise.numel())]
        if not self.spans or any(n <= 0 for _, n in self.spans):
            raise ValueError("every noise file needs at least one sample")

    @classmethod
    def from_int16(
        cls,
        samples: np.ndarray,
        spans: Sequence[tuple[int, int]] | None = None,
        device: torch.device | str = "cpu",
    ) -> NoiseBank:
        return cls(torch.from_numpy(from_int16(np.asarray(samples))).to(device), spans)

    def __len__(self) -> int:
        return len(self.spans)

    def piece(self, file: int, offset: int, length: int) -> torch.Tensor:
        """``length`` samples of noise file ``file`` from ``offset``, the file tiled when it is
        shorter than that."""
        start, size = self.spans[file]
        source = self.noise[start : start + size]
        if offset + length <= size:
            return source[offset : offset + length]
        repeats = -(-(offset + length) // size)
        return source.repeat(repeats)[offset : offset + length]


def noise_for(
    length: int, k: int, bank: NoiseBank, config: AugmentConfig, rng: random.Random
) -> torch.Tensor | None:
    """The sum of ``k`` rescaled noise slices of ``length`` samples (None when k == 0)."""
    total: torch.Tensor | None = None
    for _ in range(k):
        file = rng.randint(0, len(bank) - 1)
        size = bank.spans[file][1]
        # the published offset range stops one sample short: randint(0, len - (wav_len + 1))
        offset = rng.randint(0, size - (length + 1)) if size > length else 0
        peak = rng.uniform(config.min_peak, config.max_peak)
        piece = bank.piece(file, offset, length)
        reference = piece.max() if config.scale == "signed_max" else piece.abs().max()
        if not float(reference) > 0:
            reference = piece.abs().max()
        scaled = piece * (peak / reference.clamp_min(1e-8))
        total = scaled if total is None else total + scaled
    return total


def insert_noise(
    waves: Sequence[torch.Tensor],
    labels: Sequence[int],
    bank: NoiseBank,
    config: AugmentConfig,
    rngs: Sequence[random.Random],
) -> list[torch.Tensor]:
    """Each whole recording plus its class's number of noise slices. ``rngs`` has one
    generator per recording (the same object repeated for sequential training draws, or one
    seeded per recording for a fixed noisy test set)."""
    if not len(waves) == len(labels) == len(rngs):
        raise ValueError("one label and one random generator per recording")
    out = []
    for wave, label, rng in zip(waves, labels, rngs, strict=True):
        noise = noise_for(wave.shape[-1], config.slices_for(int(label)), bank, config, rng)
        out.append(wave if noise is None else wave + noise.to(wave.device, wave.dtype))
    return out


def mixup(
    windows: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convex combinations of window pairs and of their targets (Zhang et al. 2018)."""
    if alpha <= 0:
        return windows, targets.float()
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(windows.shape[0], generator=generator).to(windows.device)
    mixed = weight * windows + (1 - weight) * windows[order]
    soft = weight * targets.float() + (1 - weight) * targets.float()[order]
    return mixed, soft
