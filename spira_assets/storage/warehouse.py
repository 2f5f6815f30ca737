"""The DuckDB catalog: ``warehouse.duckdb`` holds one view per table over the lake's Parquet.

Writers never open the DuckDB file: they write Parquet parts (see ``lake``). The file is
written only to (re)create views, which select from a glob and therefore see new batches
without being touched again. DuckDB allows one writing process per file, so every connection
here retries briefly on a lock instead of failing the run.

The catalog holds nothing but views, so it is cheap to recreate: each process (or pod) may keep
its own file (``SPIRA_WAREHOUSE_PATH``) over one shared lake. A lake in object storage is read
through the lake's own fsspec filesystem, registered with each connection (no DuckDB extension
has to be downloaded).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import duckdb
import polars as pl
from upath import UPath

from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import is_local
from spira_assets.storage.tables import ALL_TABLES, TableSpec

CATALOG_VERSION = 5
LOCK_TIMEOUT_S = 60.0


def _is_lock_error(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text or "conflicting" in text


@contextmanager
def connect(
    path: UPath, read_only: bool, timeout_s: float = LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as error:
            if not _is_lock_error(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        yield connection
    finally:
        connection.close()


class Warehouse:
    def __init__(self, path: UPath, lake: Lake) -> None:
        self.path = path
        self.lake = lake

    def _view_sql(self, spec: TableSpec) -> str:
        glob = self.lake.table_dir(spec) / "**" / "*.parquet"
        literal = str(glob).replace("'", "''")
        return (
            f"CREATE OR REPLACE VIEW {spec.name} AS SELECT * FROM "
            f"read_parquet('{literal}', union_by_name = true)"
        )

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.path, read_only=read_only) as con:
            if not is_local(self.lake.root):
                con.register_filesystem(self.lake.root.fs)
            yield con

    def _catalog_current(self, tables: Iterable[TableSpec]) -> bool:
        if not self.path.exists():
            return False
        try:
            with self._connect(read_only=True) as con:
                names = {
                    r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()
                }
                rows = con.execute("SELECT version, lake FROM _catalog").fetchall()
        except duckdb.Error:
            return False
        wanted = {spec.name for spec in tables}
        return bool(rows) and rows[0] == (CATALOG_VERSION, str(self.lake.root)) and wanted <= names

    def ensure_views(self, tables: Iterable[TableSpec] = ALL_TABLES) -> None:
        """Create the views once; cheap no-op when the catalog is already current."""
        tables = tuple(tables)
        for spec in tables:
            self.lake.ensure_schema_file(spec)
        if self._catalog_current(tables):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            for spec in tables:
                con.execute(self._view_sql(spec))
            con.execute("CREATE OR REPLACE TABLE _catalog (version INTEGER, lake VARCHAR)")
            con.execute(
                "INSERT INTO _catalog VALUES (?, ?)", [CATALOG_VERSION, str(self.lake.root)]
            )

    def query(self, sql: str, parameters: list[object] | None = None) -> pl.DataFrame:
        """Run a read-only query and return a polars frame."""
        self.ensure_views()
        with self._connect(read_only=True) as con:
            return con.execute(sql, parameters or []).pl()
