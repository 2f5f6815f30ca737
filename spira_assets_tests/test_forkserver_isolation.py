"""The conftest's ``no_forkserver_from_an_earlier_test`` fed its fault: the first test starts
this process's multiprocessing forkserver without a variable, the second sets the variable and
forks a child from the forkserver. Without the fixture the child inherits the first test's
environment (what left a PostgreSQL run's training steps without ``DAGSTER_PG_*``); both tests
are in one xdist group so they share a worker, in this order."""

from __future__ import annotations

import multiprocessing
import os
import queue

import pytest

GROUP = "forkserver-isolation"
PROBE = "SPIRA_FORKSERVER_PROBE"


def _report(results: queue.Queue[str | None]) -> None:
    results.put(os.environ.get(PROBE))


def _child_sees() -> str | None:
    context = multiprocessing.get_context("forkserver")
    results = context.Queue()
    child = context.Process(target=_report, args=(results,))
    child.start()
    try:
        return results.get(timeout=60)
    finally:
        child.join(timeout=60)


@pytest.mark.xdist_group(GROUP)
def test_a_test_starts_the_forkserver_without_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PROBE, raising=False)
    assert _child_sees() is None  # the forkserver now runs, frozen without PROBE


@pytest.mark.xdist_group(GROUP)
def test_the_next_test_forks_with_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROBE, "set by this test")
    assert _child_sees() == "set by this test"
