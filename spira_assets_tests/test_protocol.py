"""The spira-acl2021 profile pinned, element by element, against SPIRA-ACL2021 as published
(Experiments/configs/exp3.5.json, train.py, test.py, utils/dataset.py,
utils/audio_processor.py), and the platform profile's differences."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torchaudio

from spira_assets.features.augment import NoiseBank, insert_noise
from spira_assets.features.augment_config import NOISE_PEAK_RANGE
from spira_assets.features.config import FeatureConfig
from spira_assets.features.windows import sample_window_starts, window_frames
from spira_assets.ml.calibration import choose_operating_point
from spira_assets.ml.data import build_recordings
from spira_assets.ml.protocol import (
    PLATFORM,
    PROFILE_SEEDS,
    PROFILES,
    PUBLISHED_NOISY_TEST,
    SPIRA_ACL2021,
    profile_config,
)
from spira_assets.ml.scoring import published_noise
from spira_assets.ml.train import train
from spira_assets.resources import TrainingSettings

SPIRA = PROFILES[SPIRA_ACL2021]
RATE = 16_000


def spira_mfcc(window: torch.Tensor) -> torch.Tensor:
    """The reference: SPIRA's AudioProcessor.get_feature_from_audio for one slice
    (utils/audio_processor.py: torchaudio MFCC with these melkwargs, no normalized STFT),
    then .transpose(1, 2) as utils/dataset.py does."""
    transform = torchaudio.transforms.MFCC(
        sample_rate=RATE,
        n_mfcc=40,
        log_mels=False,
        melkwargs={"n_fft": 1200, "win_length": 400, "hop_length": 160, "n_mels": 40},
    )
    return transform(window[None]).transpose(1, 2)[0]


def voice(seconds: float, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    noise = torch.randn(t.shape[0], generator=torch.Generator().manual_seed(seed)) * 0.01
    return (0.3 * torch.sin(2 * torch.pi * 180 * t) * (1 + 0.5 * torch.sin(3 * t)) + noise).float()


def test_training_elements_are_the_published_ones() -> None:
    assert (SPIRA.norm, SPIRA.dropout) == ("group", 0.7)  # spiraconv_v2
    assert (SPIRA.learning_rate, SPIRA.weight_decay, SPIRA.warmup_steps) == (1e-3, 0.01, 1000)
    assert (SPIRA.max_epochs, SPIRA.patience) == (1000, 0)  # early_stop_epochs: 0
    assert (SPIRA.batch_size, SPIRA.drop_last) == (5, True)  # 5 recordings, all windows
    assert (SPIRA.validation_noise, SPIRA.validate_every_steps) == (True, 500)
    assert (SPIRA.threshold_rule, SPIRA.fixed_threshold, SPIRA.keep_all_seeds) == (
        "fixed",
        0.5,
        True,
    )
    augment = SPIRA.augment
    assert (augment.k_control, augment.k_patient, augment.scale) == (3, 3, "signed_max")
    assert (augment.min_peak, augment.max_peak) == NOISE_PEAK_RANGE == (0.033474047, 0.19233719)
    assert augment.mixup_alpha == 0.0
    assert augment.skip_noise_list_header  # pd.read_csv(noise_data.csv): line 1 is a header
    assert SPIRA.mixed_precision is False  # fp32: train.py has no autocast
    assert PROFILE_SEEDS[SPIRA_ACL2021] == (42, 43, 46)
    test = PUBLISHED_NOISY_TEST
    assert (test.k_control, test.k_patient, test.seed, test.threshold) == (1, 0, 42, 0.5)


def test_the_published_profile_trains_in_fp32_where_the_platform_uses_bf16_on_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import warnings
    from contextlib import nullcontext

    from spira_assets.ml.speed import cpu_supports_bf16
    from spira_assets.ml.train import precision

    # a CUDA device with bf16 (this machine may have none; the decision is the subject)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert isinstance(precision(SPIRA, cuda), nullcontext)
    with warnings.catch_warnings():  # torch warns where there is no CUDA device
        warnings.simplefilter("ignore", UserWarning)
        chosen = precision(PROFILES[PLATFORM], cuda)
    assert isinstance(chosen, torch.autocast) and chosen.fast_dtype == torch.bfloat16
    # on the CPU, bf16 only where oneDNN runs it natively; the published profile never
    assert isinstance(precision(SPIRA, cpu), nullcontext)
    on_cpu = precision(PROFILES[PLATFORM], cpu)
    assert isinstance(on_cpu, torch.autocast) == cpu_supports_bf16()


def test_the_platform_profile_says_where_it_differs() -> None:
    platform = PROFILES[PLATFORM]
    assert platform.transform_unit == "recording" and SPIRA.transform_unit == "window"
    assert platform.window_rule == "platform" and SPIRA.window_rule == "spira"
    assert platform.threshold_rule == "sensitivity_margin" and platform.patience > 0
    assert SPIRA.threshold_rule == "fixed" and platform.target_sensitivity == 0.9
    assert (platform.input_scaling, SPIRA.input_scaling) == ("train_standardize", "none")
    assert (platform.calibration, SPIRA.calibration) == ("platt", "none")
    assert not platform.validation_noise and platform.augment.scale == "peak"
    assert not platform.augment.skip_noise_list_header and platform.mixed_precision


def test_the_profile_is_selectable_in_the_launchpad_and_overridable() -> None:
    assert TrainingSettings(profile=SPIRA_ACL2021).train_config() == SPIRA
    chosen = TrainingSettings(profile=SPIRA_ACL2021, max_epochs=2, k_control=1)
    assert chosen.train_config().max_epochs == 2 and chosen.train_config().augment.k_control == 1
    assert chosen.train_config().augment.k_patient == 3
    assert TrainingSettings(profile=SPIRA_ACL2021).seed_list() == [42, 43, 46]
    with pytest.raises(ValueError, match="profile 'spira-2099'"):
        profile_config("spira-2099")


def test_features_equal_spiras_mfcc_of_each_window_slice() -> None:
    """Floats in [-1, 1] in, an unnormalized STFT, the MFCC of each 4 s slice on its own:
    frame for frame what SPIRA's loader computes (401 frames x 40 coefficients)."""
    wave = voice(7.3)
    featurizer = SPIRA.featurizer(FeatureConfig(), "cpu")
    windows, owners = featurizer.windows([wave])
    ends = range(64_000, wave.shape[0], 16_000)
    reference = torch.stack([spira_mfcc(wave[end - 64_000 : end]) for end in ends])
    assert windows.shape == (len(ends), 401, 40) and owners.tolist() == [0] * len(ends)
    torch.testing.assert_close(windows, reference, rtol=1e-4, atol=1e-3)
    # a normalized STFT (the old default) would shift c0 by about -138
    normalized = FeatureConfig(normalized=True).build_transform()(wave[:64_000][None])[0, 0]
    shift = float((normalized - reference[0][:, 0]).mean())
    assert shift == pytest.approx(-137.6, abs=0.5)


def test_the_window_rule_is_spiras_range_and_short_clips_are_out() -> None:
    counts = {n: len(sample_window_starts(n, 64_000, 16_000, "spira")) for n in
              (64_000, 64_001, 80_000, 80_001, 96_000, 160_000, 160_001)}  # fmt: skip
    assert counts == {64_000: 0, 64_001: 1, 80_000: 1, 80_001: 2, 96_000: 2, 160_000: 6, 160_001: 7}
    # the platform includes the flush window and pads a short clip
    assert sample_window_starts(80_000, 64_000, 16_000, "platform") == [0, 16_000]
    assert sample_window_starts(30_000, 64_000, 16_000, "platform") == [0]
    assert window_frames(4.0, FeatureConfig(), "spira") == 401
    assert window_frames(4.0, FeatureConfig(), "platform") == 400


def test_noise_goes_into_the_whole_recording_before_windowing() -> None:
    """Overlapping windows share the same noise: the windows of a noisy recording are the
    windows of (recording + one recording-long noise draw)."""
    bank = NoiseBank(torch.randn(400_000, generator=torch.Generator().manual_seed(5)) * 0.2)
    wave = voice(9.0)
    noisy = insert_noise([wave], [0], bank, SPIRA.augment, [random.Random(7)])[0]
    featurizer = SPIRA.featurizer(FeatureConfig(), "cpu")
    ends = range(64_000, wave.shape[0], 16_000)
    reference = torch.stack([spira_mfcc(noisy[end - 64_000 : end]) for end in ends])
    windows, _ = featurizer.windows([noisy])
    torch.testing.assert_close(windows, reference, rtol=1e-4, atol=1e-3)
    assert not torch.equal(noisy, wave)


def test_the_published_noisy_test_draws_with_seed_42_times_the_index(tmp_path: Path) -> None:
    from spira_assets.storage.shards import ShardWriter

    waves = [voice(5.0, seed=i) for i in range(4)]
    with ShardWriter(tmp_path / "s@x.int16", np.int16, 1) as writer:
        spans = [writer.append((w.numpy() * 32768).astype(np.int16)[:, None]) for w in waves]
        writer.commit()
    rows = pl.DataFrame(
        {
            "batch_id": ["b"] * 4,
            "row_number": [2, 3, 4, 5],
            "audio_sha256": [f"{i}" * 64 for i in range(4)],
            "label": [0, 1, 0, 1],
            "shard": ["s@x.int16"] * 4,
            "sample_offset": [o for o, _ in spans],
            "samples": [n for _, n in spans],
        }
    )
    recordings = build_recordings(rows, tmp_path)
    bank = NoiseBank(torch.randn(300_000, generator=torch.Generator().manual_seed(9)) * 0.2)
    noise = published_noise(bank, recordings)
    generators = noise.rngs([0, 1, 2, 3])
    expected = [random.Random(42 * i) for i in range(4)]
    assert [g.random() for g in generators] == [e.random() for e in expected]
    assert noise.config.k_control == 1 and noise.config.k_patient == 0


def test_checkpoints_are_chosen_on_noisy_validation_every_n_steps(materialized_root: Path) -> None:
    from spira_assets_tests.test_ml import noise_bank, windows_by_split

    sets = windows_by_split(materialized_root)
    config = profile_config(
        SPIRA_ACL2021, max_epochs=1, warmup_steps=5, validate_every_steps=2, batch_size=2,
        window_rule="platform",  # the 8-person corpus has short clips
    )  # fmt: skip
    bank = noise_bank(materialized_root)
    device = torch.device("cpu")
    first = train(sets["train"], sets["validation"], FeatureConfig(), bank, config, 3, device)
    again = train(sets["train"], sets["validation"], FeatureConfig(), bank, config, 3, device)
    assert first.best_val_loss == again.best_val_loss  # fresh draws, but seeded
    assert first.best_step > 0  # a mid-epoch validation may hold the best checkpoint
    clean = profile_config(
        SPIRA_ACL2021, max_epochs=1, warmup_steps=5, validate_every_steps=2, batch_size=2,
        window_rule="platform", validation_noise=False,
    )  # fmt: skip
    quiet = train(sets["train"], sets["validation"], FeatureConfig(), bank, clean, 3, device)
    assert quiet.best_val_loss != first.best_val_loss  # the noise reached validation
    # the published threshold is SPIRA's 0.5 whatever validation says
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.7, 0.8, 0.9, 0.95])
    point = choose_operating_point(
        config.threshold_rule, {"clean": (labels, scores)}, 0.9, config.fixed_threshold
    )
    assert (point.rule, point.threshold) == ("fixed", 0.5)
