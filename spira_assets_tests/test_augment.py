"""Noise insertion and mixup on batches of waveforms."""

from __future__ import annotations

import pytest
import torch

from spira_assets.features.augment import (
    NOISE_PEAK_RANGE,
    AugmentConfig,
    AugmentedFeatures,
    NoiseBank,
    insert_noise,
    mixup,
)
from spira_assets.features.config import FeatureConfig

BANK = NoiseBank(torch.randn(16_000 * 30, generator=torch.Generator().manual_seed(1)))
SILENCE = torch.zeros(6, 16_000)
LABELS = torch.tensor([0, 1, 0, 1, 0, 1])


def test_same_generator_seed_gives_the_same_noise() -> None:
    config = AugmentConfig(k_control=2, k_patient=3)
    a = insert_noise(SILENCE, LABELS, BANK, config, torch.Generator().manual_seed(7))
    b = insert_noise(SILENCE, LABELS, BANK, config, torch.Generator().manual_seed(7))
    c = insert_noise(SILENCE, LABELS, BANK, config, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_fixed_seed_mode_ignores_batch_order_and_composition() -> None:
    config = AugmentConfig(k_control=2, k_patient=5)
    full = insert_noise(SILENCE, LABELS, BANK, config, sample_seeds=[10, 11, 12, 13, 14, 15])
    pair = insert_noise(SILENCE[[3, 0]], LABELS[[3, 0]], BANK, config, sample_seeds=[13, 10])
    assert torch.equal(full[[3, 0]], pair)


def test_single_slice_peak_lies_in_spiras_range() -> None:
    config = AugmentConfig(k_control=1, k_patient=1)
    noisy = insert_noise(
        torch.zeros(200, 8_000), torch.zeros(200), BANK, config, torch.Generator().manual_seed(0)
    )
    peaks = noisy.abs().amax(dim=1)
    assert peaks.min() >= NOISE_PEAK_RANGE[0] - 1e-6 and peaks.max() <= NOISE_PEAK_RANGE[1] + 1e-6
    assert peaks.max() - peaks.min() > 0.1  # drawn across the range, not a constant


def test_slice_count_is_per_class_and_zero_means_clean() -> None:
    config = AugmentConfig(k_control=0, k_patient=4)
    noisy = insert_noise(SILENCE, LABELS, BANK, config, torch.Generator().manual_seed(0))
    assert not noisy[LABELS == 0].any() and (noisy[LABELS == 1].abs().sum(dim=1) > 0).all()
    waves = torch.randn(6, 1000)
    assert torch.equal(insert_noise(waves, LABELS, BANK, AugmentConfig(0, 0)), waves)


def test_short_noise_bank_is_tiled() -> None:
    bank = NoiseBank(torch.linspace(-1, 1, 100))
    out = insert_noise(
        torch.zeros(2, 1000),
        torch.tensor([0, 1]),
        bank,
        AugmentConfig(1, 1),
        torch.Generator().manual_seed(0),
    )
    assert out.shape == (2, 1000) and (out.abs().sum(dim=1) > 0).all()


def test_mixup_keeps_targets_between_the_mixed_labels() -> None:
    waves, targets = mixup(
        torch.randn(16, 100), torch.tensor([0, 1] * 8), 0.4, torch.Generator().manual_seed(0)
    )
    assert waves.shape == (16, 100) and ((targets >= 0) & (targets <= 1)).all()


def test_augmented_features_give_window_frames_on_the_fly() -> None:
    config = FeatureConfig()
    module = AugmentedFeatures(config.build_transform(), BANK, AugmentConfig(), frames=400)
    features, targets = module(
        torch.randn(4, 64_000) * 0.1, torch.tensor([0, 1, 0, 1]), sample_seeds=[1, 2, 3, 4]
    )
    assert features.shape == (4, 400, 40) and targets.tolist() == [0, 1, 0, 1]


def test_invalid_augmentation_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        AugmentConfig(k_control=-1)
    with pytest.raises(ValueError):
        AugmentConfig(min_peak=0.5, max_peak=0.1)


def test_on_the_fly_features_of_a_sample_do_not_depend_on_the_batch() -> None:
    config = FeatureConfig()
    module = AugmentedFeatures(config.build_transform(), BANK, AugmentConfig(0, 0), frames=400)
    quiet = torch.randn(1, 64_000) * 1e-4
    loud = torch.randn(1, 64_000)
    alone, _ = module(quiet, torch.tensor([0]))
    both, _ = module(torch.cat([quiet, loud]), torch.tensor([0, 0]))
    torch.testing.assert_close(alone[0], both[0])
