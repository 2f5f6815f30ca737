"""Training instances cut from the 16 kHz waveform store: 4 s windows every 1 s.

Windows are assembled from memory-mapped int16 shards into a float batch on the host, moved to
the device, and turned into noisy features there (``features.augment``), so the CPU only
slices memory and the device does the arithmetic.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from spira_assets.features.windows import window_starts
from spira_assets.storage.shards import open_shard


@dataclass(frozen=True)
class WindowSet:
    recordings: pl.DataFrame  # one row per recording (audio_16k columns + split)
    shards: tuple[np.ndarray, ...]
    shard: np.ndarray  # per window: index into ``shards``
    start: np.ndarray  # per window: absolute first sample in its shard
    available: np.ndarray  # per window: samples of the recording from ``start``
    recording: np.ndarray  # per window: row of ``recordings``
    labels: np.ndarray  # per window
    window_samples: int

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def waves(self, rows: np.ndarray) -> torch.Tensor:
        """Float32 windows (len(rows) x window_samples), zero-padded past a clip's end."""
        out = np.zeros((len(rows), self.window_samples), dtype=np.float32)
        for i, row in enumerate(rows):
            take = min(int(self.available[row]), self.window_samples)
            source = self.shards[self.shard[row]]
            start = int(self.start[row])
            out[i, :take] = source[start : start + take]
        return torch.from_numpy(out / 32768.0)

    def seeds(self, rows: np.ndarray, salt: int = 0) -> list[int]:
        """A fixed seed per window (recording hash + start), for the noisy test set."""
        shas = self.recordings.get_column("audio_sha256")
        return [
            zlib.crc32(f"{salt}:{shas[int(self.recording[r])]}:{self.start[r]}".encode())
            for r in rows
        ]


def build_windows(
    recordings: pl.DataFrame,
    root: Path,
    window_s: float = 4.0,
    step_s: float = 1.0,
    sample_rate: int = 16_000,
) -> WindowSet:
    """Every window of every recording in ``recordings`` (rows of the audio_16k table)."""
    window, step = round(window_s * sample_rate), round(step_s * sample_rate)
    names = sorted(set(recordings.get_column("shard").to_list()))
    maps = tuple(open_shard(root / name, np.int16) for name in names)
    position = {name: i for i, name in enumerate(names)}
    shard, start, available, recording, labels = [], [], [], [], []
    rows = recordings.select("shard", "sample_offset", "samples", "label").iter_rows()
    for index, (name, offset, samples, label) in enumerate(rows):
        for first in window_starts(samples, window, step):
            shard.append(position[name])
            start.append(offset + first)
            available.append(samples - first)
            recording.append(index)
            labels.append(label)
    return WindowSet(
        recordings=recordings,
        shards=maps,
        shard=np.asarray(shard, dtype=np.int64),
        start=np.asarray(start, dtype=np.int64),
        available=np.asarray(available, dtype=np.int64),
        recording=np.asarray(recording, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
        window_samples=window,
    )
