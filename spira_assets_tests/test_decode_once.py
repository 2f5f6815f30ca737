"""Decode once: raw_audio's decode feeds the 16 kHz store; audio_16k copies, never re-decodes
while that PCM is there; worker processes change nothing; the resampler is soxr, versioned."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import soundfile as sf
import soxr
import torch
import torchaudio
from upath import UPath

from spira_assets.app.runner import materialize_batch
from spira_assets.audio.decode import decode_16k
from spira_assets.audio.quality import AudioQualityRules
from spira_assets.audio.resample import (
    LEGACY_RESAMPLER,
    RESAMPLER_VERSION,
    TORCHAUDIO_SINC,
    MonoResampler,
    stream_resampler,
    to_int16,
)
from spira_assets.features.config import FeatureConfig
from spira_assets.ingest.batch_source import BatchSource
from spira_assets.ingest.raw_audio import FirstOccurrence, ingest_raw_audio
from spira_assets.ml.artifacts import model_config, save_model_version
from spira_assets.ml.inference import Scorer
from spira_assets.ml.model import SpiraConv
from spira_assets.ml.train_config import TrainConfig
from spira_assets.privacy import Pseudonymizer
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.shards import open_shard
from spira_assets.storage.tables import AUDIO_16K, RAW_AUDIO_16K
from spira_assets.workers import shutdown_pools
from spira_assets_tests.conftest import data_root_with

RULES = AudioQualityRules()
NOW = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def layout(tmp_path: Path, clean_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> DataLayout:
    layout = data_root_with(tmp_path, clean_corpus)
    monkeypatch.setenv("SPIRA_DATA_DIR", str(layout.root))
    return layout


def stored_waveforms(layout: DataLayout, batch: str) -> dict[str, np.ndarray]:
    index = Lake(layout.lake).read_part(AUDIO_16K, batch)
    samples = open_shard(layout.local(index.get_column("shard")[0]), np.int16)
    return {
        sha: np.array(samples[offset : offset + n])
        for sha, offset, n in index.select("audio_sha256", "sample_offset", "samples").iter_rows()
    }


def test_audio_16k_copies_raw_audios_pcm_and_decodes_only_what_is_missing(
    layout: DataLayout,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_batch(instance, layout, "demo-001").ok
    before = stored_waveforms(layout, "demo-001")
    assert len(before) == 16
    lake = Lake(layout.lake)
    landed = lake.read_part(RAW_AUDIO_16K, "demo-001")
    assert set(landed.get_column("resampler")) == {RESAMPLER_VERSION}
    assert set(landed.get_column("audio_sha256")) == set(before)

    # the raw store copies gone: audio_16k still succeeds, so it did not decode them
    raw = Path(str(layout.raw_store))
    shutil.move(raw, raw.with_name("raw-away"))
    assert materialize_batch(instance, layout, "demo-001", select=("audio_16k",)).ok
    record = instance.get_latest_materialization_event(dg.AssetKey("audio_16k"))
    assert record is not None and record.asset_materialization is not None
    assert record.asset_materialization.metadata["decoded_again"].value == 0
    assert {k: v.tolist() for k, v in stored_waveforms(layout, "demo-001").items()} == {
        k: v.tolist() for k, v in before.items()
    }

    # PCM of an older resampler (or none: a batch ingested before this store) is decoded
    # again from the raw store, to the same samples
    shutil.move(raw.with_name("raw-away"), raw)
    lake.write_part(
        RAW_AUDIO_16K, "demo-001", landed.with_columns(pl.lit(TORCHAUDIO_SINC).alias("resampler"))
    )
    assert materialize_batch(instance, layout, "demo-001", select=("audio_16k",)).ok
    record = instance.get_latest_materialization_event(dg.AssetKey("audio_16k"))
    assert record is not None and record.asset_materialization is not None
    assert record.asset_materialization.metadata["decoded_again"].value == 16
    again = stored_waveforms(layout, "demo-001")
    assert all(np.array_equal(again[k], before[k]) for k in before)


def test_landed_pcm_is_the_one_decode_resampled_with_soxr(layout: DataLayout) -> None:
    assert materialize_batch(dg.DagsterInstance.ephemeral(), layout, "demo-001").ok
    raw = Lake(layout.lake).read_part(RAW_AUDIO_16K, "demo-001")
    uris = dict(
        pl.read_parquet(str(layout.lake / "validated_metadata" / "demo-001.parquet"))
        .select("audio_sha256", "raw_uri")
        .iter_rows()
    )
    shard = open_shard(layout.local(raw.get_column("shard")[0]), np.int16)
    for sha, offset, n in raw.select("audio_sha256", "sample_offset", "samples").iter_rows():
        data = (layout.root / uris[sha]).read_bytes()
        landed = shard[offset : offset + n]
        np.testing.assert_array_equal(landed, decode_16k(data, RULES)[1])
        # the same as decoding the whole file and resampling it at once with soxr (MP3 decoded
        # block by block differs from a whole-file decode by 1 LSB in a few samples)
        audio, rate = sf.read(io.BytesIO(data), dtype="float32")
        mono = audio.mean(axis=1) if audio.ndim == 2 else audio
        whole = to_int16(soxr.resample(mono, rate, 16_000, "HQ") if rate != 16_000 else mono)
        assert landed.shape == whole.shape
        assert np.abs(landed.astype(np.int32) - whole).max() <= 1


def test_worker_processes_give_the_same_outcomes_as_one_process(
    tmp_path: Path, defect_corpus: Path, pseudonymizer: Pseudonymizer
) -> None:
    """Every planted fault is judged the same, the raw-store copies and the accepted PCM are
    the same, whether one process or two worker processes decode: the corpus's defects plus
    NaN audio, a duplicate in the batch, one from an earlier batch, a text file, a dangling
    link and a pipe."""
    layout = data_root_with(tmp_path, defect_corpus)
    source = BatchSource.open(layout, "demo-001")
    folder = Path(str(source.directory))
    audio = sorted((folder / "audio").iterdir())
    nan = np.full(16_000, np.nan, dtype=np.float32)
    sf.write(folder / "nan.wav", nan, 16_000, subtype="FLOAT")
    shutil.copy(audio[0], folder / f"copy-in-batch{audio[0].suffix}")
    (folder / "notes.txt").write_text("not audio")
    (folder / "gone.wav").symlink_to(folder / "never-uploaded.wav")
    os.mkfifo(folder / "pipe.wav")
    earlier_sha = hashlib.sha256(audio[1].read_bytes()).hexdigest()
    elsewhere = {earlier_sha: FirstOccurrence("demo-000", "audio/first.wav")}
    results = {}
    for workers in (1, 2):
        pcm: dict[str, list[int]] = {}
        store = RawStore(UPath(tmp_path / f"raw-{workers}"))
        result = ingest_raw_audio(
            "demo-001", source.directory, store, RULES, pseudonymizer,
            source.redactor(pseudonymizer), NOW, workers=workers, elsewhere=elsewhere,
            pcm_sink=lambda sha, samples, pcm=pcm: pcm.setdefault(sha, samples.tolist()),
        )  # fmt: skip
        stored = sorted(p.name for p in Path(str(store.root)).rglob("*") if p.is_file())
        results[workers] = (result.table, result.quarantine, stored, pcm)
    shutdown_pools()
    (table1, quarantine1, stored1, pcm1), (table2, quarantine2, stored2, pcm2) = results.values()
    rules = set(quarantine1.get_column("rule"))
    assert rules >= {
        "non_finite", "duplicate_content", "unsupported_format", "dangling_link", "not_a_file",
        "truncated", "empty_file", "undecodable", "silent", "clipped", "too_short",
        "too_many_channels",
    }  # fmt: skip
    assert quarantine1.filter(pl.col("rule") == "duplicate_content").height == 2
    assert table1.equals(table2) and quarantine1.equals(quarantine2)
    assert stored1 == stored2 and pcm1 == pcm2
    assert set(pcm1) == set(table1.filter(pl.col("accepted")).get_column("audio_sha256"))


def tone(freq: float, rate: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_soxr_rejects_aliases_that_torchaudio_folds_into_the_band() -> None:
    """A 9 kHz tone at 48 kHz must vanish at 16 kHz (Nyquist 8 kHz), not fold to 7 kHz."""
    alias = tone(9_000, 48_000)

    def level_db(version: str) -> float:
        out = MonoResampler(16_000, version)(alias, 48_000)[1_600:-1_600]
        return float(10 * np.log10(np.mean(out**2) / np.mean(alias**2)))

    assert level_db(RESAMPLER_VERSION) < -100
    assert level_db(TORCHAUDIO_SINC) > -40  # what the old store let through


def test_streaming_resampling_equals_the_whole_file_at_once() -> None:
    audio = np.random.default_rng(0).normal(0, 0.1, 48_000 * 7).astype(np.float32)
    stream = stream_resampler(48_000, 16_000)
    parts = [stream.push(audio[i : i + 12_345]) for i in range(0, len(audio), 12_345)]
    streamed = np.concatenate([*parts, stream.finish()])
    np.testing.assert_array_equal(streamed, soxr.resample(audio, 48_000, 16_000, "HQ"))
    with pytest.raises(ValueError, match="unknown resampler"):
        stream_resampler(48_000, 16_000, "sinc-by-hand")


def test_a_model_is_scored_with_the_resampler_its_training_audio_was_made_with(
    tmp_path: Path,
) -> None:
    """New models name soxr; models saved before the resampler was recorded get torchaudio's,
    whose samples equal the old MonoResampler's (the audio they were trained on)."""
    features, train = FeatureConfig(), TrainConfig(dropout=0.0, input_scaling="none")
    frames = round(train.window_s * features.sample_rate / features.hop_length)
    state = SpiraConv(frames, features.n_features, train.norm, 0.0).state_dict()
    old_config = model_config(features, train, frames)
    del old_config["resampler"]
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([tone(300, 44_100, 5.0)] * 2, axis=1), 44_100, format="WAV")
    data = buffer.getvalue()
    for name, config, expected in (
        ("new", model_config(features, train, frames), RESAMPLER_VERSION),
        ("old", old_config, LEGACY_RESAMPLER),
    ):
        save_model_version(tmp_path / name, state, config, {}, {})
        scorer = Scorer(tmp_path / name)
        assert scorer.resampler == expected
        assert (
            json.loads((tmp_path / name / "model_config.json").read_text()).get(
                "resampler", LEGACY_RESAMPLER
            )
            == expected
        )
        score = scorer.audio(data, "tone.wav")
        assert score.error is None and score.probability is not None
    _, legacy = decode_16k(data, RULES, 16_000, LEGACY_RESAMPLER)
    audio, _ = sf.read(io.BytesIO(data), dtype="float32")
    kernel = torchaudio.transforms.Resample(44_100, 16_000)
    np.testing.assert_array_equal(
        legacy, to_int16(kernel(torch.from_numpy(audio.mean(axis=1))).numpy())
    )
