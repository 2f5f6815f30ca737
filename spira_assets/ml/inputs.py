"""Training inputs read from the lake: recordings with their split, windows per split, and the
hospital noise bank. Shared by the training asset, sweeps and reproduction (no Dagster)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.features.augment import NoiseBank
from spira_assets.layout import DataLayout
from spira_assets.ml.artifacts import SPLIT
from spira_assets.ml.data import WindowSet, build_windows
from spira_assets.ml.split import SPLITS
from spira_assets.storage.lake import Lake
from spira_assets.storage.shards import open_shard
from spira_assets.storage.tables import AUDIO_16K, DATASET_SPLIT, HOSPITAL_NOISE, UNPARTITIONED

MODEL_SPLIT_FILE = SPLIT


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


def model_split(directory: Path) -> pl.DataFrame:
    """The split a model version was trained with (``split.parquet`` in its folder)."""
    path = directory / MODEL_SPLIT_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the model's recorded split is needed to judge it only on "
            "people it never saw (retrain it with this version of the platform)"
        )
    return pl.read_parquet(path)


def local_shards(layout: DataLayout, recordings: pl.DataFrame) -> Path:
    """Make every shard the recordings point to local (a no-op for a local root); returns the
    folder their ``shard`` paths are relative to."""
    layout.fetch_many(recordings.get_column("shard").unique().to_list())
    return layout.local_root


def windows_by_split(
    recordings: pl.DataFrame,
    root: Path,
    window_s: float,
    step_s: float,
    splits: tuple[str, ...] = SPLITS,
) -> dict[str, WindowSet]:
    return {
        split: build_windows(recordings.filter(pl.col("split") == split), root, window_s, step_s)
        for split in splits
    }


def noise_bank(
    lake: Lake, layout: DataLayout, device: torch.device | str, shard: str | None = None
) -> NoiseBank | None:
    """The hospital noise bank (a given shard, or the current one); None without noise."""
    if shard is None:
        noise = lake.read_table(HOSPITAL_NOISE)
        if noise.is_empty():
            return None
        shard = str(noise.get_column("shard")[0])
    return NoiseBank.from_int16(open_shard(layout.fetch(shard), np.int16), device)
