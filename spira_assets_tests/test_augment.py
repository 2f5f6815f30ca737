"""Noise insertion per recording, before windowing, as SPIRA-ACL2021 does it; mixup."""

from __future__ import annotations

import random

import pytest
import torch

from spira_assets.features.augment import NoiseBank, insert_noise, mixup, noise_for
from spira_assets.features.augment_config import NOISE_PEAK_RANGE, AugmentConfig

# three noise files of different lengths in one bank
FILES = [
    torch.randn(48_000, generator=torch.Generator().manual_seed(1)) * 0.3,
    torch.randn(80_000, generator=torch.Generator().manual_seed(2)) * 0.3 - 0.05,
    torch.randn(32_000, generator=torch.Generator().manual_seed(3)) * 0.3,
]
BANK = NoiseBank(torch.cat(FILES), [(0, 48_000), (48_000, 80_000), (128_000, 32_000)])


def test_each_slice_is_a_whole_recording_long_and_scaled_by_its_signed_maximum() -> None:
    """The published draw, step by step: file (randint over the list), offset
    (randint(0, len - (wav_len + 1))), amplitude (uniform), slice / slice.max() * amplitude."""
    config = AugmentConfig(k_control=1, k_patient=0, scale="signed_max")
    length = 20_000
    noise = noise_for(length, 1, BANK, config, random.Random(42 * 7))
    assert noise is not None and noise.shape == (length,)
    rng = random.Random(42 * 7)
    file = rng.randint(0, len(FILES) - 1)
    offset = rng.randint(0, FILES[file].numel() - (length + 1))
    amplitude = rng.uniform(*NOISE_PEAK_RANGE)
    piece = FILES[file][offset : offset + length]
    torch.testing.assert_close(noise, piece / piece.max() * amplitude)
    assert float(noise.max()) == pytest.approx(amplitude)  # the signed maximum, not |peak|


def test_the_platform_scales_by_the_absolute_peak() -> None:
    noise = noise_for(20_000, 1, BANK, AugmentConfig(scale="peak"), random.Random(3))
    assert noise is not None
    assert NOISE_PEAK_RANGE[0] <= float(noise.abs().max()) <= NOISE_PEAK_RANGE[1] + 1e-6


def test_slices_per_class_and_one_draw_per_recording() -> None:
    waves = [torch.zeros(30_000), torch.zeros(30_000)]
    config = AugmentConfig(k_control=1, k_patient=0, scale="signed_max")
    control, patient = insert_noise(
        waves, [0, 1], BANK, config, [random.Random(0), random.Random(42)]
    )
    assert control.abs().sum() > 0 and torch.equal(patient, waves[1])  # patients: no noise
    three = noise_for(30_000, 3, BANK, AugmentConfig(k_control=3), random.Random(5))
    rng = random.Random(5)
    parts = [noise_for(30_000, 1, BANK, AugmentConfig(), rng) for _ in range(3)]
    assert three is not None and all(p is not None for p in parts)
    torch.testing.assert_close(three, sum(parts))  # type: ignore[arg-type]


def test_a_fixed_seed_per_recording_gives_the_same_noise_whatever_else_is_drawn() -> None:
    config = AugmentConfig(k_control=2, k_patient=2)
    waves = [torch.zeros(10_000), torch.zeros(12_000), torch.zeros(9_000)]
    alone = insert_noise(waves[1:2], [1], BANK, config, [random.Random(11)])[0]
    together = insert_noise(
        waves, [0, 1, 0], BANK, config, [random.Random(10), random.Random(11), random.Random(12)]
    )[1]
    assert torch.equal(alone, together)


def test_noise_shorter_than_the_recording_is_tiled_and_zero_slices_change_nothing() -> None:
    short = NoiseBank(torch.linspace(-1, 1, 100))
    noise = noise_for(1_000, 1, short, AugmentConfig(), random.Random(0))
    assert noise is not None and noise.shape == (1_000,)
    wave = torch.randn(500)
    assert torch.equal(
        insert_noise([wave], [0], BANK, AugmentConfig(0, 0), [random.Random(0)])[0], wave
    )


def test_a_slice_with_no_positive_sample_falls_back_to_its_absolute_peak() -> None:
    negative = NoiseBank(-torch.rand(5_000) - 0.1)
    noise = noise_for(1_000, 1, negative, AugmentConfig(scale="signed_max"), random.Random(0))
    assert noise is not None and torch.isfinite(noise).all()
    assert float(noise.abs().max()) <= NOISE_PEAK_RANGE[1] + 1e-6


def test_mixup_keeps_targets_between_the_mixed_labels() -> None:
    windows, targets = mixup(
        torch.randn(16, 400, 40),
        torch.tensor([0, 1] * 8),
        0.4,
        torch.Generator().manual_seed(0),
    )
    assert windows.shape == (16, 400, 40) and ((targets >= 0) & (targets <= 1)).all()


def test_invalid_augmentation_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        AugmentConfig(k_control=-1)
    with pytest.raises(ValueError):
        AugmentConfig(min_peak=0.5, max_peak=0.1)
    with pytest.raises(ValueError):
        AugmentConfig(scale="rms")  # type: ignore[arg-type]
