"""Leftovers of killed writers are removed by the next writer; live writers' files are not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from spira_assets.storage import staging
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import as_upath
from spira_assets.storage.shards import ShardWriter
from spira_assets.storage.staging import remove_stale_staging, staging_path
from spira_assets.storage.tables import RAW_AUDIO


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _leftover(target: Path, pid: int) -> Path:
    name = staging_path(target).name.replace(f"~{os.getpid()}~", f"~{pid}~")
    path = target.with_name(name)
    path.write_bytes(b"partial")
    return path


def test_dead_writer_leftovers_go_live_and_other_targets_stay(tmp_path: Path) -> None:
    target = tmp_path / "demo-001.parquet"
    dead = _leftover(target, _dead_pid())
    live = _leftover(target, os.getppid())  # our parent process is alive
    other = _leftover(tmp_path / "demo-002.parquet", _dead_pid())
    removed = remove_stale_staging(tmp_path, target.name)
    assert removed == [dead.name]
    assert live.exists() and other.exists() and not dead.exists()


def test_old_leftovers_of_other_hosts_expire(tmp_path: Path) -> None:
    target = tmp_path / "demo-001.parquet"
    foreign = tmp_path / ".demo-001.parquet.pod-7f9c.cluster.local~12~abcd1234.tmp"
    foreign.write_bytes(b"partial")
    assert remove_stale_staging(tmp_path, target.name) == []  # recent: maybe still writing
    old = time.time() - staging.STALE_AFTER_S - 60
    os.utime(foreign, (old, old))
    assert remove_stale_staging(tmp_path, target.name) == [foreign.name]


def test_lake_and_shard_writers_clean_up_after_a_killed_writer(tmp_path: Path) -> None:
    lake = Lake(as_upath(tmp_path / "lake"))
    part = Path(str(lake.part_path(RAW_AUDIO, "demo-001")))
    part.parent.mkdir(parents=True)
    stale_part = _leftover(part, _dead_pid())
    lake.write_part(RAW_AUDIO, "demo-001", RAW_AUDIO.empty())
    assert not stale_part.exists() and part.exists()

    shard = tmp_path / "waveforms" / "demo-001@new.int16"
    shard.parent.mkdir(parents=True)
    stale_shard = _leftover(shard.with_name("demo-001@old.int16"), _dead_pid())
    with ShardWriter(shard, np.int16) as writer:
        writer.append(np.arange(4, dtype=np.int16))
        writer.commit()
    assert not stale_shard.exists()
    assert sorted(p.name for p in shard.parent.iterdir()) == ["demo-001@new.int16"]
