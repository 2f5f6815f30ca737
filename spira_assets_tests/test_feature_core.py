"""Feature configuration, extraction, windows and shards (no Dagster)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from spira_assets.features.config import FeatureConfig, WindowConfig
from spira_assets.features.extract import FeatureExtractor, FeatureStats
from spira_assets.features.windows import cut, instances, window_starts
from spira_assets.storage.shards import ShardWriter, open_shard, remove_superseded

# The default configuration's hash names every stored feature set; changing it silently
# would orphan them. Update only together with FEATURE_CODE_VERSION.
DEFAULT_HASH = "0ae2146f4fab"  # normalized=False since issue 17 (was 0b22deeaf6eb)


def test_default_config_is_spiras_and_its_hash_is_pinned() -> None:
    config = FeatureConfig()
    assert (config.n_mfcc, config.n_mels, config.n_fft, config.win_length, config.hop_length) == (
        40,
        40,
        1200,
        400,
        160,
    )
    assert config.config_hash() == DEFAULT_HASH


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "mel"},
        {"n_mfcc": 20},
        {"hop_length": 200},
        {"f_max": 8000.0},
        {"log_mels": True},
        {"normalized": True},
    ],
)
def test_any_change_that_alters_numbers_changes_the_hash(change: dict[str, object]) -> None:
    assert dataclasses.replace(FeatureConfig(), **change).config_hash() != DEFAULT_HASH  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"kind": "cqt"}, {"win_length": 2000}, {"n_mfcc": 80}])
def test_inconsistent_configs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FeatureConfig(**bad)  # type: ignore[arg-type]


def test_mfcc_matches_torchaudio_reference_with_spira_parameters() -> None:
    t = torch.arange(16_000 * 2) / 16_000
    clip = 0.4 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.sin(2 * torch.pi * 3000 * t)
    reference = torchaudio.transforms.MFCC(
        sample_rate=16_000,
        n_mfcc=40,
        log_mels=False,
        melkwargs={
            "n_fft": 1200,
            "win_length": 400,
            "hop_length": 160,
            "n_mels": 40,
            "f_min": 0.0,
            "f_max": None,
        },  # SPIRA's: no normalized STFT
    )(clip).T.numpy()
    (ours,) = FeatureExtractor(FeatureConfig()).batch([clip])
    assert ours.shape == (201, 40)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["mfcc", "mel", "linear"])
def test_batched_extraction_equals_per_clip_reference(kind: str) -> None:
    config = FeatureConfig(kind=kind)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(0)
    clips = [torch.randn(n, generator=generator) * 0.1 for n in (8_000, 16_000, 47_123, 640)]
    reference = config.build_transform()
    for ours, clip in zip(FeatureExtractor(config).batch(clips), clips, strict=True):
        expected = reference(clip).T.numpy()
        assert ours.shape == expected.shape == (config.frames_for(len(clip)), config.n_features)
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("chunk_frames", [1, 7, 100, 10_000])
def test_clips_split_across_chunks_still_equal_the_per_clip_reference(chunk_frames: int) -> None:
    """Chunks of frames cut through clips (a clip longer than a chunk, several clips in one):
    each clip's features are still torchaudio's transform of that clip alone."""
    generator = torch.Generator().manual_seed(1)
    clips = [torch.randn(n, generator=generator) * s for n, s in ((48_000, 0.3), (801, 1e-3))]
    clips.append(torch.randn(20_000, generator=generator) * 0.05)
    reference = FeatureConfig().build_transform()
    ours = FeatureExtractor(FeatureConfig(), chunk_frames=chunk_frames).batch(clips)
    for features, clip in zip(ours, clips, strict=True):
        np.testing.assert_allclose(features, reference(clip).T.numpy(), rtol=1e-5, atol=1e-4)


def test_running_statistics_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(3, 2, (n, 4)) for n in (10, 50, 7)]
    stats = FeatureStats(4)
    for part in parts:
        stats.add(part)
    whole = np.concatenate(parts)
    np.testing.assert_allclose(stats.mean(), whole.mean(axis=0))
    np.testing.assert_allclose(stats.std(), whole.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats.low, whole.min(axis=0))


@pytest.mark.parametrize(
    ("frames", "starts"),
    [
        (50, [0]),
        (400, [0]),
        (401, [0]),
        (500, [0, 100]),
        (800, [0, 100, 200, 300, 400]),
        (899, [0, 100, 200, 300, 400]),
    ],
)
def test_four_second_windows_with_one_second_step(frames: int, starts: list[int]) -> None:
    assert instances(frames, WindowConfig(), FeatureConfig()) == starts
    assert window_starts(frames, 400, 100) == starts


def test_short_clip_window_is_zero_padded_and_pad_mode_gives_one_instance() -> None:
    frames = np.ones((50, 3), dtype=np.float32)
    window = cut(frames, 0, 400)
    assert window.shape == (400, 3) and window[:50].all() and not window[50:].any()
    assert instances(5000, WindowConfig(mode="pad"), FeatureConfig()) == [0]


def test_shard_round_trip_is_exact_and_visible_only_after_commit(tmp_path: Path) -> None:
    path = tmp_path / "b@1.f32"
    arrays = [
        np.random.default_rng(i).normal(size=(n, 5)).astype(np.float32)
        for i, n in enumerate((3, 0, 11))
    ]
    with ShardWriter(path, np.float32, 5) as writer:
        spans = [writer.append(a) for a in arrays]
        assert not path.exists()
        writer.commit()
    data = open_shard(path, np.float32, 5)
    for (offset, length), array in zip(spans, arrays, strict=True):
        np.testing.assert_array_equal(data[offset : offset + length], array)


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "b@1.int16"
    with pytest.raises(RuntimeError), ShardWriter(path, np.int16) as writer:
        writer.append(np.zeros(10, np.int16))
        raise RuntimeError("crash mid-batch")
    assert list(tmp_path.iterdir()) == []


def test_superseded_shards_of_the_same_batch_only_are_removed(tmp_path: Path) -> None:
    for name in ("demo-001@old.int16", "demo-001@new.int16", "demo-001-x@old.int16"):
        (tmp_path / name).write_bytes(b"")
    remove_superseded(tmp_path / "demo-001@new.int16")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "demo-001-x@old.int16",
        "demo-001@new.int16",
    ]


def test_a_quiet_clip_does_not_depend_on_a_loud_neighbour() -> None:
    t = torch.arange(32_000) / 16_000
    quiet = torch.cat([torch.zeros(8_000), 0.001 * torch.sin(2 * torch.pi * 200 * t[:24_000])])
    loud = 0.9 * torch.sin(2 * torch.pi * 300 * t)
    extractor = FeatureExtractor(FeatureConfig())
    (alone,) = extractor.batch([quiet])
    together, _ = extractor.batch([quiet, loud])
    # a shared 80 dB floor would lift the quiet clip's values by tens of dB; what packing it
    # into other chunks may change is float32 rounding of the filterbank product (about 1e-6)
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-4)
    assert alone.min() == together.min()
