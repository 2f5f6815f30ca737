"""Turn a dataset in SPIRA's published layout into a landing batch, files read as published.

Two layouts are read without renaming anything (SPIRA.md, "Published data layout"):

- **ACL2021** (Edresson/SPIRA-ACL2021): ``metadata_train.csv``, ``metadata_eval.csv`` and
  ``metadata_test.csv`` with header ``file_path,class,sexo,idade,nivel_falta_de_ar`` (the split
  is given by the file; the 108-file test set is fixed), and a headerless ``noise_data.csv``,
  one path per line. ``--keep-published-split`` keeps that split: train, eval and test files
  become train, validation and test recordings, and ``dataset_split`` honours it.
- **v3**: ``patients.csv``, ``controls.csv``, ``noises.csv``, first column an audio path,
  optionally ``class``, ``sexo``, ``idade``, ``nivel_falta_de_ar``, with or without a header.

Paths are relative to the source folder. Our contract needs more (participant, utterance,
timestamp, device, SpO2 for patients); what cannot be derived is given on the command line or
the row is reported, never silently dropped or invented; a value missing from *every* row
(SPIRA's lists have no utterance and no SpO2) stops the import with one message naming the
option that supplies it.

Guarantees (docs/INGEST.md "Importing SPIRA's published layout"):

- **Speakers are grouped, and the grouping is checked, or the import says it cannot**
  (``grouping.py``): a participant column, a mapping file or a pattern must say who spoke.
- **Nothing outside the source folder is read or copied** (``lists.confined``).
- **A row that cannot be read is a rejection, never an abort**, and the batch appears whole
  or not at all: it is built in a hidden staging folder and renamed into place.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from spira_assets.importers.grouping import Grouper, GroupingError, GroupingRules
from spira_assets.importers.lists import ListRow, confined, read_list, sex_of, utterance_of
from spira_assets.ingest.provenance import (
    ACL2021_NOISE_LIST,
    BY_COLUMN,
    BY_MAP,
    IMPORT_REPORT_FILE,
    PER_FILE,
    PROVENANCE_FILE,
    BatchProvenance,
    ImportRejection,
    imported_noise_name,
)
from spira_assets.ingest.schemas import SPO2_RI_THRESHOLD, UTTERANCES
from spira_assets.storage.batches import (
    METADATA_FILE,
    NOISE_FOLDER,
    READY_MARKER,
    require_valid_batch_id,
)
from spira_assets.storage.staging import remove_stale_staging, staging_path

LISTS = (("patients.csv", 1), ("controls.csv", 0))  # v3: the label is the list's
NOISE_LIST = "noises.csv"
# ACL2021: the label is the class column; the split is the list's
ACL2021_LISTS = (
    ("metadata_train.csv", "train"),
    ("metadata_eval.csv", "validation"),
    ("metadata_test.csv", "test"),
)
REPORT_FILE = IMPORT_REPORT_FILE
SPO2_COLUMNS = ("spo2", "oxigenacao", "oxygenation", "saturacao")
OUTPUT_COLUMNS = (
    *("participant_id", "label", "sex", "age", "spo2", "collected_at"),
    *("device", "utterance", "audio_path"),
)
DEVICE = "spira-import"


class SpiraImportError(RuntimeError):
    """The import cannot start (missing lists, existing batch, bad option, no speaker
    grouping)."""


@dataclass
class ImportOptions:
    patient_spo2: int | None = None
    participant_pattern: str | None = None
    default_utterance: str | None = None
    collected_at: datetime | None = None
    participant_map: Path | None = None
    one_participant_per_file: bool = False
    keep_published_split: bool = False
    grouping_rules: GroupingRules = field(default_factory=GroupingRules)


@dataclass
class ImportReport:
    batch_id: str
    converted: int = 0
    noise_files: int = 0
    grouping: str = ""
    per_file: int = 0
    published_split: int = 0  # recordings whose split the dataset gives
    problems: list[str] = field(default_factory=list)  # with paths: for the raw zone only
    rejections: list[ImportRejection] = field(default_factory=list)  # without paths

    def refuse(self, item: str, rule: str, detail: str, path: str | None = None) -> None:
        self.rejections.append(ImportRejection(item, rule, detail))
        shown = f" ({path!r})" if path else ""
        self.problems.append(f"{item}: {rule}: {detail}{shown}")


def _require_systematic_fields(rows: list[ListRow], options: ImportOptions) -> None:
    """One message, before anything is written, for what no row carries: SPIRA's published
    lists have no utterance and no SpO2 column."""
    if not rows:
        return
    needs = []
    if options.default_utterance is None and not any(utterance_of(r.file_path, None) for r in rows):
        needs.append(
            f"no row names its utterance (SPIRA's lists have no utterance column and no file "
            f"name contains one of {list(UTTERANCES)}): pass --utterance U for the one the "
            "recordings share (ACL2021: each patient read one sentence, e.g. --utterance frase)"
        )

    def patient(row: ListRow) -> bool:
        given = row.values.get("class", "").strip()
        return given == "1" if given in {"0", "1"} else row.label == 1

    patients = [r for r in rows if patient(r)]
    if (
        patients
        and options.patient_spo2 is None
        and not any(r.values.get(c, "").strip() for r in patients for c in SPO2_COLUMNS)
    ):
        needs.append(
            "no patient row carries an SpO2 (SPIRA's lists have none; its inclusion criterion "
            f"was SpO2 < {SPO2_RI_THRESHOLD}): pass --patient-spo2 N to state it, e.g. 91"
        )
    if needs:
        raise SpiraImportError("; ".join(needs))


def _readable_list(root: Path, name: str, report: ImportReport) -> Path | None:
    if not (root / name).exists() and not (root / name).is_symlink():
        return None
    where = confined(root, name)
    if isinstance(where, str):
        report.refuse(name, "import_path_outside_source", f"the list itself is {where}")
        return None
    return where


def import_spira(src: Path, batch_id: str, landing: Path, options: ImportOptions) -> ImportReport:
    require_valid_batch_id(batch_id)
    if options.patient_spo2 is not None and not 50 <= options.patient_spo2 < SPO2_RI_THRESHOLD:
        raise SpiraImportError(f"--patient-spo2 must be in 50..{SPO2_RI_THRESHOLD - 1}")
    if options.default_utterance and options.default_utterance not in UTTERANCES:
        raise SpiraImportError(f"--utterance must be one of {list(UTTERANCES)}")
    root = Path(os.path.realpath(src))
    report = ImportReport(batch_id)
    acl2021 = any((root / name).exists() for name, _ in ACL2021_LISTS)
    lists: list[tuple[str, Path, int | None, str | None]]
    if acl2021:
        lists = [
            (name, path, None, split)
            for name, split in ACL2021_LISTS
            if (path := _readable_list(root, name, report)) is not None
        ]
    else:
        lists = [
            (name, path, label, None)
            for name, label in LISTS
            if (path := _readable_list(root, name, report)) is not None
        ]
        if options.keep_published_split:
            raise SpiraImportError(
                "--keep-published-split needs SPIRA's ACL2021 lists (metadata_train.csv, "
                "metadata_eval.csv, metadata_test.csv); the v3 lists carry no split"
            )
    if not lists:
        raise SpiraImportError(
            f"{src} has none of patients.csv, controls.csv or metadata_{{train,eval,test}}.csv "
            "inside it" + (f" ({'; '.join(report.problems)})" if report.problems else "")
        )
    target = landing / batch_id
    if target.exists():
        raise SpiraImportError(f"landing batch {target} already exists; choose another --batch-id")
    rows: list[ListRow] = []
    for name, path, label, split in lists:
        listed, unreadable = read_list(path)
        for line, why in unreadable:
            report.refuse(f"{name}:{line}", "import_malformed_row", why)
        rows += [
            ListRow(name, line, label, values, split if options.keep_published_split else None)
            for line, values in listed
        ]
    _require_systematic_fields(rows, options)
    try:  # refuses before anything is written
        grouper = Grouper(
            [(r.file_path, r.values) for r in rows],
            options.participant_pattern,
            options.participant_map,
            options.one_participant_per_file,
            options.grouping_rules,
        )
    except GroupingError as error:
        raise SpiraImportError(str(error)) from error
    report.grouping = grouper.method
    # built in a hidden staging folder and renamed into place whole: an import that stops
    # half-way leaves no batch behind (nor blocks a re-run with the same id)
    remove_stale_staging(landing, batch_id)
    staging = staging_path(target)
    try:
        _write_batch(staging, root, rows, grouper, options, report, lists)
        _import_noise(
            root, batch_id, staging, report, ACL2021_NOISE_LIST if acl2021 else NOISE_LIST
        )
        (staging / READY_MARKER).write_text(datetime.now(UTC).isoformat() + "\n", "utf-8")
        noise = landing / NOISE_FOLDER
        for staged in sorted((staging / NOISE_FOLDER).glob("*")):
            noise.mkdir(parents=True, exist_ok=True)
            staged.replace(noise / staged.name)
        shutil.rmtree(staging / NOISE_FOLDER, ignore_errors=True)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return report


def _convert(
    row: ListRow, root: Path, options: ImportOptions, report: ImportReport
) -> tuple[Path, dict[str, object]] | None:
    """The audio file and landing row of a list row, or None (the row refused, with why)."""
    audio = confined(root, row.file_path)
    if isinstance(audio, str):
        report.refuse(row.where, "import_path_outside_source", audio, row.file_path)
        return None
    if not audio.is_file():
        report.refuse(
            row.where, "import_audio_missing", "the listed audio file is not in the source",
            row.file_path,
        )  # fmt: skip
        return None
    values = row.values
    label = int(values["class"]) if values.get("class", "").strip() in {"0", "1"} else row.label
    if label is None:
        report.refuse(
            row.where, "import_missing_field", "cannot derive the class (0 or 1) of the row"
        )
        return None
    sex = sex_of(values.get("sexo", ""))
    age = values.get("idade", "").strip()
    utterance = utterance_of(row.file_path, options.default_utterance)
    spo2 = next((values[c] for c in SPO2_COLUMNS if values.get(c, "").strip()), "")
    if label == 1 and not spo2 and options.patient_spo2 is not None:
        spo2 = str(options.patient_spo2)
    missing = [
        name
        for name, value in (
            ("sex (sexo)", sex),
            ("age (idade)", age),
            ("utterance (no utterance name in the path: pass --utterance)", utterance),
        )
        if not value
    ]
    if label == 1 and not spo2:
        missing.append(
            "SpO2 (SPIRA's inclusion criterion was SpO2 < 92: pass --patient-spo2 to state it)"
        )
    if missing:
        report.refuse(row.where, "import_missing_field", f"cannot derive {', '.join(missing)}")
        return None
    stamp = options.collected_at or datetime.fromtimestamp(audio.stat().st_mtime, UTC)
    fields: dict[str, object] = {
        "label": label,
        "sex": sex,
        "age": age,
        "spo2": spo2,
        "collected_at": stamp.isoformat(timespec="seconds"),
        "device": DEVICE,
        "utterance": utterance,
    }
    return audio, fields


def _write_batch(
    folder: Path,
    root: Path,
    rows: list[ListRow],
    grouper: Grouper,
    options: ImportOptions,
    report: ImportReport,
    lists: list[tuple[str, Path, int | None, str | None]],
) -> None:
    """Every convertible row's audio and metadata row, the import record and report; a row
    that cannot be read or copied is refused like any other (``import_audio_unreadable``)."""
    out_rows: list[dict[str, object]] = []
    per_file: list[str] = []
    published: dict[str, str] = {}
    assumed: list[str] = []
    (folder / "audio").mkdir(parents=True)
    for row in rows:
        try:
            converted = _convert(row, root, options, report)
            if converted is None:
                continue
            audio, fields = converted
            participant, grouping = grouper(row.file_path, row.values)
            if not participant:
                how = {BY_COLUMN: "its participant column is empty", BY_MAP: "the map has no entry"}
                report.refuse(
                    row.where,
                    "import_participant_unknown",
                    how.get(grouper.method, "--participant-pattern does not match")
                    + "; fix the source or add --one-participant-per-file for such files",
                    row.file_path,
                )
                continue
            relative = f"audio/{len(out_rows):05d}{audio.suffix.lower()}"
            shutil.copyfile(audio, folder / relative)
        except OSError as error:
            report.refuse(
                row.where,
                "import_audio_unreadable",
                f"the listed file cannot be read ({error.strerror or type(error).__name__})",
                row.file_path,
            )
            continue
        if grouping == PER_FILE:
            per_file.append(relative)
        if row.published_split:
            published[relative] = row.published_split
        if utterance_of(row.file_path, None) is None:
            assumed.append(relative)
        out_rows.append({"participant_id": participant, **fields, "audio_path": relative})
    with (folder / METADATA_FILE).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=OUTPUT_COLUMNS)
        writer.writeheader()
        writer.writerows(out_rows)
    report.converted = len(out_rows)
    report.per_file = len(per_file)
    report.published_split = len(published)
    provenance = BatchProvenance(
        grouping=grouper.method,
        per_file_paths=tuple(per_file),
        rejections=tuple(report.rejections),
        source_lists=tuple(name for name, _, _, _ in lists),
        published_split=published,
        assumed_utterance=tuple(assumed),
    )
    (folder / PROVENANCE_FILE).write_text(provenance.to_json(), encoding="utf-8")
    (folder / REPORT_FILE).write_text(
        "".join(f"{line}\n" for line in report.problems), encoding="utf-8"
    )


def _import_noise(
    root: Path, batch_id: str, staging: Path, report: ImportReport, name: str
) -> None:
    """The noise list: every line is a noise file, copied (into the staging folder's
    ``noise/``, moved to ``landing/noise/`` with the batch) as ``<batch>_<list>_<line>`` so a
    profile can read the list as SPIRA did (its loader reads ``noise_data.csv`` with a header
    row and so never uses the first file: the ``spira-acl2021`` profile leaves it out, the
    platform profile uses every line)."""
    noise_list = _readable_list(root, name, report)
    if noise_list is None:
        return
    noise_dir = staging / NOISE_FOLDER
    noise_dir.mkdir(parents=True, exist_ok=True)
    listed, unreadable = read_list(noise_list)
    for line, why in unreadable:
        report.refuse(f"{name}:{line}", "import_malformed_row", why)
    for line, values in listed:
        where = f"{name}:{line}"
        text = values.get("file_path", "")
        try:
            audio = confined(root, text)
            if isinstance(audio, str):
                report.refuse(where, "import_path_outside_source", audio, text)
                continue
            if not audio.is_file():
                report.refuse(
                    where, "import_audio_missing", "the listed noise file is not in the source",
                    text,
                )  # fmt: skip
                continue
            copied = imported_noise_name(batch_id, name, line, audio.suffix.lower())
            shutil.copyfile(audio, noise_dir / copied)
        except OSError as error:
            report.refuse(
                where,
                "import_audio_unreadable",
                f"the listed noise file cannot be read ({error.strerror or type(error).__name__})",
                text,
            )
            continue
        report.noise_files += 1
