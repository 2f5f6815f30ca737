"""The landing -> checks cycle's settings (benchmarks/cycle.py, docs/PERFORMANCE.md "Landing to
decision"): batch runs in the run's process under ``local``, training runs in forked step
processes; the former one-process-per-step batch runs stay available by name."""

from __future__ import annotations

import dagster as dg
import pytest

from spira_assets.deployment import current_deployment


def test_local_runs_batch_steps_in_process_and_training_steps_in_forked_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPIRA_DEPLOYMENT", raising=False)
    local = current_deployment()
    assert local.name == "local"
    assert local.batch_executor is dg.in_process_executor
    assert local.training_executor.name == "local_training_processes"
    monkeypatch.setenv("SPIRA_DEPLOYMENT", "local-processes")
    processes = current_deployment()
    assert processes.batch_executor.name == "local_processes"
    assert processes.training_executor.name == "local_training_processes"
