"""Per-batch Parquet files: the storage behind every warehouse table.

Each (table, batch) pair is one file, written to a temporary name and renamed into place, so a
crash never leaves a partial file visible and re-materializing a batch replaces exactly that
batch's rows. Separate files per batch also mean parallel runs never contend for a lock, which
a single DuckDB file (one writer per file) could not offer.
"""

from __future__ import annotations

import polars as pl
from upath import UPath

from spira_assets.storage.batches import is_valid_batch_id, require_valid_batch_id
from spira_assets.storage.layout import is_local
from spira_assets.storage.staging import remove_stale_staging, staging_path
from spira_assets.storage.tables import TableSpec

SCHEMA_FILE = "_schema.parquet"


def _write_atomically(frame: pl.DataFrame, target: UPath) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_local(target):
        remove_stale_staging(target.parent, target.name)
        tmp = staging_path(target)
        try:
            frame.write_parquet(str(tmp))
            tmp.replace(target)
        finally:
            if tmp.exists():
                tmp.unlink()
    else:  # object stores: a PUT is atomic, there is no rename
        with target.open("wb") as handle:
            frame.write_parquet(handle)


def _read(path: UPath) -> pl.DataFrame:
    if is_local(path):
        return pl.read_parquet(str(path))
    with path.open("rb") as handle:  # through fsspec: the root's credentials and endpoint
        return pl.read_parquet(handle)


class Lake:
    """Reads and writes table parts under ``root/<table>/[<stage>/]<batch_id>.parquet``."""

    def __init__(self, root: UPath) -> None:
        self.root = root

    def table_dir(self, spec: TableSpec) -> UPath:
        return self.root / spec.name

    def part_path(self, spec: TableSpec, batch_id: str, sub: str | None = None) -> UPath:
        """``<table>/[<sub>/]<batch_id>.parquet``; ``sub`` is the stage for ``quarantine`` and
        the feature configuration hash for feature tables. Unpartitioned tables use the batch
        id ``all``."""
        require_valid_batch_id(batch_id)
        if spec.split_by:
            if not sub or not is_valid_batch_id(sub):
                raise ValueError(f"table {spec.name} is split by {spec.split_by}: pass sub=")
            return self.table_dir(spec) / sub / f"{batch_id}.parquet"
        return self.table_dir(spec) / f"{batch_id}.parquet"

    def ensure_schema_file(self, spec: TableSpec) -> UPath:
        """An empty file with the table's columns, so the table exists before any batch."""
        path = self.table_dir(spec) / SCHEMA_FILE
        if not path.exists():
            _write_atomically(spec.empty(), path)
        return path

    def write_part(
        self, spec: TableSpec, batch_id: str, frame: pl.DataFrame, sub: str | None = None
    ) -> UPath:
        frame = spec.conform(frame)
        if "batch_id" in frame.columns:
            wrong = frame.filter(pl.col("batch_id") != batch_id).height
            if wrong:
                raise ValueError(f"{wrong} rows of {spec.name} do not belong to batch {batch_id}")
        self.ensure_schema_file(spec)
        path = self.part_path(spec, batch_id, sub)
        _write_atomically(frame, path)
        return path

    def read_part(self, spec: TableSpec, batch_id: str, sub: str | None = None) -> pl.DataFrame:
        path = self.part_path(spec, batch_id, sub)
        if not path.exists():
            raise FileNotFoundError(
                f"{spec.name} has no data for batch {batch_id} ({path}); materialize it first"
            )
        return spec.conform(_read(path))

    def has_part(self, spec: TableSpec, batch_id: str, sub: str | None = None) -> bool:
        return self.part_path(spec, batch_id, sub).exists()

    def part_files(self, spec: TableSpec) -> list[UPath]:
        directory = self.table_dir(spec)
        if not directory.exists():
            return []
        pattern = "*/*.parquet" if spec.split_by else "*.parquet"
        return sorted(p for p in directory.glob(pattern) if not p.name.startswith((".", "_")))

    def read_table(self, spec: TableSpec) -> pl.DataFrame:
        files = self.part_files(spec)
        if not files:
            return spec.empty()
        return pl.concat([spec.conform(_read(f)) for f in files])
