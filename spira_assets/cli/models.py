"""Commands on models: ``predict``, ``reproduce`` (``sweep`` is in ``cli/sweep.py``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spira_assets.cli.app import DATA_DIR_OPTION, CliError, _layout, _local_root, main

if TYPE_CHECKING:
    from spira_assets.ml.inference import FileScore, ParticipantScore, Scorer


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
    from spira_assets.environment import config_home, pseudonym_key_setting
    from spira_assets.monitoring.recorder import PredictionRecorder, model_version_of
    from spira_assets.privacy import KeySource

    key = KeySource(pseudonym_key_setting(), config_home())
    recorder = PredictionRecorder(data_root, scorer, model_version_of(directory), "cli", key)
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
    from spira_assets.evaluation.reproduce import reproduce as run
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
