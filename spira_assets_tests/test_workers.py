"""The decode worker pool: order kept, and no process left behind by a killed caller."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spira_assets.workers import ordered_map, shutdown_pools

CALLER = textwrap.dedent(
    """
    import time
    from spira_assets.workers import ordered_map, worker_pids

    if __name__ == "__main__":
        assert list(ordered_map(abs, range(-5, 0), 2)) == [5, 4, 3, 2, 1]
        print(*worker_pids(), flush=True)
        time.sleep(120)
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return state != "Z"  # a zombie is gone for our purpose


def test_results_come_back_in_order_from_worker_processes() -> None:
    assert list(ordered_map(abs, range(-40, 0), 2, in_flight=3)) == list(range(40, 0, -1))
    shutdown_pools()


def test_workers_leave_when_their_caller_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    caller = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True)
    assert caller.stdout is not None
    pids = [int(p) for p in caller.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)


def test_workers_see_the_environment_of_the_call_not_of_the_first_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The forkserver's environment is frozen when it starts: credentials or a data root set
    afterwards (a test, a deployment's secret mounted later) must still reach the workers."""
    monkeypatch.delenv("SPIRA_WORKER_PROBE", raising=False)
    assert list(ordered_map(os.getenv, ["SPIRA_WORKER_PROBE"] * 2, 2)) == [None, None]
    monkeypatch.setenv("SPIRA_WORKER_PROBE", "set after the pool started")
    seen = list(ordered_map(os.getenv, ["SPIRA_WORKER_PROBE"] * 2, 2))
    assert seen == ["set after the pool started"] * 2
    shutdown_pools()


def _child_decodes(results: multiprocessing.queues.Queue[list[int]]) -> None:
    results.put(list(ordered_map(abs, [-1, -2, -3], 2)))


def test_a_child_process_that_used_the_pool_exits() -> None:
    """A Dagster step process is a multiprocessing child: it must end once its step is done,
    not wait forever for its idle decode workers (the hang of every multiprocess run)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_child_decodes, args=(results,))
    child.start()
    assert results.get(timeout=60) == [1, 2, 3]
    child.join(timeout=60)
    if child.exitcode is None:
        child.kill()
        for pid in psutil_children(child.pid):
            os.kill(pid, signal.SIGKILL)
    assert child.exitcode == 0


def psutil_children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc), to clean up after a hung child."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().split(")")[-1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found
