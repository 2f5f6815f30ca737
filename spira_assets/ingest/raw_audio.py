"""Stage 1: every file of a batch decoded, measured, judged; accepted audio copied to the raw
store. Every file ends either accepted or with at least one quarantine record."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import PurePosixPath

import numpy as np
import polars as pl
from upath import UPath

from spira_assets.audio import TARGET_RATE
from spira_assets.audio.quality import AudioQualityRules, Finding
from spira_assets.ingest.inspect import BatchFile, FileOutcome, inspect_and_resample, inspect_file
from spira_assets.ingest.listing import ListingLimits, list_batch_files
from spira_assets.ingest.quarantine import Rejection, quarantine_frame
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.tables import RAW_AUDIO
from spira_assets.workers import ordered_map

__all__ = [
    "BatchFile",
    "FileOutcome",
    "FirstOccurrence",
    "ListingLimits",
    "RawAudioResult",
    "ingest_raw_audio",
    "inspect_file",
    "list_batch_files",
]

STAGE = "raw_audio"
ProgressCallback = Callable[[int, int], None]
PcmSink = Callable[[str, np.ndarray], None]


@dataclass(frozen=True)
class RawAudioResult:
    table: pl.DataFrame
    quarantine: pl.DataFrame
    outcomes: tuple[FileOutcome, ...]
    ignored: tuple[str, ...] = ()  # operating-system litter (.DS_Store...), counted, not read

    @property
    def files_in(self) -> int:
        return len(self.outcomes)

    @property
    def accepted(self) -> int:
        return sum(o.accepted for o in self.outcomes)

    @property
    def total_duration_s(self) -> float:
        return sum(o.stats.duration_s for o in self.outcomes if o.accepted and o.stats)


@dataclass(frozen=True)
class FirstOccurrence:
    """Where accepted content was first seen in another batch (for duplicate detection)."""

    batch_id: str
    shown_path: str


def _duplicate(outcome: FileOutcome, finding: Finding) -> FileOutcome:
    return FileOutcome(outcome.file, outcome.sha256, outcome.size_bytes, outcome.stats, (finding,))


def ingest_raw_audio(
    batch_id: str,
    batch_dir: UPath,
    raw_store: RawStore,
    rules: AudioQualityRules,
    pseudonymizer: Pseudonymizer,
    redactor: Redactor,
    now: datetime,
    workers: int = 2,
    progress: ProgressCallback | None = None,
    elsewhere: Mapping[str, FirstOccurrence] | None = None,
    pcm_sink: PcmSink | None = None,
    elsewhere_pcm: Mapping[str, FirstOccurrence] | None = None,
    limits: ListingLimits | None = None,
) -> RawAudioResult:
    """Decode and judge every file of one batch on ``workers`` processes; copy accepted audio
    to the raw store.

    ``elsewhere`` maps the content hash of audio accepted by other batches to its first
    occurrence, ``elsewhere_pcm`` the hash of its 16 kHz samples: the same recording uploaded
    again in a later batch, however encoded, is quarantined, never counted twice (one voice
    must not reach two splits under two ids).

    ``pcm_sink(sha256, samples)`` receives, in file order, the 16 kHz mono int16 waveform of
    every file finally accepted (after duplicates), made from the decode that measured it;
    its hash is ``pcm_sha256``. Without a sink no 16 kHz samples are made, and duplicates are
    found by their bytes only.

    ``limits`` bound the listing (folder depth, entries; ``ListingLimits()`` by default):
    beyond them, a ``listing_limit`` record instead of a listing without end."""
    limits = limits or ListingLimits()
    listing = list_batch_files(batch_dir, limits.max_listing_depth, limits.max_listing_entries)
    files = listing.files
    target_rate = None if pcm_sink is None else TARGET_RATE
    inspect = partial(inspect_and_resample, rules=rules, store=raw_store, target_rate=target_rate)
    # The same audio in an earlier batch, or twice in this one, by its bytes or by its decoded
    # 16 kHz samples (the same recording re-encoded, or with bytes appended): the first stays.
    earlier, earlier_pcm = elsewhere or {}, elsewhere_pcm or {}
    first_by_sha: dict[str, str] = {}
    first_by_pcm: dict[str, str] = {}
    pcm_hashes: dict[str, str] = {}
    deduplicated: list[FileOutcome] = []
    for index, (outcome, pcm) in enumerate(ordered_map(inspect, files, workers), 1):
        sha = outcome.sha256
        pcm_sha = hashlib.sha256(pcm.tobytes()).hexdigest() if pcm is not None else None
        if outcome.accepted and sha:
            finding = _first_elsewhere(sha, pcm_sha, earlier, earlier_pcm) or _first_here(
                outcome.file.relative_path, sha, pcm_sha, first_by_sha, first_by_pcm, redactor
            )
            if finding is not None:
                outcome = _duplicate(outcome, finding)
            elif pcm_sha is not None:
                pcm_hashes[sha] = pcm_sha
        if pcm_sink is not None and outcome.accepted and sha and pcm is not None:
            pcm_sink(sha, pcm)
        deduplicated.append(outcome)
        if progress and (index % 50 == 0 or index == len(files)):
            progress(index, len(files))

    rows: list[dict[str, object]] = []
    rejections: list[Rejection] = []
    for outcome in deduplicated:
        shown_path = redactor.path(outcome.file.relative_path)
        suffix = PurePosixPath(outcome.file.relative_path).suffix.lower()
        raw_uri = None
        if outcome.accepted and outcome.sha256:
            raw_uri = raw_store.relative_uri(outcome.sha256, suffix)
        for finding in outcome.findings:
            rejections.append(Rejection(shown_path, finding.rule, redactor(finding.detail)))
        stats = outcome.stats
        rows.append(
            {
                "batch_id": batch_id,
                "source_path": shown_path,
                "path_key": pseudonymizer.path_key(outcome.file.relative_path),
                "accepted": outcome.accepted,
                "rejection_rule": outcome.findings[0].rule if outcome.findings else None,
                "audio_sha256": outcome.sha256,
                "pcm_sha256": pcm_hashes.get(outcome.sha256 or "") if outcome.accepted else None,
                "size_bytes": outcome.size_bytes,
                "container": stats.container if stats else None,
                "codec": stats.codec if stats else None,
                "sample_rate": stats.sample_rate if stats else None,
                "channels": stats.channels if stats else None,
                "frames": stats.frames if stats else None,
                "duration_s": stats.duration_s if stats else None,
                "peak_dbfs": stats.peak_dbfs if stats else None,
                "rms_dbfs": stats.rms_dbfs if stats else None,
                "clipping_ratio": stats.clipping_ratio if stats else None,
                "silence_ratio": stats.silence_ratio if stats else None,
                "raw_uri": raw_uri,
                "ingested_at": now,
            }
        )
    table = (
        RAW_AUDIO.conform(pl.DataFrame(rows, schema=RAW_AUDIO.schema))
        if rows
        else RAW_AUDIO.empty()
    )
    return RawAudioResult(
        table=table,
        quarantine=quarantine_frame(batch_id, STAGE, rejections, now),
        outcomes=tuple(deduplicated),
        ignored=listing.ignored,
    )


def _first_elsewhere(
    sha: str,
    pcm_sha: str | None,
    earlier: Mapping[str, FirstOccurrence],
    earlier_pcm: Mapping[str, FirstOccurrence],
) -> Finding | None:
    if sha in earlier:
        first = earlier[sha]
        return Finding(
            "duplicate_content",
            f"same bytes as {first.shown_path} in batch {first.batch_id}, accepted there first; "
            "a recording is uploaded once",
        )
    if pcm_sha is not None and pcm_sha in earlier_pcm:
        first = earlier_pcm[pcm_sha]
        return Finding(
            "duplicate_audio",
            f"the same audio as {first.shown_path} in batch {first.batch_id}, accepted there "
            "first, in other bytes (another encoding, or bytes added); a recording is uploaded "
            "once",
        )
    return None


def _first_here(
    path: str,
    sha: str,
    pcm_sha: str | None,
    by_sha: dict[str, str],
    by_pcm: dict[str, str],
    redactor: Redactor,
) -> Finding | None:
    original = by_sha.setdefault(sha, path)
    if original != path:
        return Finding(
            "duplicate_content",
            f"same bytes as {redactor.path(original)} in this batch; a recording is uploaded once",
        )
    if pcm_sha is None:
        return None
    original = by_pcm.setdefault(pcm_sha, path)
    if original != path:
        return Finding(
            "duplicate_audio",
            f"the same audio as {redactor.path(original)} in this batch, in other bytes "
            "(another encoding, or bytes added); a recording is uploaded once",
        )
    return None
