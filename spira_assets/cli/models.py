"""Commands on models: ``predict``, ``sweep``, ``reproduce``."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from spira_assets.layout import DataLayout
    from spira_assets.ml.inference import FileScore, ParticipantScore, Scorer
from dataclasses import replace
from datetime import UTC
from typing import Any

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


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per file (full-precision probability), for scripts.",
)
@click.option(
    "--participant",
    "one_person",
    is_flag=True,
    help="The files are recordings of one person: also give one participant probability "
    "(the mean of the recordings' calibrated probabilities) and one decision.",
)
@click.option(
    "--participant-id",
    default=None,
    help="The person's id: the prediction log keeps only its keyed pseudonym.",
)
@click.option(
    "--no-log",
    is_flag=True,
    help="Do not append the scores to the prediction log (<data root>/predictions/log).",
)
@DATA_DIR_OPTION
def predict(
    files: tuple[Path, ...],
    device: str,
    as_json: bool,
    one_person: bool,
    participant_id: str | None,
    no_log: bool,
    data_dir: str | None,
) -> None:
    """Score audio files with the champion model: calibrated probability of respiratory
    insufficiency and the decision at the model's operating point, per file (and per person
    with --participant)."""
    from spira_assets.environment import tracking_uri
    from spira_assets.ml.inference import Scorer, participant_score
    from spira_assets.ml.tracking import RegistryError, champion_model_version

    layout = _layout(data_dir)
    root = _local_root(layout)
    try:
        version = champion_model_version(tracking_uri(root))
    except RegistryError as error:
        raise CliError(str(error)) from error
    if version is None or not (root / "models" / version).exists():
        raise CliError("no champion model yet: run `spira demo` (or materialize `champion`) first")
    scorer = Scorer(root / "models" / version, device)
    scores = [scorer.file(path) for path in files]
    if not no_log:  # one record per scored file (monitoring/recorder.py)
        _log_scores(str(layout.root), scorer, root / "models" / version, files, scores,
                    participant_id)  # fmt: skip
    person = participant_score(scores, scorer.threshold) if one_person else None
    if as_json:
        for s in scores:
            click.echo(json.dumps({"model_version": version, **asdict(s)}))
        if person is not None:
            click.echo(json.dumps({"model_version": version, "participant": asdict(person)}))
    else:
        _print_scores(version, scores, scorer.statement)
        if person is not None:
            _print_participant(person)
    failed = sum(1 for s in scores if s.error)
    if failed:
        raise CliError(f"{failed} of {len(scores)} files could not be scored")


def _log_scores(
    data_root: str,
    scorer: Scorer,
    directory: Path,
    files: tuple[Path, ...],
    scores: list[FileScore],
    participant_id: str | None,
) -> None:
    from spira_assets.monitoring.recorder import PredictionRecorder, model_version_of

    recorder = PredictionRecorder(data_root, scorer, model_version_of(directory), "cli")
    for path, score in zip(files, scores, strict=True):
        try:
            data: bytes | None = path.read_bytes()
        except OSError:
            data = None
        recorder.record(score, data, participant_id)


def _print_scores(version: str, scores: list[FileScore], statement: str) -> None:
    click.echo(f"champion model {version}: {statement}")
    click.echo(f"{'probability':>11}  {'decision':<26}  file")
    for s in scores:
        if s.error:
            click.echo(f"{'-':>11}  {'error':<26}  {s.path}: {s.error}")
        else:
            decision = "respiratory insufficiency" if s.decision else "no insufficiency"
            click.echo(f"{s.probability:>11.4f}  {decision:<26}  {s.path}")


def _print_participant(person: ParticipantScore) -> None:
    if person.probability is None:
        click.echo("participant: no recording could be scored, so no decision")
        return
    decision = "respiratory insufficiency" if person.decision else "no insufficiency"
    left_out = f", {person.unscored} unscored left out" if person.unscored else ""
    click.echo(
        f"{person.probability:>11.4f}  {decision:<26}  participant (mean of "
        f"{person.recordings} recordings{left_out})"
    )


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
    import polars as pl
    from mlflow.tracking import MlflowClient

    from spira_assets.environment import tracking_uri
    from spira_assets.ml.split import recorded_settings
    from spira_assets.ml.sweep import SweepPlan, SweepStore, label, ranking, sweep_name
    from spira_assets.ml.tracking import ensure_experiment
    from spira_assets.ml.training_inputs import split_rows_fingerprint
    from spira_assets.resources import TrainingSettings
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import DATASET_SPLIT, UNPARTITIONED
    from spira_assets.sweep_runs import DagsterApiError, LocalTrials, QueuedTrials, TrialRun

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
    store = SweepStore(layout.root)
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
        f"{name}: {len(keys)} trials ({len(keys) // len(seed_list)} combinations x "
        f"{len(seed_list)} seeds), {len(done)} already trained, {len(now)} to run {where}; "
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

    launcher = (
        QueuedTrials(dagster_url)
        if dagster_url
        else LocalTrials(
            _instance(layout),
            {
                "storage": {"data_dir": str(layout.root)},
                "mlflow_tracking": {"tracking_uri": uri},
            },
        )
    )
    try:
        launcher.register(keys)
        launcher.run(name, now, workers, finished)
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
            f"(or --name {name}) to train only those"
        )
        if failed:
            raise CliError(f"{len(failed)} trial run(s) failed; {message}")
        click.echo(message)
        return
    table = ranking(list(results.values()))
    best = table.row(0, named=True)
    client.log_metric(parent_id, "best_val_auroc_mean", best["val_auroc_mean"] or float("nan"))
    client.log_param(parent_id, "best_combination", best["combination"])
    ranking_file = root / "reports" / "sweeps" / f"{name}.csv"
    ranking_file.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(ranking_file)
    client.log_artifact(parent_id, str(ranking_file))
    client.set_terminated(parent_id, "FINISHED")
    with pl.Config(tbl_rows=100, tbl_width_chars=160, fmt_str_lengths=60, float_precision=4):
        click.echo(table)
    click.echo(f"ranking: {ranking_file}")
    click.echo(f"compare in MLflow: mlflow ui --backend-store-uri {uri} (experiment spira-sweeps)")
    mlflow.set_tracking_uri(uri)
    if not promote:
        return
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
    import os

    return os.environ.get("DAGSTER_HOME", ".dagster_home")


@main.command()
@click.argument("model_version")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option(
    "--tolerance",
    default=None,
    type=float,
    help="Allowed absolute difference in weights and metrics (default: 0 on CPU, 1e-3 on GPU).",
)
@DATA_DIR_OPTION
def reproduce(
    model_version: str, device: str, tolerance: float | None, data_dir: str | None
) -> None:
    """Retrain MODEL_VERSION from its lineage record (data versions, configuration, seed) and
    report whether weights and test metrics match the original."""
    from spira_assets.ml.reproduce import reproduce as run
    from spira_assets.ml.training_inputs import ReproductionInputsMissing, TrainingInputsRefused
    from spira_assets.resources import EvaluationSettings

    layout = _layout(data_dir)
    root = _local_root(layout)
    allowed = tolerance if tolerance is not None else (0.0 if device == "cpu" else 1e-3)
    click.echo(f"reproducing model version {model_version} on {device} ...")
    try:
        result = run(root, model_version, device, allowed, EvaluationSettings().noisy_seed)
    except (ReproductionInputsMissing, TrainingInputsRefused) as error:
        raise CliError(str(error)) from error
    if result.code_version_recorded != result.code_version_now:
        click.echo(
            f"note: code version differs (recorded {result.code_version_recorded}, "
            f"running {result.code_version_now})"
        )
    click.echo(
        f"profile {result.profile}; recordings per split: {result.recordings}; seed {result.seed}"
    )
    click.echo(
        f"torch CPU threads: {result.cpu_threads} ("
        + (
            "as recorded)"
            if result.cpu_threads_recorded is not None
            else "not recorded by this model version: the threads in force; a different "
            "number gives different weights)"
        )
    )
    click.echo(
        "weights: "
        + (
            "identical"
            if result.weights_identical
            else f"differ (max |difference| {result.max_weight_difference:.3g})"
        )
    )
    click.echo(
        f"threshold: original {result.threshold_original:.6f}, "
        f"reproduced {result.threshold_reproduced:.6f}"
    )
    click.echo(f"{'condition':<10}{'metric':<13}{'original':>10}{'reproduced':>12}")
    for m in result.metrics:
        click.echo(
            f"{m['condition']:<10}{m['metric']:<13}{m['original']:>10.4f}{m['reproduced']:>12.4f}"
        )
    report = layout.local_root / "reports" / model_version / "reproduction.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    stamped = {**result.as_dict(), "reproduced_at": datetime.now(UTC).isoformat()}
    report.write_text(json.dumps(stamped, indent=2, default=str))
    verdict = "EXACT MATCH" if result.exact else ("MATCH" if result.matches else "MISMATCH")
    click.echo(f"result: {verdict} (tolerance {allowed}); report: {report}")
    if not result.matches:
        raise CliError(f"model version {model_version} was not reproduced")
