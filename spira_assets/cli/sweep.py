"""The ``sweep`` command: a grid of training settings, each combination and seed a Dagster run
of ``sweep_trials``, ranked on the validation split; the best one optionally promoted through
the main path. A sweep is planned once (its plan and MLflow parent run kept), so the same command
resumes it and trains only the trials not trained yet."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spira_assets.cli.app import (
    DATA_DIR_OPTION,
    PROFILE_OPTION,
    CliError,
    _instance,
    _layout,
    _local_root,
    _run_shared,
    main,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from spira_assets.app.sweep_runs import LocalTrials, QueuedTrials
    from spira_assets.ml.sweep import SweepPlan, SweepStore, TrialResult
    from spira_assets.storage.layout import DataLayout


@main.command()
@click.option(
    "--param",
    "params",
    multiple=True,
    required=True,
    help="name=v1,v2,... (lr, window, step, batch, epochs, warmup, wd, dropout, norm, "
    "patience or any training field). Repeat for a grid.",
)
@click.option("--seeds", default="42", show_default=True, help="Seeds for every combination.")
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--warmup", default=100, show_default=True, type=click.IntRange(1))
@click.option(
    "--name",
    default=None,
    help="Sweep name (default: derived from the grid, seeds, settings and the current split, "
    "so the same command resumes the same sweep).",
)
@click.option(
    "--dagster-url",
    envvar="SPIRA_DAGSTER_URL",
    default=None,
    help="A Dagster webserver with a daemon (make ui: http://127.0.0.1:3000): trials go "
    "through its run queue. Without it, this process runs them one after another against "
    "the local instance ($DAGSTER_HOME).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="With --dagster-url: at most N trial runs queued or running at once (the instance's "
    "run queue and its gpu pool limit them further). Without it: 1.",
)
@click.option(
    "--max-trials",
    default=None,
    type=click.IntRange(1),
    help="Start at most N of the remaining trials now; the same command later trains the rest.",
)
@click.option(
    "--promote",
    is_flag=True,
    help="Train the best combination through Dagster (spira_model -> evaluation -> gate).",
)
@PROFILE_OPTION
@DATA_DIR_OPTION
def sweep(
    params: tuple[str, ...],
    seeds: str,
    epochs: int,
    warmup: int,
    name: str | None,
    dagster_url: str | None,
    workers: int,
    max_trials: int | None,
    promote: bool,
    profile: str,
    data_dir: str | None,
) -> None:
    """Train every combination of the given parameters (per seed), each trial a Dagster run of
    `sweep_trials` (an MLflow run nested under the sweep's), and print a ranked comparison on
    the validation split. Trials that finished are never trained again: after an interruption
    the same command trains only the rest."""
    from spira_assets.ml.sweep import SWEEP_NAME, SweepSpecError, parse_param

    layout = _layout(data_dir)
    root = _local_root(layout)
    try:
        grid = dict(parse_param(p) for p in params)
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except (SweepSpecError, ValueError) as error:
        raise CliError(str(error)) from error
    if name is not None and not SWEEP_NAME.match(name):
        raise CliError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    if workers > 1 and not dagster_url:
        raise CliError(
            "--workers above 1 needs the run queue: start `make ui` and pass "
            "--dagster-url http://127.0.0.1:3000 (without it trials run one at a time)"
        )
    _sweep(layout, root, grid, seed_list, epochs, warmup, name, dagster_url, workers,
           max_trials, promote, profile)  # fmt: skip


def _sweep(
    layout: DataLayout,
    root: Path,
    grid: dict[str, list[Any]],
    seed_list: list[int],
    epochs: int,
    warmup: int,
    name: str | None,
    dagster_url: str | None,
    workers: int,
    max_trials: int | None,
    promote: bool,
    profile: str,
) -> None:
    import mlflow

    from spira_assets.ml.sweep import SweepStore

    store = SweepStore(layout.root)
    planned, client, uri = _open_plan(layout, root, store, grid, seed_list, epochs, warmup,
                                      name, profile)  # fmt: skip
    results = _train_trials(layout, store, planned, client, uri, dagster_url, workers, max_trials)
    if results is None:
        return
    best = _publish_ranking(root, planned, results, client, uri)
    mlflow.set_tracking_uri(uri)
    if promote:
        _promote(layout, results, best, profile, seed_list, epochs, warmup)


def _open_plan(
    layout: DataLayout,
    root: Path,
    store: SweepStore,
    grid: dict[str, list[Any]],
    seed_list: list[int],
    epochs: int,
    warmup: int,
    name: str | None,
    profile: str,
) -> tuple[SweepPlan, MlflowClient, str]:
    """The sweep's plan: the one recorded under its name, else a new one with its MLflow parent
    run (the grid, seeds and base settings logged on it). Its name defaults to one derived from
    the grid, seeds, settings and the current split, so the same command resumes it."""
    from mlflow.tracking import MlflowClient

    from spira_assets.environment import tracking_uri
    from spira_assets.ml.split import recorded_settings
    from spira_assets.ml.sweep import SweepPlan, sweep_name
    from spira_assets.ml.tracking import ensure_experiment
    from spira_assets.ml.training_inputs import split_rows_fingerprint
    from spira_assets.resources import TrainingSettings
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import DATASET_SPLIT, UNPARTITIONED

    split = Lake(layout.lake).read_part(DATASET_SPLIT, UNPARTITIONED)
    if split.is_empty():
        raise CliError("no dataset split yet: run `spira demo` (or materialize dataset_split)")
    settings = TrainingSettings(profile=profile)
    base = replace(
        settings.train_config(),
        max_epochs=epochs,
        warmup_steps=warmup,
        patience=max(2, epochs // 2),
    )
    # the trials verify the split with the settings it was assigned with
    split_config = next(iter(recorded_settings(split)), settings.split_config())
    name = name or sweep_name(base, grid, seed_list, split_rows_fingerprint(split))
    uri = tracking_uri(root)
    client = MlflowClient(uri)
    planned = store.load_plan(name)
    if planned is None:
        experiment = ensure_experiment(uri, "spira-sweeps", root / "mlartifacts")
        parent = client.create_run(
            experiment, run_name=name, tags={"spira.sweep": "true", "spira.sweep_name": name}
        )
        planned = SweepPlan(
            name,
            base,
            grid,
            seed_list,
            experiment,
            str(parent.info.run_id),
            split_config,
        )
        for key, values in grid.items():
            client.log_param(planned.mlflow_parent_run_id, f"grid.{key}", json.dumps(values))
        client.log_param(planned.mlflow_parent_run_id, "seeds", json.dumps(seed_list))
        client.log_param(
            planned.mlflow_parent_run_id,
            "base",
            json.dumps({"max_epochs": epochs, "warmup_steps": warmup}),
        )
        store.save_plan(planned)
    elif not planned.same_grid(SweepPlan(name, base, grid, seed_list, "", "", split_config)):
        raise CliError(
            f"sweep {name} was planned with another grid, seeds or settings "
            f"({store.root / name / 'plan.json'}); choose another --name"
        )
    return planned, client, uri


def _train_trials(
    layout: DataLayout,
    store: SweepStore,
    planned: SweepPlan,
    client: MlflowClient,
    uri: str,
    dagster_url: str | None,
    workers: int,
    max_trials: int | None,
) -> dict[str, TrialResult] | None:
    """Run the trials not trained yet (at most ``max_trials``), through the webserver's run
    queue or in this process, printing each outcome. Every trial's result, or None (with the
    parent run closed and a message) while some are not trained yet."""
    from spira_assets.app.sweep_runs import DagsterApiError, TrialRun
    from spira_assets.ml.sweep import label

    parent_id = planned.mlflow_parent_run_id
    client.update_run(parent_id, status="RUNNING")
    keys = planned.trial_keys()
    done = store.results(planned)
    pending = [key for key in keys if key not in done]
    now = pending[:max_trials] if max_trials else pending
    where = (
        f"through the run queue of {dagster_url}, {workers} at a time"
        if dagster_url
        else f"in this process against the instance in {_dagster_home()}, one at a time"
    )
    click.echo(
        f"{planned.name}: {len(keys)} trials ({len(keys) // len(planned.seeds)} combinations x "
        f"{len(planned.seeds)} seeds), {len(done)} already trained, {len(now)} to run {where}; "
        f"MLflow run {parent_id}"
    )
    failed: list[TrialRun] = []

    def finished(run: TrialRun) -> None:
        result = store.load_result(run.key)
        trial = planned.trial(run.key)
        if run.status != "SUCCESS" or result is None:
            failed.append(run)
            outcome = f"run {run.run_id[:8]} {run.status}"
        elif result.error:
            outcome = f"failed: {result.error} (run {run.run_id[:8]})"
        else:
            outcome = (
                f"val AUROC {result.best_val_auroc:.3f}, loss {result.best_val_loss:.3f} "
                f"(epoch {result.best_epoch}, {result.seconds:.0f} s, run {run.run_id[:8]})"
            )
        click.echo(f"  {label(trial.combination)} seed={trial.seed}: {outcome}")

    launcher = _launcher(layout, dagster_url, uri)
    try:
        launcher.register(keys)
        launcher.run(planned.name, now, workers, finished)
    except DagsterApiError as error:
        client.set_terminated(parent_id, "FAILED")
        raise CliError(str(error)) from error
    except BaseException:
        client.set_terminated(parent_id, "KILLED")
        raise
    results = store.results(planned)
    if len(results) < len(keys):
        client.set_terminated(parent_id, "FAILED" if failed else "KILLED")
        missing = len(keys) - len(results)
        message = (
            f"{missing} of {len(keys)} trials not trained yet: run the same command again "
            f"(or --name {planned.name}) to train only those"
        )
        if failed:
            raise CliError(f"{len(failed)} trial run(s) failed; {message}")
        click.echo(message)
        return None
    return results


def _launcher(layout: DataLayout, dagster_url: str | None, uri: str) -> LocalTrials | QueuedTrials:
    """Trials go through the webserver's run queue when one is named, else run in this
    process against the local instance."""
    from spira_assets.app.sweep_runs import LocalTrials, QueuedTrials

    if dagster_url:
        return QueuedTrials(dagster_url)
    resources: dict[str, dict[str, object]] = {
        "storage": {"data_dir": str(layout.root)},
        "mlflow_tracking": {"tracking_uri": uri},
    }
    return LocalTrials(_instance(layout), resources)


def _publish_ranking(
    root: Path,
    planned: SweepPlan,
    results: dict[str, TrialResult],
    client: MlflowClient,
    uri: str,
) -> dict[str, Any]:
    """Rank the combinations, keep the ranking (CSV under reports/sweeps, an artefact of the
    parent run, which is closed), print it and return its best row."""
    import polars as pl

    from spira_assets.ml.sweep import ranking

    parent_id = planned.mlflow_parent_run_id
    table = ranking(list(results.values()))
    best = table.row(0, named=True)
    client.log_metric(parent_id, "best_val_auroc_mean", best["val_auroc_mean"] or float("nan"))
    client.log_param(parent_id, "best_combination", best["combination"])
    ranking_file = root / "reports" / "sweeps" / f"{planned.name}.csv"
    ranking_file.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(ranking_file)
    client.log_artifact(parent_id, str(ranking_file))
    client.set_terminated(parent_id, "FINISHED")
    with pl.Config(tbl_rows=100, tbl_width_chars=160, fmt_str_lengths=60, float_precision=4):
        click.echo(table)
    click.echo(f"ranking: {ranking_file}")
    click.echo(f"compare in MLflow: mlflow ui --backend-store-uri {uri} (experiment spira-sweeps)")
    return best


def _promote(
    layout: DataLayout,
    results: dict[str, TrialResult],
    best: dict[str, Any],
    profile: str,
    seed_list: list[int],
    epochs: int,
    warmup: int,
) -> None:
    """Train the best combination through Dagster's main path (spira_model -> evaluation ->
    gate); a refused promotion is an outcome, a failed run an error."""
    from spira_assets.ml.sweep import label

    chosen = next(
        r.combination for r in results.values() if label(r.combination) == best["combination"]
    )
    # TrainConfig field names are TrainingSettings (the typed Dagster config) names
    training = {
        "profile": profile,
        "seeds": seed_list,
        "max_epochs": epochs,
        "warmup_steps": warmup,
        "patience": max(2, epochs // 2),
        **chosen,
    }
    click.echo(f"promoting the best combination through Dagster: {training}")
    promotion_failed = _run_shared(
        layout,
        ("dataset_split", "spira_model", "evaluation_report", "champion"),
        {"training": training},
        log_level="INFO",
        tolerated=frozenset({"champion:promotion_gate"}),
    )
    if promotion_failed:
        raise CliError(f"promotion run failed: {promotion_failed}")


def _dagster_home() -> str:
    from spira_assets.environment import setting

    return setting("DAGSTER_HOME") or ".dagster_home"
