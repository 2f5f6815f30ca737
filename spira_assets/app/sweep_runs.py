"""Sweep trials as Dagster runs of ``sweep_trials``, one run per trial (its partition).

Two ways to start them, both against a Dagster instance, so every trial is a run in its UI:

- ``QueuedTrials`` (``spira sweep --dagster-url``): a webserver with a daemon behind it
  (``make ui``, or a deployment's). Runs are submitted through its GraphQL API, which puts
  them in the instance's run queue; the daemon launches them with the instance's run launcher
  (a pod per run on Kubernetes) and the ``gpu`` pool admits one training step at a time.
- ``LocalTrials`` (no URL): no daemon needed. This process executes the runs itself, one after
  another, against the local instance (``DAGSTER_HOME``), each with the job's executor (its
  step in a child process, taking a ``gpu`` pool slot like any run).

Both wait for the runs they started and report each as it ends.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from spira_assets.app.webserver import TERMINAL, DagsterApiError, DagsterWebserver
from spira_assets.assets.sweep import sweep_trials_job
from spira_assets.definitions import defs
from spira_assets.deployment import EXECUTORS, Executor
from spira_assets.partitions import SWEEP_TRIAL

__all__ = ["DagsterApiError", "LocalTrials", "QueuedTrials", "TrialRun"]

SWEEP_TAG = "spira/sweep"
TRIAL_TAG = "spira/sweep_trial"
PID_TAG, HOST_TAG = "spira/sweep_pid", "spira/sweep_host"  # the process executing a local run
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class TrialRun:
    key: str
    run_id: str
    status: str  # SUCCESS, FAILURE or CANCELED


Finished = Callable[[TrialRun], None]


def trial_tags(sweep: str, key: str) -> dict[str, str]:
    return {"dagster/partition": key, SWEEP_TAG: sweep, TRIAL_TAG: key, "spira/launched_by": "cli"}


def sweep_trials_job_def() -> dg.JobDefinition:  # rebuilt by name in each step process
    return defs.resolve_job_def(sweep_trials_job.name)


class LocalTrials:
    """Trials executed by this process, one run at a time, against ``instance``.

    ``resources`` is resource configuration for every run (the CLI passes its data root and
    MLflow store): a step process may be forked from a server started earlier with another
    environment, so the run is told where its data is rather than left to read the
    environment."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        resources: dict[str, dict[str, object]] | None = None,
        executor: Executor = "multiprocess",
    ) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor {executor!r}: expected one of {list(EXECUTORS)}")
        self.instance, self.executor = instance, executor
        self.resources = {name: {"config": value} for name, value in (resources or {}).items()}

    def register(self, keys: list[str]) -> None:
        known = set(self.instance.get_dynamic_partitions(SWEEP_TRIAL))
        new = [key for key in keys if key not in known]
        if new:
            self.instance.add_dynamic_partitions(SWEEP_TRIAL, new)

    def recover(self, sweep: str) -> list[str]:
        """Release what runs of this sweep hold after their process died, as the daemon's run
        monitoring would (there is none here): a run left unfinished by a ``spira sweep``
        process on this host that is gone is reported failed, and a finished run that still
        holds a ``gpu`` pool slot (its step process died) gives it back; otherwise the next
        trial waits for that slot for ever. Returns the runs it released."""
        released = []
        storage = self.instance.event_log_storage
        holding = storage.get_concurrency_run_ids()  # runs with a claimed or pending pool step
        for run in self.instance.get_runs(filters=dg.RunsFilter(tags={SWEEP_TAG: sweep})):
            pid = run.tags.get(PID_TAG, "")
            orphaned = (
                run.status in UNFINISHED
                and run.tags.get(HOST_TAG) == socket.gethostname()
                and pid.isdigit()
                and not _alive(int(pid))
            )
            if orphaned:
                self.instance.report_run_failed(
                    run, f"the spira sweep process that executed it (pid {pid}) is gone"
                )
            ended = orphaned or run.status.value in TERMINAL
            if ended and run.run_id in holding:
                storage.free_concurrency_slots_for_run(run.run_id)
            if orphaned or (ended and run.run_id in holding):
                released.append(run.run_id)
        return released

    def run(self, sweep: str, keys: list[str], workers: int, finished: Finished) -> None:
        if workers != 1:
            raise ValueError("without a daemon trials run one at a time (workers=1)")
        config = {
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            "resources": self.resources,
        }
        for key in keys:
            self.recover(sweep)
            result: dg.ExecuteInProcessResult | dg.JobExecutionResult
            if self.executor == "multiprocess":
                with dg.execute_job(
                    dg.reconstructable(sweep_trials_job_def),
                    instance=self.instance,
                    tags=self._tags(sweep, key),
                    run_config=config,
                ) as result:
                    ok = result.success
            else:
                result = sweep_trials_job_def().execute_in_process(
                    partition_key=key,
                    instance=self.instance,
                    tags=self._tags(sweep, key),
                    run_config=config,
                    raise_on_error=False,
                )
                ok = result.success
            finished(TrialRun(key, result.run_id, "SUCCESS" if ok else "FAILURE"))

    @staticmethod
    def _tags(sweep: str, key: str) -> dict[str, str]:
        return {**trial_tags(sweep, key), PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class QueuedTrials:
    """Trials submitted to the run queue of the instance behind a Dagster webserver."""

    def __init__(self, url: str, poll_s: float = 2.0) -> None:
        self.server = DagsterWebserver(url, poll_s)

    def register(self, keys: list[str]) -> None:
        for key in keys:
            self.server.add_partition(sweep_trials_job.name, SWEEP_TRIAL, key)

    def submit(self, sweep: str, key: str) -> str:
        return self.server.launch(sweep_trials_job.name, trial_tags(sweep, key))

    def statuses(self, run_ids: list[str]) -> dict[str, str]:
        return self.server.statuses(run_ids)

    def run(self, sweep: str, keys: list[str], workers: int, finished: Finished) -> None:
        """Keep at most ``workers`` trial runs queued or running; report each as it ends."""
        waiting, in_flight = list(keys), dict[str, str]()
        while waiting or in_flight:
            while waiting and len(in_flight) < workers:
                key = waiting.pop(0)
                in_flight[self.submit(sweep, key)] = key
            if not in_flight:
                continue
            time.sleep(self.server.poll_s)
            for run_id, status in self.statuses(list(in_flight)).items():
                if status in TERMINAL:
                    finished(TrialRun(in_flight.pop(run_id), run_id, status))
