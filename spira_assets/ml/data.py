"""Recordings of one split, read from the memory-mapped 16 kHz waveform store, and (where the
feature store has them) their clean spectrogram frames.

A training batch is a handful of *recordings* with all their windows (SPIRA: 5): noise is
inserted into the whole recording before windowing, so the recording, not the window, is the
unit the data layer hands out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from spira_assets.storage.shards import open_shard


@dataclass(frozen=True)
class StoredFrames:
    """Clean frames of recordings from the feature store (``spectrogram_features``)."""

    maps: tuple[np.ndarray, ...]
    shard: np.ndarray  # per recording: index into ``maps``
    offset: np.ndarray  # per recording: first frame
    frames: np.ndarray  # per recording: frame count

    def get(self, rows: Sequence[int], device: torch.device) -> list[torch.Tensor]:
        return [
            torch.from_numpy(
                np.array(self.maps[self.shard[r]][self.offset[r] : self.offset[r] + self.frames[r]])
            ).to(device)
            for r in rows
        ]


@dataclass(frozen=True)
class RecordingSet:
    recordings: pl.DataFrame  # audio_16k rows (plus split), one per recording
    shards: tuple[np.ndarray, ...]
    shard: np.ndarray  # per recording: index into ``shards``
    offset: np.ndarray  # per recording: first sample in its shard
    samples: np.ndarray  # per recording: length in samples
    labels: np.ndarray
    stored: StoredFrames | None = None  # clean frames, when the feature store has them

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def waves(self, rows: Sequence[int]) -> list[torch.Tensor]:
        """Float32 waveforms in [-1, 1) (int16 / 32768, as SPIRA's loader reads PCM)."""
        return [
            torch.from_numpy(
                self.shards[self.shard[r]][
                    self.offset[r] : self.offset[r] + self.samples[r]
                ].astype(np.float32)
                / 32768.0
            )
            for r in rows
        ]

    def subset(self, rows: Sequence[int]) -> RecordingSet:
        index = np.asarray(rows, dtype=np.int64)
        stored = (
            StoredFrames(
                self.stored.maps,
                self.stored.shard[index],
                self.stored.offset[index],
                self.stored.frames[index],
            )
            if self.stored is not None
            else None
        )
        return RecordingSet(
            self.recordings[index.tolist()] if len(index) else self.recordings.clear(),
            self.shards,
            self.shard[index],
            self.offset[index],
            self.samples[index],
            self.labels[index],
            stored,
        )


def build_recordings(recordings: pl.DataFrame, root: Path) -> RecordingSet:
    """The recordings of ``recordings`` (rows of the audio_16k table) over their shards."""
    names = sorted(set(recordings.get_column("shard").to_list()))
    maps = tuple(open_shard(root / name, np.int16) for name in names)
    position = {name: i for i, name in enumerate(names)}
    return RecordingSet(
        recordings=recordings,
        shards=maps,
        shard=np.asarray([position[n] for n in recordings.get_column("shard")], dtype=np.int64),
        offset=recordings.get_column("sample_offset").to_numpy().astype(np.int64),
        samples=recordings.get_column("samples").to_numpy().astype(np.int64),
        labels=recordings.get_column("label").to_numpy().astype(np.int64),
    )


def with_stored_frames(
    recordings: RecordingSet, index: pl.DataFrame, root: Path, n_features: int
) -> RecordingSet:
    """Attach the feature store's clean frames (``spectrogram_features`` rows of one
    configuration) when it holds every recording of the set; otherwise return the set as is
    (its clean windows are then computed)."""
    keyed = recordings.recordings.select("batch_id", "audio_sha256").join(
        index.select("batch_id", "audio_sha256", "shard", "frame_offset", "frames"),
        on=["batch_id", "audio_sha256"],
        how="left",
        maintain_order="left",
    )
    if keyed.get_column("shard").null_count() or keyed.height != len(recordings):
        return recordings
    names = sorted(set(keyed.get_column("shard").to_list()))
    maps = tuple(open_shard(root / n, np.float32, n_features) for n in names)
    position = {name: i for i, name in enumerate(names)}
    stored = StoredFrames(
        maps,
        np.asarray([position[n] for n in keyed.get_column("shard")], dtype=np.int64),
        keyed.get_column("frame_offset").to_numpy().astype(np.int64),
        keyed.get_column("frames").to_numpy().astype(np.int64),
    )
    return RecordingSet(
        recordings.recordings,
        recordings.shards,
        recordings.shard,
        recordings.offset,
        recordings.samples,
        recordings.labels,
        stored,
    )
