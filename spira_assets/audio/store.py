"""The 16 kHz mono int16 waveform store: shards of recordings, assembled without decoding.

``raw_audio`` writes the PCM of every file it accepts (``LandedPcm``), from the decode that
measured the file. ``audio_16k`` copies the recordings that ``validated_metadata`` kept from
that PCM into its own shard (``assemble_waveform_shard``). Only a recording whose PCM is
missing, or was made by another resampler version (a batch ingested before this store
existed, or before a change of resampler), is decoded again, from the raw store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from upath import UPath

from spira_assets.audio import TARGET_RATE
from spira_assets.audio.decode import decode_16k
from spira_assets.audio.quality import AudioDecodeError, AudioQualityRules
from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.storage.shards import ShardWriter, open_shard
from spira_assets.workers import ordered_map

# Only decoding matters when a stored recording is decoded again: it was judged at ingest.
_ANY_LENGTH = AudioQualityRules(max_duration_s=float("inf"))


class LandedPcm:
    """Collects raw_audio's accepted PCM into one shard; ``spans`` maps content hash to
    (offset, samples). The shard is named by its content only at ``commit``."""

    def __init__(self, staging_name: Path) -> None:
        self.writer = ShardWriter(staging_name, np.int16)
        self.spans: dict[str, tuple[int, int]] = {}

    def __call__(self, sha256: str, samples: np.ndarray) -> None:
        if sha256 not in self.spans:
            self.spans[sha256] = self.writer.append(samples)

    def commit(self, target: Path) -> Path:
        return self.writer.commit(target)

    def abort(self) -> None:
        self.writer.abort()


@dataclass(frozen=True)
class Recording:
    """One row of the store to assemble: its PCM in a landed shard if there is one."""

    sha256: str
    raw_path: UPath
    landed: tuple[Path, int, int] | None = None  # (local shard, offset, samples)


def decode_stored(path: UPath) -> np.ndarray:
    """The 16 kHz int16 waveform of a file of the raw store (the fallback: one more decode)."""
    try:
        return decode_16k(path.read_bytes(), _ANY_LENGTH, TARGET_RATE, RESAMPLER_VERSION)[1]
    except AudioDecodeError as error:
        raise RuntimeError(
            f"{path}: the raw store copy no longer decodes ({error}); restore it from the "
            "landing zone and re-materialize raw_audio"
        ) from error


def assemble_waveform_shard(
    recordings: Sequence[Recording],
    shard_path: Path,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[tuple[int, int]], int]:
    """Write every recording's waveform into one shard: (offset, samples) per recording, and
    how many had to be decoded again. Landed PCM is copied a recording at a time from its
    memory map, decoding runs on ``workers`` processes, so memory does not grow with the
    batch. The shard appears only when complete."""
    spans: list[tuple[int, int]] = [(0, 0)] * len(recordings)
    maps: dict[Path, np.ndarray] = {}
    again = [i for i, r in enumerate(recordings) if r.landed is None]
    with ShardWriter(shard_path, np.int16) as writer:
        done = 0
        for i, recording in enumerate(recordings):
            if recording.landed is None:
                continue
            shard, offset, length = recording.landed
            if shard not in maps:
                maps[shard] = open_shard(shard, np.int16)
            spans[i] = writer.append(maps[shard][offset : offset + length])
            done += 1
            if progress and done % 100 == 0:
                progress(done, len(recordings))
        decoded = ordered_map(decode_stored, [recordings[i].raw_path for i in again], workers)
        for i, samples in zip(again, decoded, strict=True):
            spans[i] = writer.append(samples)
            done += 1
            if progress and done % 100 == 0:
                progress(done, len(recordings))
        writer.commit()
    if progress:
        progress(len(recordings), len(recordings))
    return spans, len(again)
