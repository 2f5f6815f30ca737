"""Accepted recordings decoded once into a 16 kHz mono int16 shard (the waveform store)."""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
from upath import UPath

from spira_assets.audio.resample import MonoResampler, to_int16
from spira_assets.storage.shards import ShardWriter

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, in_flight: int | None = None
) -> Iterator[R]:
    """Like ``executor.map`` in order, but with at most ``in_flight`` results pending, so a
    large batch is never held in memory at once."""
    limit = in_flight or 2 * workers
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def decode_file(source: UPath) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(source.read_bytes()), dtype="float32", always_2d=False)
    return audio, int(rate)


def write_waveform_shard(
    sources: Sequence[UPath],
    shard_path: Path,
    resampler: MonoResampler,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[int, int]]:
    """Decode, downmix and resample each source in order; returns (offset, samples) per source.

    Decoding (soundfile, releases the GIL) runs on ``workers`` threads; resampling runs on the
    calling thread with torch's own threads. The shard appears only when complete."""
    spans: list[tuple[int, int]] = []
    with ShardWriter(shard_path, np.int16) as writer:
        decoded = bounded_map(decode_file, sources, workers)
        for index, (audio, rate) in enumerate(decoded, 1):
            spans.append(writer.append(to_int16(resampler(audio, rate))))
            if progress and (index % 100 == 0 or index == len(sources)):
                progress(index, len(sources))
        writer.commit()
    return spans
