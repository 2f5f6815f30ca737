"""Per-batch Parquet parts and the DuckDB catalog over them."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from upath import UPath

from spira_assets.ingest.quarantine import Rejection, quarantine_frame
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import QUARANTINE
from spira_assets.storage.warehouse import Warehouse, connect

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def rejections(batch: str, n: int, stage: str = "raw_audio") -> pl.DataFrame:
    return quarantine_frame(
        batch, stage, [Rejection(f"f{i}.wav", "silent", "quiet") for i in range(n)], NOW
    )


def make(tmp_path: Path) -> tuple[Lake, Warehouse]:
    lake = Lake(UPath(tmp_path / "lake"))
    return lake, Warehouse(UPath(tmp_path / "warehouse.duckdb"), lake)


def count_by_batch(warehouse: Warehouse) -> dict[str, int]:
    frame = warehouse.query("SELECT batch_id, count(*) AS n FROM quarantine GROUP BY batch_id")
    return {b: int(n) for b, n in frame.iter_rows()}


def test_tables_exist_and_are_empty_before_any_batch(tmp_path: Path) -> None:
    _, warehouse = make(tmp_path)
    warehouse.ensure_views()
    for table in ("raw_audio", "validated_metadata", "quarantine"):
        assert warehouse.query(f"SELECT count(*) AS n FROM {table}").item() == 0


def test_rematerializing_a_batch_replaces_only_that_batch(tmp_path: Path) -> None:
    lake, warehouse = make(tmp_path)
    lake.write_part(QUARANTINE, "b1", rejections("b1", 3), sub="raw_audio")
    lake.write_part(QUARANTINE, "b2", rejections("b2", 2), sub="raw_audio")
    lake.write_part(
        QUARANTINE, "b1", rejections("b1", 1, "validated_metadata"), sub="validated_metadata"
    )
    assert count_by_batch(warehouse) == {"b1": 4, "b2": 2}
    lake.write_part(QUARANTINE, "b1", rejections("b1", 0), sub="raw_audio")
    assert count_by_batch(warehouse) == {"b1": 1, "b2": 2}
    assert not [p for p in (tmp_path / "lake").rglob("*.tmp")]


def test_rows_of_another_batch_are_refused(tmp_path: Path) -> None:
    lake, _ = make(tmp_path)
    with pytest.raises(ValueError, match="do not belong"):
        lake.write_part(QUARANTINE, "b1", rejections("b2", 1), sub="raw_audio")


def test_catalog_is_written_once_and_sees_new_batches_without_rewrite(tmp_path: Path) -> None:
    lake, warehouse = make(tmp_path)
    warehouse.ensure_views()
    stamp = warehouse.path.stat().st_mtime_ns
    lake.write_part(QUARANTINE, "b9", rejections("b9", 5), sub="raw_audio")
    warehouse.ensure_views()
    assert warehouse.path.stat().st_mtime_ns == stamp
    assert count_by_batch(warehouse) == {"b9": 5}


def test_a_reader_holding_the_file_does_not_break_writers(tmp_path: Path) -> None:
    lake, warehouse = make(tmp_path)
    warehouse.ensure_views()
    with connect(warehouse.path, read_only=True) as reader:
        lake.write_part(QUARANTINE, "b1", rejections("b1", 2), sub="raw_audio")
        assert reader.execute("SELECT count(*) FROM quarantine").fetchone() == (2,)


def _write_batch(args: tuple[str, str, int]) -> None:
    root, batch, n = args
    lake = Lake(UPath(Path(root) / "lake"))
    Warehouse(UPath(Path(root) / "warehouse.duckdb"), lake).ensure_views()
    for _ in range(3):  # re-materialize a few times while others write
        lake.write_part(QUARANTINE, batch, rejections(batch, n), sub="raw_audio")


def test_parallel_processes_lose_and_duplicate_no_rows(tmp_path: Path) -> None:
    jobs = [(str(tmp_path), f"b{i}", i + 1) for i in range(8)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_write_batch, jobs)
    _, warehouse = make(tmp_path)
    assert count_by_batch(warehouse) == {f"b{i}": i + 1 for i in range(8)}


def _hold_write_lock(path: str, seconds: float, ready: multiprocessing.synchronize.Event) -> None:
    con = duckdb.connect(path)
    ready.set()
    time.sleep(seconds)
    con.close()


def test_writer_waits_for_another_process_lock_then_gives_up_with_an_error(tmp_path: Path) -> None:
    path = UPath(tmp_path / "w.duckdb")
    duckdb.connect(str(path)).close()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_write_lock, args=(str(path), 1.5, ready))
    holder.start()
    assert ready.wait(30)
    with pytest.raises(duckdb.IOException, match="lock"), connect(path, False, timeout_s=0.2):
        pass
    started = time.monotonic()
    with connect(path, read_only=False, timeout_s=30) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)
    assert time.monotonic() - started > 0.3
    holder.join()
