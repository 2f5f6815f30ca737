"""Turn a dataset in SPIRA's published layout into a landing batch.

SPIRA publishes CSV lists: ``patients.csv``, ``controls.csv`` and ``noises.csv`` whose first
column is an audio path (relative to the CSV), optionally followed by ``class``, ``sexo``,
``idade`` and ``nivel_falta_de_ar``. Our contract needs more (utterance, timestamp, device,
SpO2 for patients); what cannot be derived is either given on the command line or the row is
reported, never silently dropped or invented.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from spira_assets.audio.quality import SUPPORTED_SUFFIXES
from spira_assets.batches import METADATA_FILE, READY_MARKER, require_valid_batch_id
from spira_assets.ingest.schemas import SPO2_RI_THRESHOLD, UTTERANCES

LISTS = (("patients.csv", 1), ("controls.csv", 0))
NOISE_LIST = "noises.csv"
SPO2_COLUMNS = ("spo2", "oxigenacao", "oxygenation", "saturacao")
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


class SpiraImportError(RuntimeError):
    """The import cannot start (missing lists, existing batch, bad option)."""


@dataclass
class ImportOptions:
    patient_spo2: int | None = None
    participant_pattern: str | None = None
    default_utterance: str | None = None
    collected_at: datetime | None = None


@dataclass
class ImportReport:
    batch_id: str
    converted: int = 0
    noise_files: int = 0
    problems: list[str] = field(default_factory=list)


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


def import_spira(src: Path, batch_id: str, landing: Path, options: ImportOptions) -> ImportReport:
    require_valid_batch_id(batch_id)
    if options.patient_spo2 is not None and not 50 <= options.patient_spo2 < SPO2_RI_THRESHOLD:
        raise SpiraImportError(f"--patient-spo2 must be in 50..{SPO2_RI_THRESHOLD - 1}")
    if options.default_utterance and options.default_utterance not in UTTERANCES:
        raise SpiraImportError(f"--utterance must be one of {list(UTTERANCES)}")
    lists = [(src / name, label) for name, label in LISTS if (src / name).exists()]
    if not lists:
        raise SpiraImportError(f"{src} has neither patients.csv nor controls.csv")
    target = landing / batch_id
    if target.exists():
        raise SpiraImportError(f"landing batch {target} already exists; choose another --batch-id")
    pattern = re.compile(options.participant_pattern) if options.participant_pattern else None
    report = ImportReport(batch_id)
    out_rows: list[dict[str, object]] = []
    (target / "audio").mkdir(parents=True)
    for list_path, list_label in lists:
        for line, row in _rows(list_path):
            where = f"{list_path.name}:{line}"
            audio = (list_path.parent / row["file_path"]).resolve()
            if not audio.is_file():
                report.problems.append(f"{where}: audio file {row['file_path']!r} not found")
                continue
            label = int(row["class"]) if row.get("class", "").strip() in {"0", "1"} else list_label
            sex = _sex(row.get("sexo", ""))
            age = row.get("idade", "").strip()
            utterance = _utterance(row["file_path"], options.default_utterance)
            spo2 = next((row[c] for c in SPO2_COLUMNS if row.get(c, "").strip()), "")
            if label == 1 and not spo2 and options.patient_spo2 is not None:
                spo2 = str(options.patient_spo2)
            missing = [
                name
                for name, value in (
                    ("sex (sexo)", sex),
                    ("age (idade)", age),
                    ("utterance", utterance),
                )
                if not value
            ]
            if label == 1 and not spo2:
                missing.append(
                    "SpO2 (SPIRA's inclusion criterion was SpO2 < 92: "
                    "pass --patient-spo2 to state it)"
                )
            if missing:
                report.problems.append(f"{where}: cannot derive {', '.join(missing)}")
                continue
            if pattern:
                match = pattern.search(row["file_path"])
                participant = match.group(1) if match and match.groups() else None
                if not participant:
                    report.problems.append(f"{where}: --participant-pattern does not match")
                    continue
            else:
                participant = Path(row["file_path"]).stem
            relative = f"audio/{len(out_rows):05d}{audio.suffix.lower()}"
            shutil.copyfile(audio, target / relative)
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
    noise_list = src / NOISE_LIST
    if noise_list.exists():
        noise_dir = landing / "noise"
        noise_dir.mkdir(parents=True, exist_ok=True)
        for line, row in _rows(noise_list):
            audio = (src / row["file_path"]).resolve()
            if not audio.is_file():
                report.problems.append(
                    f"{NOISE_LIST}:{line}: noise file {row['file_path']!r} not found"
                )
                continue
            shutil.copyfile(audio, noise_dir / f"{batch_id}_{line:05d}{audio.suffix.lower()}")
            report.noise_files += 1
    (target / READY_MARKER).write_text(datetime.now(UTC).isoformat() + "\n", encoding="utf-8")
    return report
