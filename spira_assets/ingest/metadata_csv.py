"""Reading ``metadata.csv`` into records, tolerant of what spreadsheets and apps produce.

The standard library's csv reader splits records (quoted fields, CRLF or LF, embedded newlines)
so that one ragged record is rejected on its own; polars' reader would either refuse the whole
file or, with ``truncate_ragged_lines``, silently cut values. Everything after the split is
polars. Row numbers count the header as row 1, like a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import polars as pl

ROW_NUMBER = "row_number"
REQUIRED_COLUMNS = (
    "participant_id",
    "label",
    "sex",
    "age",
    "collected_at",
    "device",
    "utterance",
    "audio_path",
)
OPTIONAL_COLUMNS = ("hospital_record", "phone", "spo2", "respiratory_rate")
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
PHI_COLUMNS = ("participant_id", "hospital_record", "phone")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class MetadataFileError(Exception):
    """The file as a whole cannot be read (rule + what to do)."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class MetadataCsv:
    header: tuple[str, ...]
    frame: pl.DataFrame  # all String, stripped, empty -> null, plus row_number
    malformed: tuple[tuple[int, int], ...]  # (row_number, fields found)
    ragged_cells: tuple[str, ...] = ()  # every non-empty cell of the malformed records

    @property
    def rows_in(self) -> int:
        return self.frame.height + len(self.malformed)

    @property
    def unknown_columns(self) -> tuple[str, ...]:
        """Header cells that are not contract columns, as written (raw zone only)."""
        return tuple(c for c in self.header if c not in KNOWN_COLUMNS)

    @property
    def unknown_columns_shown(self) -> tuple[str, ...]:
        """``unknown_columns`` as they may leave the raw zone. A header that lacks required
        columns may be a data row (a file without a header: an id, a record number, a
        phone), so its cells are described by position and shape, never quoted; only a
        header holding every required column is taken for a header and its names shown."""
        if not self.missing_required:
            return self.unknown_columns
        return tuple(
            f"column {i} ({shape(c)})"
            for i, c in enumerate(self.header, start=1)
            if c not in KNOWN_COLUMNS
        )

    @property
    def missing_required(self) -> tuple[str, ...]:
        return tuple(c for c in REQUIRED_COLUMNS if c not in self.header)


def shape(value: object) -> str:
    """What a rejected text value looks like, without quoting it: a value typed into the wrong
    column can be a name, a phone number or a note, and quarantine records leave the raw zone."""
    if value is None:
        return "empty"
    if isinstance(value, bool | int | float):
        return repr(value)
    text = str(value)
    kinds = [
        name
        for name, present in (
            ("letters", any(c.isalpha() for c in text)),
            ("digits", any(c.isdigit() for c in text)),
            ("spaces", any(c.isspace() for c in text)),
            ("other characters", any(not (c.isalnum() or c.isspace()) for c in text)),
        )
        if present
    ]
    return f"a {len(text)}-character text ({', '.join(kinds) or 'nothing printable'})"


def _bad_header(header: tuple[str, ...], duplicates: list[str]) -> str:
    """Which header cells are duplicated or empty, by position; a cell is named only when it
    is a contract column (the 'header' may be a data row of a file that has none)."""
    empty = [i for i, c in enumerate(header, start=1) if not c]
    repeated = [i for i, c in enumerate(header, start=1) if c in duplicates]
    parts = []
    if repeated:
        known = [c for c in duplicates if c in KNOWN_COLUMNS]
        names = f" ({', '.join(known)})" if len(known) == len(duplicates) else ""
        parts.append(f"duplicate names in columns {repeated}{names}")
    if empty:
        parts.append(f"empty names in columns {empty}")
    hint = "" if set(header) & set(REQUIRED_COLUMNS) else "; is the header row missing?"
    return f"header has {' and '.join(parts)}{hint}"


def normalize_audio_path(text: str | None) -> str | None:
    """The path inside the batch, or None when it is absolute or leaves the folder."""
    if not text:
        return None
    candidate = text.replace("\\", "/")
    if candidate.startswith("/") or _WINDOWS_DRIVE.match(candidate) or "://" in candidate:
        return None
    parts = [p for p in PurePosixPath(candidate).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def parse_metadata_csv(data: bytes) -> MetadataCsv:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise MetadataFileError(
            "not_utf8",
            f"metadata.csv is not UTF-8 (byte {error.start}); export it again as UTF-8 CSV",
        ) from error
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        records = list(reader)
    except csv.Error as error:
        raise MetadataFileError(
            "malformed_csv", f"metadata.csv cannot be split into records ({error})"
        ) from error
    while records and not any(cell.strip() for cell in records[0]):
        records.pop(0)
    if not records:
        raise MetadataFileError("no_header", "metadata.csv is empty; it needs a header row")
    header = tuple(cell.strip().lstrip("\ufeff").strip() for cell in records[0])
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates or "" in header:
        raise MetadataFileError("bad_header", _bad_header(header, duplicates))
    good: list[list[str | None]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, int]] = []
    ragged: list[str] = []
    for offset, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue  # blank line: not a record
        if len(record) != len(header):
            malformed.append((offset, len(record)))
            ragged += [cell.strip() for cell in record if cell.strip()]
            continue
        good.append([cell.strip() or None for cell in record])
        numbers.append(offset)
    columns = {name: [row[i] for row in good] for i, name in enumerate(header)}
    frame = pl.DataFrame(columns, schema=dict.fromkeys(header, pl.String))
    frame = frame.with_columns(pl.Series(ROW_NUMBER, numbers, dtype=pl.Int64))
    return MetadataCsv(header, frame, tuple(malformed), tuple(ragged))


@dataclass(frozen=True)
class KnownIdentifiers:
    participants: list[str]
    others: list[str]  # hospital records, phones, every cell of a ragged record
    referenced_paths: list[str]  # audio_path values as written


def identifier_values(data: bytes) -> KnownIdentifiers | None:
    """The identifiers in a metadata file and the files its rows name, read leniently (for
    redaction); None when the identifiers cannot be known (the file cannot be split into
    records or has no ``participant_id`` column). Every cell of a ragged record counts as an
    identifier, since its columns cannot be told apart."""
    try:
        parsed = parse_metadata_csv(data)
    except MetadataFileError:
        return None
    if "participant_id" not in parsed.header:
        return None
    frame = parsed.frame

    def values(column: str) -> list[str]:
        if column not in frame.columns:
            return []
        return [v for v in frame.get_column(column).to_list() if v]

    return KnownIdentifiers(
        values("participant_id"),
        values("hospital_record") + values("phone") + list(parsed.ragged_cells),
        values("audio_path"),
    )
