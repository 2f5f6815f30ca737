"""Materializing outside the UI: used by ``spira materialize`` and ``spira demo``."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from spira_assets.automation.jobs import (
    BATCH_ASSETS,
    SHARED_ASSETS,
    TRAINING_ASSETS,
    prepare_noise_job,
    process_batch_job,
    train_model_job,
)
from spira_assets.definitions import defs
from spira_assets.deployment import EXECUTORS, Executor
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.storage.batches import READY_MARKER, require_valid_batch_id
from spira_assets.storage.layout import DataLayout

if TYPE_CHECKING:
    from spira_assets.app.webserver import DagsterWebserver

RunResult = dg.ExecuteInProcessResult | dg.JobExecutionResult


# Zero-argument builders: ``dg.reconstructable`` rebuilds a job in each step process by name.
def process_batch_job_def() -> dg.JobDefinition:
    return defs.resolve_job_def(process_batch_job.name)


def prepare_noise_job_def() -> dg.JobDefinition:
    return defs.resolve_job_def(prepare_noise_job.name)


def train_model_job_def() -> dg.JobDefinition:
    return defs.resolve_job_def(train_model_job.name)


def _execute(
    build: Callable[[], dg.JobDefinition],
    instance: dg.DagsterInstance,
    executor: Executor,
    selection: list[dg.AssetKey] | None,
    run_config: dict[str, object],
    partition: str | None = None,
) -> RunResult:
    """Run a job in this process, or with its executor (one process per step).

    ``in_process`` is quick for one batch at a time; ``multiprocess`` uses the deployment's
    executor (``deployment.py``), the way runs launched by the daemon execute, so several
    batches can run at once against one instance (PostgreSQL)."""
    if executor not in EXECUTORS:
        raise MaterializeError(f"executor {executor!r}: expected one of {list(EXECUTORS)}")
    if selection is not None:
        selection = with_step_outputs(selection)
    # the runs carry the code location's origin (below), so the daemon of a later `make ui`
    # could retry a failed one (instance.yaml: run_retries); the CLI reports its failures to
    # its caller instead (the demo exits 1), and a refused gate retrained is refused again
    tags = {"spira/launched_by": "cli", "dagster/max_retries": "0"}
    job = build()
    with filed_under_code_location(instance, job.name):
        if executor == "multiprocess":
            if partition is not None:
                tags["dagster/partition"] = partition
            return dg.execute_job(
                dg.reconstructable(build),
                instance=instance,
                tags=tags,
                asset_selection=selection,
                run_config=run_config,
            )
        return job.execute_in_process(
            partition_key=partition,
            instance=instance,
            raise_on_error=False,
            asset_selection=selection,
            tags=tags,
            run_config=run_config,
        )


# The code location of workspace.yaml (and deploy/compose/workspace.yaml), which the webserver
# and the daemon load; test_demo_in_the_ui holds both files to these names.
LOCATION_NAME = "spira_assets"
DEFINITIONS_MODULE = "spira_assets.definitions"


def job_origin(job_name: str) -> RemoteJobOrigin:
    """The origin the webserver gives a run of ``job_name`` it launches from workspace.yaml's
    code location (the UI reads only the names: location, repository, job)."""
    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE)
    repository = RemoteRepositoryOrigin(
        ManagedGrpcPythonEnvCodeLocationOrigin(target, location_name=LOCATION_NAME),
        defs.get_repository_def().name,
    )
    return RemoteJobOrigin(repository, job_name)


@contextmanager
def filed_under_code_location(instance: dg.DagsterInstance, job_name: str) -> Iterator[None]:
    """Runs made in this process carry the code location's origin, as if the webserver had
    launched them. Dagster gives a run of ``execute_in_process`` or ``execute_job`` no origin,
    and the UI's Overview timeline (its first screen) draws only runs with one, so the demo's
    and the CLI's runs were missing from it (listed under Runs only). Both create their run
    through ``instance.create_run_for_job``, which takes the origin as an argument; for the
    duration of the call the instance's method is that method with the origin given. Pinned by
    test_demo_in_the_ui (each run's origin, then the timeline in Chromium)."""
    create = instance.create_run_for_job
    instance.create_run_for_job = functools.partial(  # type: ignore[method-assign]
        create, remote_job_origin=job_origin(job_name)
    )
    try:
        yield
    finally:
        del instance.create_run_for_job  # the class's method again


def with_step_outputs(selection: list[dg.AssetKey]) -> list[dg.AssetKey]:
    """The selection plus the other outputs of the steps it names: a step that writes a table
    (``spectrogram_features`` and ``feature_stats``) always materializes both."""
    expanded = (
        dg.AssetSelection.assets(*selection)
        .required_multi_asset_neighbors()
        .resolve(defs.resolve_asset_graph())
    )
    return sorted(expanded, key=lambda key: key.to_user_string())


class MaterializeError(RuntimeError):
    """A batch or selection that cannot be materialized (the message says why)."""


@dataclass(frozen=True)
class RunOutcome:
    label: str
    run_id: str
    success: bool
    failed_checks: tuple[str, ...]
    failed_steps: tuple[str, ...]
    warned_checks: tuple[str, ...] = ()  # failed checks of WARN severity (e.g. drift): signals

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_checks


def register_batch(instance: dg.DagsterInstance, batch_id: str) -> bool:
    """Add the partition if it is new; True when it was added."""
    if instance.has_dynamic_partition(COLLECTION_BATCH, batch_id):
        return False
    instance.add_dynamic_partitions(COLLECTION_BATCH, [batch_id])
    return True


def _outcome(label: str, result: RunResult) -> RunOutcome:
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed_checks = tuple(
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in failed
        if e.severity != dg.AssetCheckSeverity.WARN
    )
    warned_checks = tuple(
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in failed
        if e.severity == dg.AssetCheckSeverity.WARN
    )
    failed_steps = tuple(
        e.step_key or "?" for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    )
    return RunOutcome(
        label, result.run_id, result.success, failed_checks, failed_steps, warned_checks
    )


def _run_config(level: str) -> dict[str, object]:
    return {"loggers": {"console": {"config": {"log_level": level}}}}


GLOBAL_ASSETS = SHARED_ASSETS + TRAINING_ASSETS


def split_selection(select: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(per-batch assets, assets over all batches) of a selection."""
    unknown = sorted(set(select) - set(BATCH_ASSETS) - set(GLOBAL_ASSETS))
    if unknown:
        raise MaterializeError(
            f"unknown asset(s) {unknown}; per-batch assets are {list(BATCH_ASSETS)}, "
            f"assets over all batches {list(GLOBAL_ASSETS)}"
        )
    return (
        tuple(s for s in select if s in BATCH_ASSETS),
        tuple(s for s in select if s in GLOBAL_ASSETS),
    )


def _shared_runs(
    select: tuple[str, ...], console_log_level: str, resources: dict[str, object] | None
) -> list[tuple[str, list[dg.AssetKey], dict[str, object]]]:
    """(job, assets, run config) of each run a selection of assets over all batches needs:
    the noise set, then the split and the model, in that order."""
    runs = []
    for job, names in (
        (prepare_noise_job.name, SHARED_ASSETS),
        (train_model_job.name, TRAINING_ASSETS),
    ):
        chosen = [dg.AssetKey(name) for name in select if name in names]
        if not chosen:
            continue
        config: dict[str, object] = _run_config(console_log_level)
        if resources and job == train_model_job.name:
            config["resources"] = {key: {"config": value} for key, value in resources.items()}
        runs.append((job, chosen, config))
    if not runs:
        raise MaterializeError(f"nothing to run for {list(select)}")
    return runs


def _in_order(
    runs: list[tuple[str, list[dg.AssetKey], dict[str, object]]],
    run: Callable[[str, list[dg.AssetKey], dict[str, object], str], RunOutcome],
) -> RunOutcome:
    """Each run after the previous one succeeded; the outcome of the last one made."""
    for job, keys, config in runs:
        outcome = run(job, keys, config, ",".join(k.to_user_string() for k in keys))
        if not outcome.ok:
            return outcome
    return outcome


JOB_BUILDERS = {
    prepare_noise_job.name: prepare_noise_job_def,
    train_model_job.name: train_model_job_def,
}


def materialize_shared(
    instance: dg.DagsterInstance,
    select: tuple[str, ...] = SHARED_ASSETS,
    console_log_level: str = "WARNING",
    resources: dict[str, object] | None = None,
    executor: Executor = "in_process",
) -> RunOutcome:
    """Assets over all batches: the noise set, then the split and the model, in that order.
    ``resources`` overrides resource configuration of the training run (e.g. fewer epochs)."""
    return _in_order(
        _shared_runs(select, console_log_level, resources),
        lambda job, keys, config, label: _outcome(
            label, _execute(JOB_BUILDERS[job], instance, executor, keys, config)
        ),
    )


def _batch_selection(
    layout: DataLayout, batch_id: str, select: tuple[str, ...]
) -> list[dg.AssetKey] | None:
    """The per-batch assets to materialize for a landed, complete batch (None: all of them)."""
    require_valid_batch_id(batch_id)
    folder = layout.batch_dir(batch_id)
    if not folder.is_dir():
        raise MaterializeError(f"batch {batch_id}: no folder {folder}")
    if not (folder / READY_MARKER).exists():
        raise MaterializeError(f"batch {batch_id}: no {READY_MARKER} marker, upload incomplete")
    per_batch, shared = split_selection(select)
    if shared:
        raise MaterializeError(f"{list(shared)} are not per-batch assets")
    return [dg.AssetKey(name) for name in per_batch] if per_batch else None


def materialize_batch(
    instance: dg.DagsterInstance,
    layout: DataLayout,
    batch_id: str,
    select: tuple[str, ...] = (),
    console_log_level: str = "WARNING",
    executor: Executor = "in_process",
) -> RunOutcome:
    """Register the batch if new and materialize its per-batch assets (``select``: a subset)."""
    selection = _batch_selection(layout, batch_id, select)
    register_batch(instance, batch_id)
    result = _execute(
        process_batch_job_def,
        instance,
        executor,
        selection,
        _run_config(console_log_level),
        partition=batch_id,
    )
    return _outcome(batch_id, result)


def materialize_batch_through(
    url: str, layout: DataLayout, batch_id: str, select: tuple[str, ...] = ()
) -> RunOutcome:
    """``materialize_batch`` launched through the Dagster webserver at ``url`` (the UI's own
    API): the run belongs to the webserver's code location, so it is on the Overview timeline
    and re-executes from the UI; the daemon behind it launches it. Waits for its end."""
    from spira_assets.app.webserver import DagsterWebserver

    selection = _batch_selection(layout, batch_id, select)
    server = DagsterWebserver(url)
    server.add_partition(process_batch_job.name, COLLECTION_BATCH, batch_id)
    return _through(
        server, process_batch_job.name, batch_id, selection, _run_config("WARNING"), batch_id
    )


def materialize_shared_through(
    url: str,
    select: tuple[str, ...] = SHARED_ASSETS,
    console_log_level: str = "WARNING",
    resources: dict[str, object] | None = None,
) -> RunOutcome:
    """``materialize_shared`` launched through the Dagster webserver at ``url``."""
    from spira_assets.app.webserver import DagsterWebserver

    server = DagsterWebserver(url)
    return _in_order(
        _shared_runs(select, console_log_level, resources),
        lambda job, keys, config, label: _through(server, job, None, keys, config, label),
    )


def _through(
    server: DagsterWebserver,
    job: str,
    partition: str | None,
    selection: list[dg.AssetKey] | None,
    run_config: dict[str, object],
    label: str,
) -> RunOutcome:
    tags = {"spira/launched_by": "cli"}
    if partition is not None:
        tags["dagster/partition"] = partition
    assets = [key.to_user_string() for key in with_step_outputs(selection)] if selection else None
    run_id = server.launch(job, tags, assets, run_config)
    status = server.wait(run_id)
    checks, failed_steps = server.outcome_events(run_id)
    failed = [c for c in checks if not c["success"]]

    def name(check: dict[str, Any]) -> str:
        return f"{'/'.join(check['assetKey']['path'])}:{check['checkName']}"

    return RunOutcome(
        label,
        run_id,
        status == "SUCCESS",
        tuple(name(c) for c in failed if c["severity"] != "WARN"),
        tuple(failed_steps),
        tuple(name(c) for c in failed if c["severity"] == "WARN"),
    )
