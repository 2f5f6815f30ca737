"""Append-only binary shards: many variable-length arrays in one memory-mappable file.

A shard is a flat file of fixed-size rows (``int16`` samples, or ``float32`` feature frames of
a fixed width). Writers append array after array, streaming (memory stays flat however large
the batch), and publish the file with an atomic rename on ``commit``; an index table records
each array's ``offset`` and ``length`` in rows. Readers map the file and slice it without
copying, which is what makes an epoch over stored features cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from spira_assets.storage.layout import DataLayout
from spira_assets.storage.staging import remove_stale_staging, staging_path


class ShardWriter:
    def __init__(self, path: Path, dtype: npt.DTypeLike, row_width: int | None = None) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_width = row_width
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        # leftovers of killed writers of any version of this shard (``<name>@<token>``)
        remove_stale_staging(path.parent, path.name.partition("@")[0] + "@")
        self._tmp = staging_path(path)
        self._handle = self._tmp.open("wb")
        self._committed = False

    def append(self, array: np.ndarray) -> tuple[int, int]:
        """Write one array; returns its (offset, length) in rows."""
        data = np.ascontiguousarray(array, dtype=self.dtype)
        expected = 1 if self.row_width is None else 2
        if data.ndim != expected or (self.row_width and data.shape[1] != self.row_width):
            raise ValueError(f"expected rows of width {self.row_width}, got shape {data.shape}")
        offset = self.rows
        self._handle.write(data.tobytes())
        self.rows += data.shape[0]
        return offset, int(data.shape[0])

    def commit(self, target: Path | None = None) -> Path:
        """Publish the shard atomically, at ``target`` (same folder) when its name depends on
        what was written (a content token known only at the end)."""
        if target is not None:
            if target.parent != self.path.parent:
                raise ValueError(f"{target} is not in the folder of {self.path}")
            self.path = target
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._tmp.replace(self.path)
        self._committed = True
        return self.path

    def abort(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None or not self._committed:
            self.abort()


def open_shard(path: Path, dtype: npt.DTypeLike, row_width: int | None = None) -> np.ndarray:
    """A read-only memory map of a committed shard (rows x width, or a flat vector)."""
    dtype = np.dtype(dtype)
    if path.stat().st_size == 0:
        return np.zeros((0,) if row_width is None else (0, row_width), dtype=dtype)
    data = np.memmap(path, dtype=dtype, mode="r")
    return data if row_width is None else data.reshape(-1, row_width)


def remove_superseded(current: Path) -> list[Path]:
    """Delete the other versions (``<name>@<token>``) of a shard once ``current`` is indexed."""
    stem, _, _ = current.name.partition("@")
    removed = []
    for other in current.parent.glob(f"{stem}@*{current.suffix}"):
        if other != current:
            other.unlink(missing_ok=True)
            removed.append(other)
    return removed


def remove_superseded_shards(layout: DataLayout, relative: str) -> list[str]:
    """Delete the other versions (``<name>@<token>``) of a shard, in the mirror and the root."""
    removed = [path.name for path in remove_superseded(layout.local(relative))]
    if layout.is_remote:
        current = layout.root / relative
        stem = current.name.partition("@")[0]
        for other in current.parent.glob(f"{stem}@*{current.suffix}"):
            if other.name != current.name:
                other.unlink()
                removed.append(other.name)
    return sorted(set(removed))
