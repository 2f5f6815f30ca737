"""Training inputs read from the lake: recordings with their split, windows per split, and the
hospital noise bank. Shared by the training asset, sweeps and reproduction (no Dagster)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from spira_assets.features.augment import NoiseBank
from spira_assets.layout import DataLayout
from spira_assets.ml.data import WindowSet, build_windows
from spira_assets.ml.split import SPLITS
from spira_assets.storage.lake import Lake
from spira_assets.storage.shards import open_shard
from spira_assets.storage.tables import AUDIO_16K, DATASET_SPLIT, HOSPITAL_NOISE, UNPARTITIONED


def recordings_with_split(lake: Lake) -> pl.DataFrame:
    """Every 16 kHz recording of every batch with its participant's split."""
    split = lake.read_part(DATASET_SPLIT, UNPARTITIONED).select("participant", "split")
    return lake.read_table(AUDIO_16K).join(split, on="participant")


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
