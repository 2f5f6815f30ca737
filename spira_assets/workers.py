"""Ordered, bounded maps over worker processes.

Decoding and measuring audio is CPU-bound and part of it holds the GIL (numpy on small
blocks, the Python loop around libsndfile), so threads gave 1.18x on 2 cores where processes
give close to 2x. The pool is created on first use and kept for the life of the process (and
of its environment): starting workers costs a fraction of a second, which a single batch
should not pay every time. Workers are spawned (never ``fork``: the caller may hold threads,
Dagster's, and torch's OpenMP pool, which a forked child must not inherit), and not from the
forkserver either: a process has one forkserver, which Dagster's multiprocess executor
preloads with the definitions for its step processes and whose environment is frozen when it
starts. Decode workers that started it first (an in-process ``raw_audio``) left later step
processes with their preload and without later environment (a PostgreSQL instance's
credentials): the PostgreSQL and object-storage tests caught it.
"""

from __future__ import annotations

import hashlib
import importlib
import multiprocessing
import multiprocessing.util
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

# What each worker imports when it starts: the per-file work of raw_audio and audio_16k (no
# polars, torch or Dagster).
PRELOAD = ["spira_assets.ingest.inspect", "spira_assets.audio.store"]

_POOLS: dict[tuple[int, str], ProcessPoolExecutor] = {}


def _environment_key() -> str:
    return hashlib.sha256(repr(sorted(os.environ.items())).encode()).hexdigest()


def _exit_with(parent: int, environment: dict[str, str]) -> None:
    """Worker initializer: take the environment of the process that made the pool, import the
    per-file modules, and leave when that process is gone (each worker holds the write end of
    its own task queue, so without this a killed caller, ``kill -9`` or an out-of-memory kill,
    would leave its workers waiting forever)."""
    os.environ.clear()
    os.environ.update(environment)
    for module in PRELOAD:
        importlib.import_module(module)

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
    """The pool of ``workers`` processes for the current environment (a changed environment,
    e.g. other credentials, gets fresh workers that carry it)."""
    key = (workers, _environment_key())
    pool = _POOLS.get(key)
    if pool is None:
        for stale in [k for k in _POOLS if k[0] == workers]:
            _POOLS.pop(stale).shutdown(wait=False, cancel_futures=True)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_exit_with,
            initargs=(os.getpid(), dict(os.environ)),
        )
        _POOLS[key] = pool
        # A multiprocessing child (a Dagster step process) ends through multiprocessing's exit
        # function, which joins every child process before the interpreter's own exit hooks
        # run: without this finalizer the step process waits forever for workers that were
        # never told to stop. Priority 20: before the queues' own close finalizers (10), which
        # would stop the pool's feeder thread before the stop messages are sent.
        multiprocessing.util.Finalize(None, shutdown_pools, exitpriority=20)
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
        # a worker died (killed, out of memory): start afresh next time
        _POOLS.pop((workers, _environment_key()), None)
        raise
    finally:
        for future in pending:
            future.cancel()
