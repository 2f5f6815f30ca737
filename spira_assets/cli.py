"""The ``spira`` command line. Every command exits non-zero with a one-line reason on failure."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spira_assets.batches import InvalidBatchIdError, scan_landing
from spira_assets.deployment import EXECUTORS, Executor
from spira_assets.layout import DataLayout, as_upath, default_data_dir

if TYPE_CHECKING:
    import dagster as dg

    from spira_assets.ml.inference import FileScore
    from spira_assets.runner import RunOutcome


class CliError(click.ClickException):
    def show(self, file: object = None) -> None:
        click.echo(f"spira: error: {self.message}", err=True)


def _layout(data_dir: str | None) -> DataLayout:
    return DataLayout.from_location(data_dir or default_data_dir())


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


def demo_training(
    profile: str, seeds: list[int], epochs: int, warmup: int | None
) -> dict[str, object]:
    """Training resource values for a demo-sized run of ``profile``: fewer epochs; the
    platform profile also warms up faster and stops early on the small corpus."""
    training: dict[str, object] = {"profile": profile, "seeds": seeds, "max_epochs": epochs}
    if profile == "platform":
        training |= {"warmup_steps": warmup or 100, "patience": max(2, epochs // 2)}
    elif warmup:
        training["warmup_steps"] = warmup
    return training


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


@main.command("demo-data")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Landing folder to write (batches + noise/).",
)
@_demo_options
@click.option(
    "--age-shift",
    default=0,
    show_default=True,
    type=int,
    help="Years added to every age: a drifted batch for the drift check.",
)
@click.option(
    "--devices",
    default="",
    help="Comma-separated devices every participant uses (android-app, ios-app, web, "
    "whatsapp): a drifted batch for the drift check.",
)
def demo_data(
    out: Path,
    batches: int,
    participants: int,
    seed: int,
    effect_size: float,
    defect_rate: float,
    age_shift: int,
    devices: str,
) -> None:
    """Write a deterministic SPIRA-like demo landing zone."""
    from spira_assets.demo.corpus import DemoSpec, generate_corpus

    existing = scan_landing(as_upath(out)) if out.exists() else None
    if existing and (existing.complete or existing.incomplete):
        raise CliError(f"{out} already contains batches; choose an empty folder")
    try:
        device_list = tuple(d.strip() for d in devices.split(",") if d.strip())
        manifests = generate_corpus(
            DemoSpec(
                out,
                batches,
                participants,
                seed,
                effect_size,
                defect_rate,
                age_shift=age_shift,
                devices=device_list,
            )
        )
    except ValueError as error:
        raise CliError(str(error)) from error
    for m in manifests:
        click.echo(
            f"{m.batch_id}: {m.rows} metadata rows, {m.files} audio files, "
            f"{len(m.defects)} injected defects"
        )
    click.echo(f"noise: {out / 'noise'}")


@main.command("import-spira")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--batch-id", required=True, help="Name of the new landing batch.")
@click.option(
    "--landing",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Landing folder (default: <data dir>/landing).",
)
@click.option(
    "--patient-spo2",
    type=int,
    default=None,
    help="SpO2 to record for patients whose list has none (must be < 92).",
)
@click.option(
    "--participant-pattern",
    default=None,
    help="Regex whose first group extracts the speaker's id from a file path, e.g. "
    "'([^/_]+)_[^/]*$' for <id>_<k>.wav. Needed unless the lists have a participant column "
    "or --participant-map is given.",
)
@click.option(
    "--participant-map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV with columns file_path,participant_id saying who spoke each listed file.",
)
@click.option(
    "--keep-published-split",
    is_flag=True,
    help="ACL2021 layout: keep the dataset's split (metadata_train/eval/test.csv become "
    "train, validation and test recordings; the split check and the evaluation honour it).",
)
@click.option(
    "--one-participant-per-file",
    is_flag=True,
    help="Treat each file as its own participant (alone, or for files the pattern or map does "
    "not cover). One voice may then reach two splits: the batch records it and every report "
    "says speaker independence is not guaranteed.",
)
@click.option(
    "--utterance",
    "default_utterance",
    default=None,
    help="Utterance for files whose path names none.",
)
@click.option(
    "--collected-at",
    type=click.DateTime(),
    default=None,
    help="Collection time for every row (default: each file's modification time).",
)
@DATA_DIR_OPTION
def import_spira_command(
    src: Path,
    batch_id: str,
    landing: Path | None,
    patient_spo2: int | None,
    participant_pattern: str | None,
    participant_map: Path | None,
    keep_published_split: bool,
    one_participant_per_file: bool,
    default_utterance: str | None,
    collected_at: datetime | None,
    data_dir: str | None,
) -> None:
    """Turn a dataset in SPIRA's published layout into a landing batch, read as published:
    ACL2021 (metadata_train.csv, metadata_eval.csv, metadata_test.csv, noise_data.csv) or v3
    (patients.csv, controls.csv, noises.csv). Paths in the lists must stay inside SRC; the
    speakers must be grouped (participant column, --participant-map or --participant-pattern)."""
    from spira_assets.importers.spira_layout import (
        REPORT_FILE,
        ImportOptions,
        SpiraImportError,
        import_spira,
    )
    from spira_assets.ingest.provenance import PER_FILE

    target = landing or _local_root(_layout(data_dir)) / "landing"
    options = ImportOptions(
        patient_spo2,
        participant_pattern,
        default_utterance,
        collected_at,
        participant_map,
        one_participant_per_file,
        keep_published_split,
    )
    try:
        report = import_spira(src, batch_id, target, options)
    except (SpiraImportError, InvalidBatchIdError) as error:
        raise CliError(str(error)) from error
    except re.error as error:
        raise CliError(
            f"--participant-pattern is not a valid regular expression: {error}"
        ) from error
    report_file = target / batch_id / REPORT_FILE
    for problem in report.problems:
        click.echo(f"not converted: {problem}")
    click.echo(
        f"{batch_id}: {report.converted} recordings grouped by {report.grouping}, "
        f"{report.noise_files} noise files, {len(report.rejections)} rows not converted "
        f"(listed in {report_file}; quarantine stage 'import' once ingested)"
    )
    if report.published_split:
        click.echo(f"kept the published split of {report.published_split} recordings")
    if report.per_file:
        click.echo(
            f"warning: {report.per_file} recordings are grouped {PER_FILE}: speaker "
            "independence is not guaranteed for them, and every report will say so"
        )
    if report.converted == 0:
        raise CliError("no row could be converted")


@main.command()
@click.option("--batch", "batch_id", required=True, help="Batch (partition) to materialize.")
@click.option(
    "--select",
    default="",
    help="Comma-separated assets (default: every per-batch asset). Shared assets such as "
    "hospital_noise are materialized in their own run first.",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default="in_process",
    show_default=True,
    help="in_process: every step in this process; multiprocess: one process per step, as "
    "runs launched by the daemon (several batches at once against a PostgreSQL instance).",
)
@DATA_DIR_OPTION
def materialize(batch_id: str, select: str, executor: Executor, data_dir: str | None) -> None:
    """Register the batch partition if new and materialize its per-batch assets."""
    layout = _layout(data_dir)
    names = tuple(s.strip() for s in select.split(",") if s.strip())
    from spira_assets.runner import MaterializeError, split_selection

    try:
        per_batch, shared = split_selection(names)
    except MaterializeError as error:
        raise CliError(str(error)) from error
    failed = []
    if shared:
        failed += _run_shared(layout, shared, executor=executor)
    if per_batch or not shared:
        failed += _run_batches(layout, [batch_id], per_batch, executor=executor)
    if failed:
        raise CliError(f"{', '.join(failed)} did not materialize cleanly (see the run in the UI)")


def _instance(layout: DataLayout) -> dg.DagsterInstance:
    os.environ["SPIRA_DATA_DIR"] = str(layout.root)
    from spira_assets.instance import local_instance

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


def _run_shared(
    layout: DataLayout,
    select: tuple[str, ...],
    resources: dict[str, object] | None = None,
    log_level: str = "WARNING",
    tolerated: frozenset[str] = frozenset(),
    executor: Executor = "in_process",
) -> list[str]:
    from spira_assets.runner import materialize_shared

    run = materialize_shared(
        _instance(layout),
        select,
        log_level,
        resources,
        executor=executor,
    )
    return [] if _report(run, tolerated) else [run.label]


def _run_batches(
    layout: DataLayout,
    batch_ids: list[str],
    select: tuple[str, ...] = (),
    executor: Executor = "in_process",
) -> list[str]:
    from spira_assets.runner import MaterializeError, materialize_batch

    instance = _instance(layout)
    failed = []
    for batch_id in batch_ids:
        try:
            run = materialize_batch(
                instance,
                layout,
                batch_id,
                select,
                executor=executor,
            )
        except (MaterializeError, InvalidBatchIdError) as error:
            raise CliError(str(error)) from error
        if not _report(run):
            failed.append(batch_id)
    return failed


@main.command()
@DATA_DIR_OPTION
@_demo_options
@click.option(
    "--seeds",
    default="42,43,46",
    show_default=True,
    help="Training seeds (one model each; the best by validation loss is kept, and with the "
    "spira-acl2021 profile every seed's model too).",
)
@click.option(
    "--epochs",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Maximum epochs per seed (the platform profile's own default is 30, SPIRA's 1000).",
)
@click.option(
    "--warmup",
    default=None,
    type=click.IntRange(1),
    help="Noam warm-up steps (default: 100 for the platform profile on the small demo "
    "corpus; the spira-acl2021 profile keeps its published 1000).",
)
@PROFILE_OPTION
def demo(
    data_dir: str | None,
    batches: int,
    participants: int,
    seed: int,
    effect_size: float,
    defect_rate: float,
    seeds: str,
    epochs: int,
    warmup: int | None,
    profile: str,
) -> None:
    """The main job: generate the demo corpus if absent, materialize the whole graph for every
    batch, print a summary."""
    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.summary import summarize

    layout = _layout(data_dir)
    landing = _local_root(layout) / "landing"
    scan = scan_landing(layout.landing)
    if not scan.complete:
        click.echo(f"generating demo corpus in {landing} ...")
        generate_corpus(DemoSpec(landing, batches, participants, seed, effect_size, defect_rate))
        scan = scan_landing(layout.landing)
    else:
        click.echo(f"using the {len(scan.complete)} complete batches already in {landing}")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as error:
        raise CliError(f"--seeds must be comma-separated integers, got {seeds!r}") from error
    failed = _run_shared(layout, ("hospital_noise",))
    failed += _run_batches(layout, list(scan.complete))
    click.echo(
        f"training SpiraConv ({profile} profile), seeds {seed_list}, up to {epochs} epochs each ..."
    )
    training = demo_training(profile, seed_list, epochs, warmup)
    failed += _run_shared(
        layout,
        ("dataset_split", "spira_model", "evaluation_report", "champion"),
        {"training": training},
        log_level="INFO",
        tolerated=frozenset({"champion:promotion_gate"}),  # a refusal is a valid outcome
    )
    from spira_assets.resources import FeatureSettings

    config_hash = FeatureSettings().config().config_hash()
    summaries, by_rule = summarize(layout, list(scan.complete), config_hash)
    click.echo("")
    click.echo(
        f"{'batch':<12}{'files':>7}{'acc':>6}{'rows':>7}{'acc':>6}{'quar':>6}"
        f"{'pat':>6}{'ctl':>6}{'hours':>7}{'feat':>6}{'windows':>9}  defects caught"
    )
    all_ok = True
    for s in summaries:
        v = s.verification
        caught = f"{v.caught}/{v.defects}" if v else "n/a (not a demo batch)"
        click.echo(
            f"{s.batch_id:<12}{s.files_in:>7}{s.files_accepted:>6}{s.rows_in:>7}"
            f"{s.rows_accepted:>6}{s.rows_quarantined:>6}{s.patients:>6}{s.controls:>6}"
            f"{s.hours:>7.2f}{s.feature_recordings:>6}{s.windows:>9}  {caught}"
        )
        if v and not v.ok:
            all_ok = False
            for problem in v.problems:
                click.echo(f"    mismatch: {problem}")
    click.echo("\nquarantine by stage and rule:")
    for stage, rule, count in by_rule.iter_rows():
        click.echo(f"  {stage:<20}{rule:<28}{count:>5}")
    click.echo(
        "\ncolumns: files in/accepted, metadata rows in/accepted/quarantined, participants "
        "(patients, controls), accepted hours, recordings with features, 4 s windows"
    )
    click.echo(f"features: {layout.root / 'features' / config_hash} (config {config_hash})")
    click.echo(f"warehouse: {layout.warehouse}")
    _print_model(layout)
    click.echo("UI: make ui  ->  http://127.0.0.1:3000")
    if failed or not all_ok:
        raise CliError(f"demo finished with problems in {failed or 'defect verification'}")


def _print_model(layout: DataLayout) -> None:
    from spira_assets.ml.tracking import default_tracking_uri
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import MODEL_VERSIONS

    models = Lake(layout.lake).read_table(MODEL_VERSIONS).sort("trained_at")
    if models.is_empty():
        click.echo("model: none trained")
        return
    m = models.row(-1, named=True)
    click.echo(
        f"model: version {m['model_version']} (registered v{m['registered_version']}), "
        f"best seed {m['best_seed']} epoch {m['best_epoch']} on {m['device']}: validation "
        f"AUROC {m['val_auroc']:.3f} (seeds: {m['val_auroc_mean']:.3f} +/- "
        f"{m['val_auroc_std']:.3f}), loss {m['val_loss']:.3f}"
    )
    click.echo(f"model files: {m['directory']}")
    uri = default_tracking_uri(layout.local_root)
    click.echo(f"MLflow: mlflow ui --backend-store-uri {uri}")
    _print_evaluation(layout)


def _print_evaluation(layout: DataLayout) -> None:
    import polars as pl

    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import EVALUATION_METRICS, PROMOTIONS

    lake = Lake(layout.lake)
    decisions = lake.read_table(PROMOTIONS).sort("decided_at")
    if decisions.is_empty():
        click.echo("evaluation: none")
        return
    last = decisions.row(-1, named=True)
    version = last["candidate_version"]
    every = lake.read_part(EVALUATION_METRICS, version)
    metrics = every.filter(
        (pl.col("role") == "candidate")
        & (pl.col("level") == "recording")
        & pl.col("metric").is_in(["auroc", "accuracy", "sensitivity", "specificity"])
    )
    click.echo(f"evaluation of {version} on held-out test participants (95% CI):")
    for condition, metric, value, low, high in metrics.select(
        "condition", "metric", "value", "ci_low", "ci_high"
    ).iter_rows():
        click.echo(f"  {condition:<16}{metric:<12}{value:6.3f}  [{low:.3f}, {high:.3f}]")
    seeds = every.filter(pl.col("role").str.starts_with("seed "))
    if not seeds.is_empty():
        click.echo("SPIRA's published test, accuracy at 0.5 per seed (clean / published noisy):")
        for role in seeds.get_column("role").unique(maintain_order=True):
            row = dict(seeds.filter(pl.col("role") == role).select("condition", "value").rows())
            noisy = row.get("published_noisy")
            click.echo(
                f"  {role:<12}{row.get('clean', float('nan')):6.3f} / "
                + (f"{noisy:6.3f}" if noisy is not None else "n/a")
            )
    reasons = ", ".join(json.loads(last["reasons"])) or "all criteria met"
    click.echo(
        f"gate: {'PASSED' if last['passed'] else 'FAILED'} ({reasons}); "
        f"{len(decisions)} decision(s) in the promotions table"
    )
    reports = layout.local_root / "reports" / version
    click.echo(f"report: {reports / 'evaluation.html'}")
    click.echo(f"model card: {reports / 'model_card.html'}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per file (full-precision probability), for scripts.",
)
@DATA_DIR_OPTION
def predict(files: tuple[Path, ...], device: str, as_json: bool, data_dir: str | None) -> None:
    """Score audio files with the champion model: probability of respiratory insufficiency and
    the decision at the threshold chosen on validation data, per file."""
    from spira_assets.ml.inference import score_files
    from spira_assets.ml.tracking import RegistryError, champion_model_version, default_tracking_uri

    layout = _layout(data_dir)
    root = _local_root(layout)
    try:
        version = champion_model_version(default_tracking_uri(root))
    except RegistryError as error:
        raise CliError(str(error)) from error
    if version is None or not (root / "models" / version).exists():
        raise CliError("no champion model yet: run `spira demo` (or materialize `champion`) first")
    scores = score_files(list(files), root / "models" / version, device)
    if as_json:
        for s in scores:
            click.echo(json.dumps({"model_version": version, **asdict(s)}))
    else:
        _print_scores(version, scores)
    failed = sum(1 for s in scores if s.error)
    if failed:
        raise CliError(f"{failed} of {len(scores)} files could not be scored")


def _print_scores(version: str, scores: list[FileScore]) -> None:
    click.echo(f"champion model {version}")
    click.echo(f"{'probability':>11}  {'decision':<26}  file")
    for s in scores:
        if s.error:
            click.echo(f"{'-':>11}  {'error':<26}  {s.path}: {s.error}")
        else:
            decision = "respiratory insufficiency" if s.decision else "no insufficiency"
            click.echo(f"{s.probability:>11.4f}  {decision:<26}  {s.path}")


@main.command("quarantine-paths")
@click.option("--batch", "batch_id", required=True, help="Batch whose withheld names to show.")
@DATA_DIR_OPTION
def quarantine_paths(batch_id: str, data_dir: str | None) -> None:
    """Show the real file names behind '[name withheld <tag>]' quarantine items of a batch.

    When a batch's metadata.csv is missing or unreadable, its file names (which may contain
    identifiers) are withheld from every table. This command recomputes each file's keyed tag
    inside the raw zone and prints the names on this terminal only; nothing is stored."""
    import re as regex

    import polars as pl

    from spira_assets.ingest.raw_audio import list_batch_files
    from spira_assets.privacy import Pseudonymizer, load_pseudonym_key, printable
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import QUARANTINE

    layout = _layout(data_dir)
    try:
        folder = layout.batch_dir(batch_id)
    except InvalidBatchIdError as error:
        raise CliError(str(error)) from error
    if not folder.is_dir():
        raise CliError(f"batch {batch_id}: no landing folder {folder}")
    quarantine = Lake(layout.lake).read_table(QUARANTINE).filter(pl.col("batch_id") == batch_id)
    withheld = regex.compile(r"\[name withheld ([0-9a-f]{10})\]")
    tags = {m.group(1) for item in quarantine.get_column("item") if (m := withheld.search(item))}
    if not tags:
        click.echo(f"batch {batch_id}: no withheld names in its quarantine records")
        return
    pseudonymizer = Pseudonymizer(load_pseudonym_key())
    for file in list_batch_files(folder):
        tag = pseudonymizer.path_key(file.relative_path)[:10]
        if tag in tags:
            click.echo(f"{tag}  {printable(file.relative_path)}")


@main.command()
@click.argument("query")
@DATA_DIR_OPTION
def sql(query: str, data_dir: str | None) -> None:
    """Run a read-only SQL query against the warehouse and print the result."""
    import duckdb
    import polars as pl

    from spira_assets.storage.lake import Lake
    from spira_assets.storage.warehouse import Warehouse

    layout = _layout(data_dir)
    try:
        frame = Warehouse(layout.warehouse, Lake(layout.lake)).query(query)
    except duckdb.Error as error:
        raise CliError(str(error).splitlines()[0]) from error
    with pl.Config(tbl_rows=200, tbl_cols=30, fmt_str_lengths=80, tbl_width_chars=200):
        click.echo(frame)


from spira_assets import cli_models  # noqa: E402,F401  (registers sweep and reproduce)

if __name__ == "__main__":
    sys.exit(main())
