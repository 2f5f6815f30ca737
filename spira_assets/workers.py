"""Ordered, bounded maps over worker processes.

Decoding and measuring audio is CPU-bound and part of it holds the GIL (numpy on small
blocks, the Python loop around libsndfile), so threads gave 1.18x on 2 cores where processes
give close to 2x. The pool is created on first use and kept for the life of the process: a
forkserver start costs a fraction of a second, which a single batch should not pay every time.
Workers are started from a fresh forkserver (never ``fork``): the caller may hold threads
(Dagster's) and torch's OpenMP pool, which a forked child must not inherit.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# What the forkserver imports once for every worker it forks: the per-file work of raw_audio
# and audio_16k (no polars, torch or Dagster). It replaces the default, ``__main__``, which for
# the ``spira`` or ``dagster`` command would import the whole CLI in the server first.
PRELOAD = ["spira_assets.ingest.inspect", "spira_assets.features.waveforms"]

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _exit_with(parent: int) -> None:
    """Worker initializer: leave when the process that made the pool is gone. A worker's
    parent is the forkserver, and each worker holds the write end of its own task queue, so
    without this a killed caller (``kill -9``, an out-of-memory kill) would leave the server and
    its workers waiting forever."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, someone else's
                pass

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    pool = _POOLS.get(workers)
    if pool is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)  # no effect once this process's server runs
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_exit_with,
            initargs=(os.getpid(),),
        )
        _POOLS[workers] = pool
    return pool


def worker_pids() -> list[int]:
    """Process ids of the live workers (for measurements such as their peak memory)."""
    return [pid for pool in _POOLS.values() for pid in (pool._processes or {})]


def shutdown_pools() -> None:
    """Stop every worker process (benchmarks measure a cold start; tests clean up)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, in_flight: int | None = None
) -> Iterator[R]:
    """``map(fn, items)`` in order on ``workers`` processes (in this process when 1), with at
    most ``in_flight`` results pending so a large batch is never held in memory at once.
    ``fn`` and the items must be picklable."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = process_pool(workers)
    limit = in_flight or 2 * workers
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        _POOLS.pop(workers, None)  # a worker died (killed, out of memory): start afresh next time
        raise
    finally:
        for future in pending:
            future.cancel()
