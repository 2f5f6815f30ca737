"""audio_16k, hospital_noise and spectrogram_features materialized through Dagster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch

from spira_assets.app.runner import materialize_batch, materialize_shared
from spira_assets.assets.features import spectrogram_features
from spira_assets.audio.resample import from_int16
from spira_assets.features.config import FeatureConfig, WindowConfig
from spira_assets.features.dataset import StoredFeatureWindows
from spira_assets.resources import ComputeResource, FeatureSettings, StorageResource
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.shards import open_shard
from spira_assets.storage.tables import AUDIO_16K, SPECTROGRAM_FEATURES
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.conftest import data_root_with

DEFAULT_HASH = FeatureConfig().config_hash()


@pytest.fixture
def layout(tmp_path: Path, clean_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> DataLayout:
    layout = data_root_with(tmp_path, clean_corpus)
    monkeypatch.setenv("SPIRA_DATA_DIR", str(layout.root))
    return layout


def files_under(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


def test_features_read_back_equal_the_reference_transform_of_the_stored_audio(
    layout: DataLayout,
) -> None:
    assert materialize_batch(dg.DagsterInstance.ephemeral(), layout, "demo-001").ok
    lake = Lake(layout.lake)
    audio = lake.read_part(AUDIO_16K, "demo-001").sort("audio_sha256")
    features = lake.read_part(SPECTROGRAM_FEATURES, "demo-001", sub=DEFAULT_HASH).sort(
        "audio_sha256"
    )
    assert audio.height == features.height == 16
    assert (audio.get_column("audio_sha256") == features.get_column("audio_sha256")).all()
    samples = open_shard(layout.local(audio.get_column("shard")[0]), np.int16)
    frames = open_shard(layout.local(features.get_column("shard")[0]), np.float32, 40)
    reference = FeatureConfig().build_transform()
    for a, f in zip(audio.iter_rows(named=True), features.iter_rows(named=True), strict=True):
        clip = from_int16(samples[a["sample_offset"] : a["sample_offset"] + a["samples"]])
        expected = reference(torch.from_numpy(clip)).T.numpy()
        stored = frames[f["frame_offset"] : f["frame_offset"] + f["frames"]]
        np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-4)


def test_16k_audio_keeps_duration_and_labels_of_validated_metadata(layout: DataLayout) -> None:
    materialize_batch(dg.DagsterInstance.ephemeral(), layout, "demo-001")
    joined = Warehouse(layout.warehouse, Lake(layout.lake)).query(
        "SELECT a.duration_s AS d16, v.duration_s AS d, a.label = v.label AS same_label "
        "FROM audio_16k a JOIN validated_metadata v USING (batch_id, audio_sha256)"
    )
    assert joined.height == 16 and joined.get_column("same_label").all()
    assert (joined.get_column("d16") - joined.get_column("d")).abs().max() < 0.001


def test_a_new_batch_leaves_every_file_of_earlier_batches_untouched(layout: DataLayout) -> None:
    instance = dg.DagsterInstance.ephemeral()
    materialize_batch(instance, layout, "demo-001")
    root = Path(str(layout.root))
    before = {k: v for k, v in files_under(root).items() if "demo-001" in k}
    assert len(before) >= 6
    materialize_batch(instance, layout, "demo-002")
    after = files_under(root)
    assert {k: after[k] for k in before} == before
    assert any("demo-002" in k for k in after)


def test_another_feature_config_is_stored_side_by_side(layout: DataLayout) -> None:
    instance = dg.DagsterInstance.ephemeral()
    materialize_batch(instance, layout, "demo-001")
    lake = Lake(layout.lake)
    default_before = lake.read_part(SPECTROGRAM_FEATURES, "demo-001", sub=DEFAULT_HASH)
    result = dg.materialize(
        [spectrogram_features],
        partition_key="demo-001",
        instance=instance,
        resources={
            "storage": StorageResource(),
            "features": FeatureSettings(kind="mel"),
            "compute": ComputeResource(device="cpu"),
        },
    )
    assert result.success
    mel_hash = FeatureConfig(kind="mel").config_hash()
    mel = lake.read_part(SPECTROGRAM_FEATURES, "demo-001", sub=mel_hash)
    assert mel.get_column("feature_kind").unique().to_list() == ["mel"]
    assert lake.read_part(SPECTROGRAM_FEATURES, "demo-001", sub=DEFAULT_HASH).equals(default_before)
    hashes = (
        Warehouse(layout.warehouse, lake)
        .query("SELECT DISTINCT config_hash FROM spectrogram_features ORDER BY 1")
        .to_series()
        .to_list()
    )
    assert hashes == sorted([DEFAULT_HASH, mel_hash])


def test_stored_windows_match_the_indexed_window_counts(layout: DataLayout) -> None:
    materialize_batch(dg.DagsterInstance.ephemeral(), layout, "demo-001")
    index = Lake(layout.lake).read_part(SPECTROGRAM_FEATURES, "demo-001", sub=DEFAULT_HASH)
    dataset = StoredFeatureWindows(index, Path(str(layout.root)), FeatureConfig(), WindowConfig())
    assert len(dataset) == index.get_column("windows").sum()
    window, label, _ = dataset[len(dataset) - 1]
    assert window.shape == (400, 40) and label in (0, 1)


def test_noise_is_prepared_and_a_corrupt_noise_file_is_quarantined(layout: DataLayout) -> None:
    (Path(str(layout.noise)) / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    assert materialize_shared(dg.DagsterInstance.ephemeral()).ok
    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    noise = warehouse.query("SELECT source, samples FROM hospital_noise")
    assert noise.height == 1 and noise.get_column("samples")[0] == 12 * 16_000
    rules = warehouse.query("SELECT item, rule FROM quarantine WHERE stage = 'hospital_noise'")
    assert rules.rows() == [("broken.wav", "truncated")] or rules.get_column("item").to_list() == [
        "broken.wav"
    ]
    shard = layout.local(
        pl.Series(warehouse.query("SELECT shard FROM hospital_noise").to_series()).item()
    )
    assert open_shard(shard, np.int16).shape == (12 * 16_000,)
