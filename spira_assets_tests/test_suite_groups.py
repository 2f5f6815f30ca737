"""``make test``'s pytest-xdist groups hold: tests that share a costly session fixture (the
trained roots, the fresh demo) run on one worker, so each fixture is built once per run.

With pytest 9.2 and pytest-xdist 3.8, ``--dist loadgroup`` silently stopped grouping (pytest
keeps node ids in a new field; xdist still writes the old one: pytest-xdist issue 1386): every
worker built the trained and demo fixtures itself, 60-80 s more per run on 2 cores, and
nothing failed. pyproject.toml keeps pytest below 9.2 until xdist follows; this test fails
on a pair that does not group."""

from __future__ import annotations

import pytest

from spira_assets_tests.fresh_demo import DEMO_GROUP


@pytest.mark.xdist_group(DEMO_GROUP)
def test_an_xdist_group_mark_reaches_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("runs under pytest-xdist's --dist loadgroup (make test)")
    # loadgroup's scheduler reads a test's group from the "@group" suffix of its node id
    assert request.node.nodeid.endswith(f"@{DEMO_GROUP}"), request.node.nodeid
