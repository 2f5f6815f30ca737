"""Stage 2: validate a batch's ``metadata.csv``, cross-check it against ``raw_audio``,
pseudonymize it and drop direct identifiers.

Every record ends accepted or with at least one quarantine record naming its row, column and
rule; details never quote an identifier. Files that no record points to are reported too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandera.errors
import polars as pl

from spira_assets.ingest.metadata_csv import (
    PHI_COLUMNS,
    ROW_NUMBER,
    MetadataCsv,
    MetadataFileError,
    normalize_audio_path,
    parse_metadata_csv,
)
from spira_assets.ingest.provenance import BatchProvenance
from spira_assets.ingest.quarantine import Rejection, quarantine_frame
from spira_assets.ingest.schemas import MetadataRecord
from spira_assets.privacy import Pseudonymizer, Redactor, normalize_identifier
from spira_assets.storage.tables import UTC_TIME, VALIDATED_METADATA

STAGE = "validated_metadata"
SOURCE = "metadata.csv"
INT_COLUMNS = ("label", "age", "spo2", "respiratory_rate")
FUTURE_TOLERANCE = timedelta(days=1)


@dataclass(frozen=True)
class MetadataResult:
    table: pl.DataFrame
    quarantine: pl.DataFrame
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    orphan_files: int
    unknown_columns: tuple[str, ...]
    file_error: str | None = None


def _rule_for_check(check: str) -> str:
    for prefix, rule in (
        ("not_nullable", "missing_value"),
        ("in_range", "out_of_range"),
        ("isin", "not_allowed"),
        ("str_matches", "invalid_format"),
    ):
        if check.startswith(prefix):
            return rule
    return check


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


def _describe(column: str, value: object, check: str) -> str:
    if column in PHI_COLUMNS:
        subject = f"{column} (an identifier, not shown)"
    elif isinstance(value, bool | int | float):
        subject = f"{column}={value!r}"
    else:
        subject = f"{column} ({shape(value)})"
    if check.startswith("not_nullable"):
        return f"{column} is required but empty"
    if check.startswith("in_range"):
        bounds = check[len("in_range") :].strip("()").replace(", ", "..")
        return f"{subject} is outside {bounds}"
    if check.startswith("isin"):
        return f"{subject} is not one of {check[len('isin') :].strip('()')}"
    if check.startswith("str_matches"):
        return f"{subject} does not match {check[len('str_matches') :].strip('()')}"
    return f"{subject} fails {check}"


def _parse_timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class _Collector:
    def __init__(self) -> None:
        self.items: list[Rejection] = []
        self.rows: set[int] = set()

    def add(self, row: int | None, column: str | None, rule: str, detail: str) -> None:
        item = SOURCE if row is None else f"{SOURCE}:{row}"
        self.items.append(Rejection(item, rule, detail, row, column))
        if row is not None:
            self.rows.add(row)


def _typed(parsed: MetadataCsv, now: datetime, out: _Collector) -> pl.DataFrame:
    frame = parsed.frame
    for column in ("spo2", "respiratory_rate", "hospital_record", "phone"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    frame = frame.with_columns(
        pl.col("sex").str.to_uppercase(),
        pl.col("utterance").str.to_lowercase(),
        pl.col("device").str.to_lowercase(),
    )
    typed = frame.with_columns(
        [pl.col(c).cast(pl.Int64, strict=False).alias(f"__{c}") for c in INT_COLUMNS]
    )
    for column in INT_COLUMNS:
        bad = typed.filter(pl.col(column).is_not_null() & pl.col(f"__{column}").is_null())
        for row, value in bad.select(ROW_NUMBER, column).iter_rows():
            out.add(row, column, "invalid_type", f"{column} is {shape(value)}, not a whole number")
    stamps = [_parse_timestamp(v) for v in frame.get_column("collected_at").to_list()]
    for row, raw, stamp in zip(
        frame.get_column(ROW_NUMBER), frame.get_column("collected_at"), stamps, strict=True
    ):
        if raw is not None and stamp is None:
            out.add(
                row,
                "collected_at",
                "invalid_timestamp",
                f"collected_at is {shape(raw)}, not an ISO 8601 timestamp "
                "(e.g. 2024-05-03T10:22:00-03:00)",
            )
        elif stamp is not None and stamp > now + FUTURE_TOLERANCE:
            out.add(
                row,
                "collected_at",
                "timestamp_in_future",
                f"collected_at {stamp:%Y-%m-%d %H:%M} UTC is in the future",
            )
    typed = typed.with_columns(
        [pl.col(f"__{c}").alias(c) for c in INT_COLUMNS]
        + [pl.Series("collected_at", stamps, dtype=UTC_TIME)]
    ).drop([f"__{c}" for c in INT_COLUMNS])
    return typed


def _validate_records(typed: pl.DataFrame, out: _Collector) -> None:
    already = {(r.row_number, r.column) for r in out.items}
    try:
        MetadataRecord.validate(typed, lazy=True)
        return
    except pandera.errors.SchemaErrors as errors:
        failures = errors.failure_cases
    rows = typed.get_column(ROW_NUMBER).to_list()
    for case in failures.iter_rows(named=True):
        index = case["index"]
        if index is None:
            continue
        row = rows[index]
        check = str(case["check"])
        if case["schema_context"] == "DataFrameSchema":
            record = typed.row(index, named=True)
            detail = {
                "patient_spo2_below_92": (
                    f"label=1 (patient) needs spo2 below 92, found spo2={record['spo2']!r}"
                ),
                "control_spo2_not_below_92": (
                    f"label=0 (control) with spo2={record['spo2']!r} below 92: mislabelled?"
                ),
            }.get(check, f"record fails {check}")
            out.add(row, "spo2", check, detail)
            continue
        column = str(case["column"])
        if (row, column) in already:
            continue  # the value was unreadable; already reported as such
        out.add(row, column, _rule_for_check(check), _describe(column, case["failure_case"], check))


def validate_metadata(
    batch_id: str,
    metadata_bytes: bytes | None,
    raw_audio: pl.DataFrame,
    pseudonymizer: Pseudonymizer,
    redactor: Redactor,
    now: datetime,
    provenance: BatchProvenance | None = None,
) -> MetadataResult:
    """``provenance``: the batch's import record, if it was imported (how speakers were
    grouped); a batch from the collection app carries its own participant ids."""
    out = _Collector()
    provenance = provenance or BatchProvenance()

    def finish_without_rows(rule: str, detail: str, rows_in: int = 0) -> MetadataResult:
        out.add(None, None, rule, detail)
        orphans = _report_orphans(raw_audio, set(), out)
        return MetadataResult(
            VALIDATED_METADATA.empty(),
            quarantine_frame(batch_id, STAGE, out.items, now),
            rows_in,
            0,
            rows_in,
            orphans,
            (),
            file_error=rule,
        )

    if metadata_bytes is None:
        return finish_without_rows(
            "metadata_missing", "the batch has no metadata.csv; upload it with the audio"
        )
    try:
        parsed = parse_metadata_csv(metadata_bytes)
    except MetadataFileError as error:
        return finish_without_rows(error.rule, error.detail)

    for row, fields in parsed.malformed:
        out.add(
            row,
            None,
            "malformed_row",
            f"row has {fields} fields but the header has {len(parsed.header)}",
        )
    if parsed.missing_required:
        missing = ", ".join(parsed.missing_required)
        for row in parsed.frame.get_column(ROW_NUMBER):
            out.add(row, None, "missing_column", f"metadata.csv has no column(s) {missing}")
        orphans = _report_orphans(raw_audio, _referenced_keys(parsed, pseudonymizer), out)
        return MetadataResult(
            VALIDATED_METADATA.empty(),
            quarantine_frame(batch_id, STAGE, out.items, now),
            parsed.rows_in,
            0,
            len(out.rows),
            orphans,
            parsed.unknown_columns,
            file_error="missing_column",
        )

    typed = _typed(parsed, now, out)
    _validate_records(typed, out)
    # one person, one spelling: the duplicate and consistency rules compare canonical ids
    typed = typed.with_columns(
        pl.col("participant_id")
        .map_elements(normalize_identifier, return_dtype=pl.String)
        .alias("__pid")
    )

    paths = [normalize_audio_path(v) for v in typed.get_column("audio_path").to_list()]
    typed = typed.with_columns(pl.Series("__path", paths, dtype=pl.String))
    for row, raw_path, path in zip(
        typed.get_column(ROW_NUMBER), typed.get_column("audio_path"), paths, strict=True
    ):
        if raw_path is not None and path is None:
            out.add(
                row,
                "audio_path",
                "unsafe_path",
                f"audio_path {redactor.path(raw_path)} is absolute or leaves the batch folder; "
                "use a path relative to the batch",
            )

    typed = typed.with_columns(
        pl.Series(
            "__path_key",
            [pseudonymizer.path_key(p) if p else None for p in paths],
            dtype=pl.String,
        )
    )
    referenced = {k for k in typed.get_column("__path_key").to_list() if k}

    _reject_duplicates(typed, out, frozenset(provenance.assumed_utterance))
    _reject_inconsistent_participants(typed, out)
    joined = _check_audio(typed, raw_audio, redactor, out)
    orphans = _report_orphans(raw_audio, referenced, out)

    accepted = joined.filter(~pl.col(ROW_NUMBER).is_in(sorted(out.rows)))
    table = _pseudonymized(batch_id, accepted, pseudonymizer, provenance)
    return MetadataResult(
        table=table,
        quarantine=quarantine_frame(batch_id, STAGE, out.items, now),
        rows_in=parsed.rows_in,
        rows_accepted=table.height,
        rows_quarantined=len(out.rows),
        orphan_files=orphans,
        unknown_columns=parsed.unknown_columns,
    )


def _referenced_keys(parsed: MetadataCsv, pseudonymizer: Pseudonymizer) -> set[str]:
    if "audio_path" not in parsed.frame.columns:
        return set()
    paths = (normalize_audio_path(v) for v in parsed.frame.get_column("audio_path").to_list())
    return {pseudonymizer.path_key(p) for p in paths if p}


def _live(typed: pl.DataFrame, out: _Collector) -> pl.DataFrame:
    return typed.filter(~pl.col(ROW_NUMBER).is_in(sorted(out.rows)))


def _reject_duplicates(
    typed: pl.DataFrame, out: _Collector, assumed: frozenset[str] = frozenset()
) -> None:
    """One recording per participant and utterance, and one row per audio file. A row whose
    utterance the import assumed (``--utterance``: the list named none) is no evidence of a
    second take of the same utterance, so only its audio reference is checked."""
    live = _live(typed, out).sort(ROW_NUMBER)
    seen: dict[tuple[str, str], int] = {}
    paths: dict[str, int] = {}
    for row, participant, utterance, path in live.select(
        ROW_NUMBER, "__pid", "utterance", "__path"
    ).iter_rows():
        first = row if path in assumed else seen.setdefault((participant, utterance), row)
        if first != row:
            out.add(
                row,
                "participant_id",
                "duplicate_recording",
                f"the same participant already has a {utterance!r} recording in row {first}",
            )
            continue
        first_path = paths.setdefault(path, row)
        if first_path != row:
            out.add(
                row,
                "audio_path",
                "duplicate_audio_reference",
                f"row {first_path} already uses this audio file",
            )


def _reject_inconsistent_participants(typed: pl.DataFrame, out: _Collector) -> None:
    live = _live(typed, out)
    conflicts = (
        live.group_by("__pid")
        .agg(pl.col("label").n_unique().alias("labels"), pl.col("sex").n_unique().alias("sexes"))
        .filter((pl.col("labels") > 1) | (pl.col("sexes") > 1))
    )
    if conflicts.is_empty():
        return
    bad = live.filter(pl.col("__pid").is_in(conflicts.get_column("__pid")))
    for (row,) in bad.select(ROW_NUMBER).iter_rows():
        out.add(
            row,
            "label",
            "inconsistent_participant",
            "this participant has rows with different label or sex in the batch; fix the source",
        )


def _check_audio(
    typed: pl.DataFrame, raw_audio: pl.DataFrame, redactor: Redactor, out: _Collector
) -> pl.DataFrame:
    audio = raw_audio.select(
        pl.col("path_key").alias("__path_key"),
        "accepted",
        "rejection_rule",
        "audio_sha256",
        "raw_uri",
        "container",
        "codec",
        "sample_rate",
        "channels",
        "duration_s",
    )
    joined = typed.join(audio, on="__path_key", how="left")
    live = joined.filter(
        ~pl.col(ROW_NUMBER).is_in(sorted(out.rows)) & pl.col("__path").is_not_null()
    )
    for row, path, accepted, rule in live.select(
        ROW_NUMBER, "audio_path", "accepted", "rejection_rule"
    ).iter_rows():
        if accepted is None:
            out.add(
                row,
                "audio_path",
                "audio_missing",
                f"audio file {redactor.path(path)} is not in the batch",
            )
        elif not accepted:
            out.add(
                row,
                "audio_path",
                "audio_rejected",
                f"audio file {redactor.path(path)} was quarantined by raw_audio ({rule})",
            )
    return joined


def _report_orphans(raw_audio: pl.DataFrame, referenced: set[str], out: _Collector) -> int:
    orphans = raw_audio.filter(~pl.col("path_key").is_in(sorted(referenced)))
    for path, accepted in orphans.select("source_path", "accepted").iter_rows():
        state = "accepted" if accepted else "quarantined"
        out.items.append(
            Rejection(
                path,
                "orphan_audio",
                f"audio file ({state} by raw_audio) has no row in metadata.csv; add a row or "
                "remove the file",
            )
        )
    return orphans.height


def _pseudonymized(
    batch_id: str,
    accepted: pl.DataFrame,
    pseudonymizer: Pseudonymizer,
    provenance: BatchProvenance,
) -> pl.DataFrame:
    if accepted.is_empty():
        return VALIDATED_METADATA.empty()
    participants = [pseudonymizer.participant(p) for p in accepted.get_column("participant_id")]
    paths = accepted.get_column("__path").to_list()
    groupings = [provenance.grouping_of(p) for p in paths]
    published = [provenance.split_of(p) for p in paths]
    assumed = set(provenance.assumed_utterance)
    frame = accepted.with_columns(
        pl.Series("utterance_assumed", [p in assumed for p in paths], dtype=pl.Boolean),
        pl.lit(batch_id).alias("batch_id"),
        pl.Series("participant", participants, dtype=pl.String),
        pl.lit(pseudonymizer.key_id).alias("pseudonym_key_id"),
        pl.Series("speaker_grouping", groupings, dtype=pl.String),
        pl.Series("published_split", published, dtype=pl.String),
    ).drop(list(PHI_COLUMNS))
    return VALIDATED_METADATA.conform(frame).sort(ROW_NUMBER)
