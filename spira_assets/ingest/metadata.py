"""Stage 2: validate a batch's ``metadata.csv``, cross-check it against ``raw_audio``,
pseudonymize it and drop direct identifiers.

Every record ends accepted or with at least one quarantine record naming its row, column and
rule; details never quote an identifier. Files that no record points to are reported too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from spira_assets.ingest.identity import (
    ALIAS_FILE,
    ALIASES_UNREADABLE,
    AliasMap,
    EarlierParticipants,
    ParticipantRules,
    reject_ambiguous_ids,
    reject_attribute_conflicts,
    reject_outside_format,
    resolve_ids,
)
from spira_assets.ingest.metadata_csv import (
    PHI_COLUMNS,
    ROW_NUMBER,
    MetadataCsv,
    MetadataFileError,
    normalize_audio_path,
    parse_metadata_csv,
)
from spira_assets.ingest.metadata_records import (
    Collector,
    typed_records,
    validate_records,
)
from spira_assets.ingest.provenance import BatchProvenance
from spira_assets.ingest.quarantine import Rejection, quarantine_frame
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.tables import VALIDATED_METADATA

STAGE = "validated_metadata"


@dataclass(frozen=True)
class MetadataResult:
    table: pl.DataFrame
    quarantine: pl.DataFrame
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    orphan_files: int
    unknown_columns: tuple[str, ...]  # as they may be shown (never a data row's cells)
    file_error: str | None = None
    # one line per participant id spelled two ways (rows, shapes, pseudonyms): the batch is
    # blocked until the site's alias map resolves them
    ambiguous_ids: tuple[str, ...] = ()


def validate_metadata(
    batch_id: str,
    metadata_bytes: bytes | None,
    raw_audio: pl.DataFrame,
    pseudonymizer: Pseudonymizer,
    redactor: Redactor,
    now: datetime,
    provenance: BatchProvenance | None = None,
    aliases: AliasMap | None = None,
    earlier: EarlierParticipants | None = None,
    rules: ParticipantRules | None = None,
) -> MetadataResult:
    """``provenance``: the batch's import record, if it was imported (how speakers were
    grouped); a batch from the collection app carries its own participant ids. ``aliases``:
    the site's alias map; ``earlier``: what other batches stored about their participants
    (spellings and sexes); ``rules``: what one participant's rows must agree on."""
    out = Collector()
    provenance = provenance or BatchProvenance()
    aliases = aliases or AliasMap()
    if aliases.problem:
        out.items.append(
            Rejection(ALIAS_FILE, ALIASES_UNREADABLE, f"{aliases.problem}; the map is not used")
        )

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
            parsed.unknown_columns_shown,
            file_error="missing_column",
        )

    typed = typed_records(parsed, now, out)
    validate_records(typed, out)
    # one person, one spelling: the duplicate and consistency rules compare canonical ids
    # after the site's alias map; spellings equal but for separators block the batch
    typed = resolve_ids(typed, pseudonymizer, aliases)
    reject_outside_format(typed, pseudonymizer, out.add)
    ambiguous = reject_ambiguous_ids(typed, earlier or EarlierParticipants(), out.add)

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
    reject_attribute_conflicts(
        _live(typed, out), rules or ParticipantRules(), earlier or EarlierParticipants(), out.add
    )
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
        unknown_columns=parsed.unknown_columns_shown,
        ambiguous_ids=tuple(ambiguous),
    )


def _referenced_keys(parsed: MetadataCsv, pseudonymizer: Pseudonymizer) -> set[str]:
    if "audio_path" not in parsed.frame.columns:
        return set()
    paths = (normalize_audio_path(v) for v in parsed.frame.get_column("audio_path").to_list())
    return {pseudonymizer.path_key(p) for p in paths if p}


def _live(typed: pl.DataFrame, out: Collector) -> pl.DataFrame:
    return typed.filter(~pl.col(ROW_NUMBER).is_in(sorted(out.rows)))


def _reject_duplicates(
    typed: pl.DataFrame, out: Collector, assumed: frozenset[str] = frozenset()
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


def _check_audio(
    typed: pl.DataFrame, raw_audio: pl.DataFrame, redactor: Redactor, out: Collector
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


def _report_orphans(raw_audio: pl.DataFrame, referenced: set[str], out: Collector) -> int:
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
    paths = accepted.get_column("__path").to_list()
    groupings = [provenance.grouping_of(p) for p in paths]
    published = [provenance.split_of(p) for p in paths]
    assumed = set(provenance.assumed_utterance)
    frame = accepted.with_columns(
        pl.Series("utterance_assumed", [p in assumed for p in paths], dtype=pl.Boolean),
        pl.lit(batch_id).alias("batch_id"),
        pl.col("__participant").alias("participant"),
        pl.col("__fingerprint").alias("id_fingerprint"),
        pl.lit(pseudonymizer.key_id).alias("pseudonym_key_id"),
        pl.Series("speaker_grouping", groupings, dtype=pl.String),
        pl.Series("published_split", published, dtype=pl.String),
    ).drop(list(PHI_COLUMNS))
    return VALIDATED_METADATA.conform(frame).sort(ROW_NUMBER)
