"""The ``spira`` command group, its shared options and the helpers that run materializations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spira_assets import environment
from spira_assets.deployment import Executor
from spira_assets.storage.batches import InvalidBatchIdError
from spira_assets.storage.layout import DataLayout

if TYPE_CHECKING:
    import dagster as dg

    from spira_assets.app.runner import RunOutcome


class CliError(click.ClickException):
    def show(self, file: object = None) -> None:
        click.echo(f"spira: error: {self.message}", err=True)


def _layout(data_dir: str | None) -> DataLayout:
    return environment.data_layout(data_dir)


def _local_root(layout: DataLayout) -> Path:
    """The data root as a local folder; commands that generate data, score files or read
    models need one (with object storage, run them where a mirror is, or in a run)."""
    if layout.is_remote:
        raise CliError(
            f"{layout.root} is in object storage: this command needs a local data root "
            "(use --data-dir with a local folder)"
        )
    return layout.local_root


PROFILE_OPTION = click.option(
    "--profile",
    default="platform",
    show_default=True,
    type=click.Choice(["platform", "spira-acl2021"]),
    help="Training and evaluation protocol: the platform's, or SPIRA's published experiment "
    "3.5 (docs/MODELS.md, parity table).",
)


DATA_DIR_OPTION = click.option(
    "--data-dir",
    envvar="SPIRA_DATA_DIR",
    default=None,
    help="Data root (default: $SPIRA_DATA_DIR or ./data).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """SPIRA continuous-training platform: ingest, validate and (soon) train on voice batches."""


def _demo_options(func: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--batches", default=3, show_default=True, type=click.IntRange(1, 500)),
        click.option(
            "--participants",
            default=24,
            show_default=True,
            type=click.IntRange(2, 10_000),
            help="Participants per batch (half patients, half controls).",
        ),
        click.option("--seed", default=7, show_default=True, type=int),
        click.option(
            "--effect-size",
            default=1.0,
            show_default=True,
            type=click.FloatRange(0.0),
            help="Strength of the class signal in the audio; 0 = none at all.",
        ),
        click.option(
            "--defect-rate",
            default=0.05,
            show_default=True,
            type=click.FloatRange(0.0, 1.0),
            help="Share of recordings given a realistic defect.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _instance(layout: DataLayout) -> dg.DagsterInstance:
    os.environ["SPIRA_DATA_DIR"] = str(layout.root)
    from spira_assets.app.instance import local_instance

    return local_instance()


def _report(run: RunOutcome, tolerated: frozenset[str] = frozenset()) -> bool:
    """Print one line for a run; True when it succeeded (``tolerated`` checks may fail)."""
    # A tolerated blocking check fails its own step; that is the only failure allowed.
    tolerated_steps = {check.split(":")[0] for check in tolerated}
    step_failures_ok = set(run.failed_steps) <= tolerated_steps
    ok = (run.success or step_failures_ok) and not set(run.failed_checks) - tolerated
    state = "ok" if ok else "FAILED"
    extra = ""
    if run.failed_checks:
        extra += f" failed checks: {', '.join(run.failed_checks)}"
    if run.failed_steps:
        extra += f" failed steps: {', '.join(run.failed_steps)}"
    if run.warned_checks:
        extra += f" warnings: {', '.join(run.warned_checks)}"
    click.echo(f"{run.label}: run {run.run_id[:8]} {state}{extra}")
    return ok


DAGSTER_URL_OPTION = click.option(
    "--dagster-url",
    envvar="SPIRA_DAGSTER_URL",
    default=None,
    help="Launch the runs through this Dagster webserver (e.g. http://127.0.0.1:3000 under "
    "`make ui`; env SPIRA_DAGSTER_URL) instead of executing them here: they belong to the UI's "
    "code location (Overview timeline, Re-execute) and its daemon runs them.",
)


def _run_shared(
    layout: DataLayout,
    select: tuple[str, ...],
    resources: dict[str, object] | None = None,
    log_level: str = "WARNING",
    tolerated: frozenset[str] = frozenset(),
    executor: Executor = "in_process",
    dagster_url: str | None = None,
) -> list[str]:
    from spira_assets.app.runner import (
        MaterializeError,
        materialize_shared,
        materialize_shared_through,
    )
    from spira_assets.app.webserver import DagsterApiError

    try:
        run = (
            materialize_shared_through(dagster_url, select, log_level, resources)
            if dagster_url
            else materialize_shared(_instance(layout), select, log_level, resources, executor)
        )
    except (MaterializeError, DagsterApiError) as error:
        raise CliError(str(error)) from error
    return [] if _report(run, tolerated) else [run.label]


def _run_batches(
    layout: DataLayout,
    batch_ids: list[str],
    select: tuple[str, ...] = (),
    executor: Executor = "in_process",
    dagster_url: str | None = None,
) -> list[str]:
    from spira_assets.app.runner import (
        MaterializeError,
        materialize_batch,
        materialize_batch_through,
    )
    from spira_assets.app.webserver import DagsterApiError

    def one(batch_id: str) -> RunOutcome:
        if dagster_url:
            return materialize_batch_through(dagster_url, layout, batch_id, select)
        return materialize_batch(instance, layout, batch_id, select, executor=executor)

    instance = _instance(layout)  # the local instance (runs through a webserver use its own)
    failed = []
    for batch_id in batch_ids:
        try:
            run = one(batch_id)
        except (MaterializeError, InvalidBatchIdError, DagsterApiError) as error:
            raise CliError(str(error)) from error
        if not _report(run):
            failed.append(batch_id)
    return failed
