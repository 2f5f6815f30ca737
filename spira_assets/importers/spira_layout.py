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

Two guarantees hold here:

- **Speakers are grouped, or the import says it cannot.** SPIRA's lists have no participant
  column; a participant column, a mapping file or a file-name pattern must say who spoke.
  Without one the import refuses (proposing a pattern when names look like ``<id>_<k>``), since
  treating each file as its own person lets one voice reach both training and test. One
  participant per file happens only with ``--one-participant-per-file``, and is recorded in the
  batch (``_import.json``) so every later report says speaker independence is not guaranteed.
- **Nothing outside the source folder is read or copied.** A list naming an absolute path, a
  path with ``..`` or a link leading out of the folder is refused row by row.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from spira_assets.audio.quality import SUPPORTED_SUFFIXES
from spira_assets.batches import METADATA_FILE, READY_MARKER, require_valid_batch_id
from spira_assets.ingest.provenance import (
    ACL2021_NOISE_LIST,
    BY_COLUMN,
    BY_MAP,
    BY_PATTERN,
    PER_FILE,
    PROVENANCE_FILE,
    BatchProvenance,
    ImportRejection,
    imported_noise_name,
)
from spira_assets.ingest.schemas import SPO2_RI_THRESHOLD, UTTERANCES

LISTS = (("patients.csv", 1), ("controls.csv", 0))  # v3: the label is the list's
NOISE_LIST = "noises.csv"
# ACL2021: the label is the class column; the split is the list's
ACL2021_LISTS = (
    ("metadata_train.csv", "train"),
    ("metadata_eval.csv", "validation"),
    ("metadata_test.csv", "test"),
)
REPORT_FILE = "_import_report.txt"
SPO2_COLUMNS = ("spo2", "oxigenacao", "oxygenation", "saturacao")
PARTICIPANT_COLUMNS = ("participant_id", "participant", "speaker_id", "speaker")
OUTPUT_COLUMNS = (
    "participant_id",
    "label",
    "sex",
    "age",
    "spo2",
    "collected_at",
    "device",
    "utterance",
    "audio_path",
)
DEVICE = "spira-import"
PROPOSED_PATTERN = r"([^/_]+)_[^/]*$"


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


@dataclass(frozen=True)
class ListRow:
    list_name: str
    line: int
    label: int | None  # the list's label (v3), None: from the class column (ACL2021)
    values: dict[str, str]
    published_split: str | None = None

    @property
    def where(self) -> str:
        return f"{self.list_name}:{self.line}"

    @property
    def file_path(self) -> str:
        return self.values.get("file_path", "")


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        records = [r for r in csv.reader(handle) if any(c.strip() for c in r)]
    if not records:
        return []
    first = records[0]
    has_header = Path(first[0].strip()).suffix.lower() not in SUPPORTED_SUFFIXES
    names = [c.strip().lower() for c in first] if has_header else ["file_path"]
    names[0] = "file_path"
    body = records[1:] if has_header else records
    start = 2 if has_header else 1
    return [
        (n, dict(zip(names, (c.strip() for c in r), strict=False)))
        for n, r in enumerate(body, start)
    ]


def confined(root: Path, listed: str) -> Path | str:
    """The file a list row names, resolved inside ``root`` (a real, absolute folder), or why
    it is refused. Absolute paths, drive letters, URLs and ``..`` are refused before the file
    system is touched; a link is followed only to check that it stays inside ``root``."""
    text = listed.strip().replace("\\", "/")
    if not text:
        return "the row names no file"
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or "://" in text:
        return "an absolute path or URL: list files relative to the source folder"
    if ".." in PurePosixPath(text).parts:
        return "a path with '..' leaves the source folder"
    real = Path(os.path.realpath(root / text))
    if real != root and root not in real.parents:
        return "a link leading outside the source folder"
    return real


def _sex(value: str) -> str | None:
    lowered = value.strip().lower()
    if lowered.startswith(("f", "w")):
        return "F"
    if lowered.startswith(("m", "h")):
        return "M"
    return None


def _utterance(path: str, default: str | None) -> str | None:
    lowered = path.lower()
    for utterance in UTTERANCES:
        if utterance in lowered:
            return utterance
    return default


def _participant_column(rows: list[ListRow]) -> str | None:
    columns = {name for row in rows for name, v in row.values.items() if v}
    return next((c for c in PARTICIPANT_COLUMNS if c in columns), None)


def proposed_grouping(paths: list[str]) -> str | None:
    """A suggestion for ``--participant-pattern`` when file names look like ``<id>_<k>``
    (several files sharing the part before the first underscore), else None."""
    stems = [PurePosixPath(p.replace("\\", "/")).name for p in paths]
    prefixes = [s.split("_", 1)[0] for s in stems if "_" in s]
    counts = Counter(prefixes)
    if len(counts) < 2 or max(counts.values()) < 2:
        return None
    shared = sum(n for n in counts.values() if n > 1)
    example = next(s for s in stems if "_" in s and counts[s.split("_", 1)[0]] > 1)
    return (
        f"file names look like <id>_<k> ({shared} of {len(stems)} files share their prefix "
        f"with another file, e.g. {example!r} -> participant {example.split('_', 1)[0]!r}); "
        f"if that prefix is the speaker, pass --participant-pattern '{PROPOSED_PATTERN}'"
    )


def _refusal(rows: list[ListRow]) -> SpiraImportError:
    proposal = proposed_grouping([r.file_path for r in rows])
    return SpiraImportError(
        "cannot tell which recordings belong to the same person: the lists have no participant "
        "column, and no --participant-pattern or --participant-map was given. Treating every "
        "file as its own participant would let one speaker's recordings reach training and "
        "test, so held-out figures would measure speaker recognition, not respiratory "
        "insufficiency. "
        + (f"Proposal: {proposal}. " if proposal else "")
        + "Otherwise supply --participant-map FILE (columns file_path,participant_id), or, "
        "knowing the consequence, --one-participant-per-file (recorded in the batch: every "
        "report will say speaker independence is not guaranteed)."
    )


def _load_map(path: Path) -> dict[str, str]:
    mapping: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file_path", "participant_id"} <= set(reader.fieldnames):
            raise SpiraImportError(
                f"--participant-map {path}: needs a header with file_path and participant_id"
            )
        for row in reader:
            key = (row.get("file_path") or "").strip().replace("\\", "/")
            value = (row.get("participant_id") or "").strip()
            if key and value:
                mapping[key] = value
    return mapping


class _Grouper:
    """Who spoke each row, by the one grouping the options and lists allow."""

    def __init__(self, rows: list[ListRow], options: ImportOptions) -> None:
        self.column = _participant_column(rows)
        self.mapping = _load_map(options.participant_map) if options.participant_map else None
        self.pattern = (
            re.compile(options.participant_pattern) if options.participant_pattern else None
        )
        if self.pattern is not None and self.pattern.groups < 1:
            raise SpiraImportError("--participant-pattern needs a group: (...) around the id")
        self.fallback = options.one_participant_per_file
        if self.column:
            self.method = BY_COLUMN
        elif self.mapping is not None:
            self.method = BY_MAP
        elif self.pattern is not None:
            self.method = BY_PATTERN
        elif self.fallback:
            self.method = PER_FILE
        else:
            raise _refusal(rows)

    def __call__(self, row: ListRow) -> tuple[str | None, str]:
        """(participant id or None, grouping of this row)."""
        found: str | None = None
        if self.method == BY_COLUMN and self.column:
            found = row.values.get(self.column, "").strip() or None
        elif self.method == BY_MAP and self.mapping is not None:
            found = self.mapping.get(row.file_path.strip().replace("\\", "/"))
        elif self.method == BY_PATTERN and self.pattern is not None:
            match = self.pattern.search(row.file_path)
            found = match.group(1) if match and match.group(1) else None
        if found:
            return found, self.method
        if self.fallback:
            return PurePosixPath(row.file_path.replace("\\", "/")).stem, PER_FILE
        return None, self.method


def _require_systematic_fields(rows: list[ListRow], options: ImportOptions) -> None:
    """One message, before anything is written, for what no row carries: SPIRA's published
    lists have no utterance and no SpO2 column."""
    if not rows:
        return
    needs = []
    if options.default_utterance is None and not any(_utterance(r.file_path, None) for r in rows):
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
    rows = [
        ListRow(name, line, label, values, split if options.keep_published_split else None)
        for name, path, label, split in lists
        for line, values in _rows(path)
    ]
    _require_systematic_fields(rows, options)
    grouper = _Grouper(rows, options)  # refuses before anything is written
    report.grouping = grouper.method
    out_rows: list[dict[str, object]] = []
    per_file: list[str] = []
    published: dict[str, str] = {}
    (target / "audio").mkdir(parents=True)
    for row in rows:
        audio = confined(root, row.file_path)
        if isinstance(audio, str):
            report.refuse(row.where, "import_path_outside_source", audio, row.file_path)
            continue
        if not audio.is_file():
            report.refuse(
                row.where,
                "import_audio_missing",
                "the listed audio file is not in the source",
                row.file_path,
            )
            continue
        values = row.values
        label = int(values["class"]) if values.get("class", "").strip() in {"0", "1"} else row.label
        if label is None:
            report.refuse(
                row.where, "import_missing_field", "cannot derive the class (0 or 1) of the row"
            )
            continue
        sex = _sex(values.get("sexo", ""))
        age = values.get("idade", "").strip()
        utterance = _utterance(row.file_path, options.default_utterance)
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
            continue
        participant, grouping = grouper(row)
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
        shutil.copyfile(audio, target / relative)
        if grouping == PER_FILE:
            per_file.append(relative)
        if row.published_split:
            published[relative] = row.published_split
        stamp = options.collected_at or datetime.fromtimestamp(audio.stat().st_mtime, UTC)
        out_rows.append(
            {
                "participant_id": participant,
                "label": label,
                "sex": sex,
                "age": age,
                "spo2": spo2,
                "collected_at": stamp.isoformat(timespec="seconds"),
                "device": DEVICE,
                "utterance": utterance,
                "audio_path": relative,
            }
        )
    with (target / METADATA_FILE).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=OUTPUT_COLUMNS)
        writer.writeheader()
        writer.writerows(out_rows)
    report.converted = len(out_rows)
    report.per_file = len(per_file)
    _import_noise(root, batch_id, landing, report, ACL2021_NOISE_LIST if acl2021 else NOISE_LIST)
    provenance = BatchProvenance(
        grouping=grouper.method,
        per_file_paths=tuple(per_file),
        rejections=tuple(report.rejections),
        source_lists=tuple(name for name, _, _, _ in lists),
        published_split=published,
    )
    report.published_split = len(published)
    (target / PROVENANCE_FILE).write_text(provenance.to_json(), encoding="utf-8")
    (target / REPORT_FILE).write_text(
        "".join(f"{line}\n" for line in report.problems), encoding="utf-8"
    )
    (target / READY_MARKER).write_text(datetime.now(UTC).isoformat() + "\n", encoding="utf-8")
    return report


def _import_noise(
    root: Path, batch_id: str, landing: Path, report: ImportReport, name: str
) -> None:
    """The noise list: every line is a noise file, copied as ``<batch>_<list>_<line>`` so a
    profile can read the list as SPIRA did (its loader reads ``noise_data.csv`` with a header
    row and so never uses the first file: the ``spira-acl2021`` profile leaves it out, the
    platform profile uses every line)."""
    noise_list = _readable_list(root, name, report)
    if noise_list is None:
        return
    noise_dir = landing / "noise"
    noise_dir.mkdir(parents=True, exist_ok=True)
    for line, values in _rows(noise_list):
        where = f"{name}:{line}"
        listed = values.get("file_path", "")
        audio = confined(root, listed)
        if isinstance(audio, str):
            report.refuse(where, "import_path_outside_source", audio, listed)
            continue
        if not audio.is_file():
            report.refuse(
                where, "import_audio_missing", "the listed noise file is not in the source", listed
            )
            continue
        shutil.copyfile(
            audio, noise_dir / imported_noise_name(batch_id, name, line, audio.suffix.lower())
        )
        report.noise_files += 1
