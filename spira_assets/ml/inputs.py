"""Training inputs read from the lake: recordings with their split, windows per split, and the
hospital noise bank. Shared by the training asset, sweeps and reproduction (no Dagster)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.features.augment import NoiseBank
from spira_assets.ml.data import RecordingSet, build_recordings, with_stored_frames
from spira_assets.ml.split import SPLITS
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.shards import open_shard
from spira_assets.storage.tables import (
    AUDIO_16K,
    DATASET_SPLIT,
    HOSPITAL_NOISE,
    SPECTROGRAM_FEATURES,
    UNPARTITIONED,
)


def with_split(recordings: pl.DataFrame, split: pl.DataFrame) -> pl.DataFrame:
    """``audio_16k`` rows that are in ``split`` (a ``dataset_split`` table or a model's
    recorded split), with their split: matched by batch and content, so a recording never
    enters through its participant from a batch the split left out."""
    keys = split.select(pl.col("source_batch").alias("batch_id"), "audio_sha256", "split").unique(
        ["batch_id", "audio_sha256"]
    )
    # a fixed order (a join's is not): training walks recordings in this order, and a model
    # is reproduced bit for bit only if it sees them in the same order again
    joined = recordings.join(keys, on=["batch_id", "audio_sha256"], how="inner")
    return joined.sort("batch_id", "sample_offset", "audio_sha256")


def training_resampler(recordings: pl.DataFrame) -> str:
    """The resampler that made most of the training audio (all of it, unless some batches
    were stored before a change of resampler): inference decodes uploads with it."""
    counts = (
        recordings.group_by("resampler")
        .agg(pl.col("samples").sum())
        .sort("samples", "resampler", descending=True)
    )
    return str(counts.get_column("resampler")[0]) if counts.height else RESAMPLER_VERSION


def recordings_with_split(lake: Lake) -> pl.DataFrame:
    """Every 16 kHz recording in the current ``dataset_split``, with its split."""
    return with_split(lake.read_table(AUDIO_16K), lake.read_part(DATASET_SPLIT, UNPARTITIONED))


def local_shards(layout: DataLayout, recordings: pl.DataFrame) -> Path:
    """Make every shard the recordings point to local (a no-op for a local root); returns the
    folder their ``shard`` paths are relative to."""
    layout.fetch_many(recordings.get_column("shard").unique().to_list())
    return layout.local_root


def recordings_by_split(
    recordings: pl.DataFrame,
    root: Path,
    splits: tuple[str, ...] = SPLITS,
    features_index: pl.DataFrame | None = None,
    n_features: int = 40,
) -> dict[str, RecordingSet]:
    """The recordings of each split; with ``features_index`` (``spectrogram_features`` rows of
    the model's feature configuration), their clean frames come from the feature store."""
    out = {}
    for split in splits:
        chosen = build_recordings(recordings.filter(pl.col("split") == split), root)
        if features_index is not None:
            chosen = with_stored_frames(chosen, features_index, root, n_features)
        out[split] = chosen
    return out


def stored_features(lake: Lake, layout: DataLayout, config_hash: str) -> pl.DataFrame | None:
    """The feature store's index for one configuration (its shards made local), or None."""
    index = lake.read_table(SPECTROGRAM_FEATURES).filter(pl.col("config_hash") == config_hash)
    if index.is_empty():
        return None
    layout.fetch_many(index.get_column("shard").unique().to_list())
    return index


def noise_files(lake: Lake, shard: str | None = None) -> pl.DataFrame:
    """The ``hospital_noise`` rows of one shard (default: the current one), in shard order."""
    rows = lake.read_table(HOSPITAL_NOISE)
    if rows.is_empty():
        return rows
    shard = shard or str(rows.get_column("shard")[0])
    return rows.filter(pl.col("shard") == shard).sort("sample_offset")


def noise_bank(
    lake: Lake,
    layout: DataLayout,
    device: torch.device | str,
    shard: str | None = None,
    spans: list[tuple[int, int]] | None = None,
) -> NoiseBank | None:
    """The hospital noise bank, file by file: ``spans`` (a run's recorded or chosen files)
    of ``shard``, else every file the table lists for it (default: the current shard; a shard
    the table no longer lists is one file); None without noise."""
    if spans is None:
        rows = noise_files(lake, shard)
        if not rows.is_empty():
            shard = str(rows.get_column("shard")[0])
            spans = [
                (int(o), int(n)) for o, n in rows.select("sample_offset", "samples").iter_rows()
            ]
    if shard is None:
        return None
    return NoiseBank.from_int16(open_shard(layout.fetch(shard), np.int16), spans, device)
