"""Records which stored data a step reads, by asset: the instrument of the undeclared-read test.

Python-level opens for reading (``open``, ``np.memmap``, ``Path.read_bytes``, ``torch.export``
archives) and directory listings are seen through an audit hook; Parquet parts, which polars
opens in Rust, through ``Lake``'s one read function. Each path under the data root is mapped to
the asset whose data it is; bookkeeping that is no asset's data (the MLflow store, the DuckDB
catalog, staging) is ignored, and a path that fits neither is reported, so a new storage area
cannot escape the test unclassified.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spira_assets.monitoring.tables import MONITORING_TABLES
from spira_assets.storage import lake as lake_module
from spira_assets.storage.tables import ALL_TABLES

TABLES = {spec.name for spec in (*ALL_TABLES, *MONITORING_TABLES)}
IGNORED = ("mlflow.db", "mlartifacts", "mlruns", "warehouse.duckdb", "staging", ".staging")
AREAS = {
    ("waveforms", "landed"): "raw_audio_16k",
    ("waveforms", "16k"): "audio_16k",
    ("waveforms", "noise"): "hospital_noise",
}

_active: list[set[Path]] = []
_listed: list[set[Path]] = []
_hooked = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _active:
        return
    if event == "open":
        path, mode, flags = args
        reading = (mode is None and (flags or 0) & os.O_ACCMODE == os.O_RDONLY) or (
            isinstance(mode, str) and mode.startswith("r") and "+" not in mode
        )
        if reading and isinstance(path, str | bytes | os.PathLike):
            _active[-1].add(Path(os.fsdecode(path)))
    elif event in ("os.listdir", "os.scandir") and isinstance(args[0], str | bytes | os.PathLike):
        _listed[-1].add(Path(os.fsdecode(args[0])))


@contextmanager
def recording() -> Iterator[set[Path]]:
    """Every path opened for reading or listed while the block runs."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_hook)  # cannot be removed: inert while nothing records
        _hooked = True
    original = lake_module._read
    paths: set[Path] = set()

    def read(path: Any) -> Any:
        paths.add(Path(str(path)))
        return original(path)

    lake_module._read = read
    listed: set[Path] = set()
    _active.append(paths)
    _listed.append(listed)
    try:
        yield paths
    finally:
        _active.pop()
        _listed.pop()
        lake_module._read = original
        # a listing is a read of a folder's content (the landing zone), except in the lake,
        # where every step's catalog refresh lists every table; its reads go through _read
        paths |= {p for p in listed if "lake" not in p.parts}


def partition_of(root: Path, path: Path) -> str | None:
    """The batch whose data ``path`` is, where the path names one: a lake part
    (``<table>/[<sub>/]<batch>.parquet``), a shard (``<batch>@<token>``), a landing folder; None
    for what belongs to no one batch (the raw store, models, reports)."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return None
    if len(parts) < 2 or parts[0] in ("raw", "models", "reports"):
        return None
    if parts[0] == "landing":
        return None if parts[1] in ("noise", "outcomes") else parts[1]
    if parts[0] in ("lake", "waveforms", "features") and len(parts) >= 3:
        return parts[-1].partition("@")[0].removesuffix(".parquet")
    return None


def asset_of(root: Path, path: Path) -> str | None:
    """The asset whose data ``path`` is; None for bookkeeping; ``?<path>`` when unknown."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return None  # outside the data root: code, libraries, temporary files
    if not parts or parts[0] in IGNORED or parts[0].startswith("."):
        return None
    head = parts[0]
    if head == "landing":
        folders = {"noise": "landing_noise", "outcomes": "landing_outcomes"}
        return folders.get(parts[1], "landing_batch") if len(parts) > 1 else "landing_batch"
    if head == "predictions":  # the log every scorer appends to
        return "prediction_log"
    if head == "raw":
        return "raw_audio"  # the content-addressed copies raw_audio makes
    if head == "lake":
        if len(parts) == 1:
            return None
        return parts[1] if parts[1] in TABLES else f"?{path}"
    if head == "waveforms":
        return AREAS.get(tuple(parts[:2]), None if len(parts) == 1 else f"?{path}")
    if head == "features":
        return "spectrogram_features"
    if head == "models":
        return "spira_model"
    if head == "reports":
        return "evaluation_report"
    if head == "sweeps":  # a trial's results are its own; the plan is what `spira sweep` asked
        return "sweep_trial" if "results" in parts else None
    return f"?{path}"
