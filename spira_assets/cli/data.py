"""Commands on the data: ``demo-data``, ``import-spira``, ``materialize``, ``quarantine-paths``,
``sql``."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spira_assets.deployment import EXECUTORS, Executor
from spira_assets.importers.grouping import MAX_PARTICIPANT_SHARE, MIN_FILES_FOR_SHARE
from spira_assets.storage.batches import InvalidBatchIdError, scan_landing
from spira_assets.storage.layout import as_upath

if TYPE_CHECKING:
    pass
from spira_assets.cli.app import (
    DAGSTER_URL_OPTION,
    DATA_DIR_OPTION,
    CliError,
    _demo_options,
    _layout,
    _local_root,
    _run_batches,
    _run_shared,
    main,
)


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
    "--max-participant-share",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=MAX_PARTICIPANT_SHARE,
    show_default=True,
    help="Refuse a grouping that puts more than this share of the files (and more than "
    f"{MIN_FILES_FOR_SHARE}) into one participant: a pattern that merges different people.",
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
    max_participant_share: float,
    default_utterance: str | None,
    collected_at: datetime | None,
    data_dir: str | None,
) -> None:
    """Turn a dataset in SPIRA's published layout into a landing batch, read as published:
    ACL2021 (metadata_train.csv, metadata_eval.csv, metadata_test.csv, noise_data.csv) or v3
    (patients.csv, controls.csv, noises.csv). Paths in the lists must stay inside SRC; the
    speakers must be grouped (participant column, --participant-map or --participant-pattern)."""
    from spira_assets.importers.grouping import GroupingRules
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
        GroupingRules(max_share=max_participant_share),
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
@DAGSTER_URL_OPTION
@DATA_DIR_OPTION
def materialize(
    batch_id: str, select: str, executor: Executor, dagster_url: str | None, data_dir: str | None
) -> None:
    """Register the batch partition if new and materialize its per-batch assets."""
    layout = _layout(data_dir)
    names = tuple(s.strip() for s in select.split(",") if s.strip())
    from spira_assets.app.runner import MaterializeError, split_selection

    try:
        per_batch, shared = split_selection(names)
    except MaterializeError as error:
        raise CliError(str(error)) from error
    if dagster_url:
        click.echo(f"launching through {dagster_url}")
    failed = []
    if shared:
        failed += _run_shared(layout, shared, executor=executor, dagster_url=dagster_url)
    if per_batch or not shared:
        failed += _run_batches(
            layout, [batch_id], per_batch, executor=executor, dagster_url=dagster_url
        )
    if failed:
        raise CliError(f"{', '.join(failed)} did not materialize cleanly (see the run in the UI)")


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

    from spira_assets.environment import pseudonym_key
    from spira_assets.ingest.raw_audio import list_batch_files
    from spira_assets.privacy import Pseudonymizer, printable
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
    pseudonymizer = Pseudonymizer(pseudonym_key(None, layout.local_root))
    for file in list_batch_files(folder).files:
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
