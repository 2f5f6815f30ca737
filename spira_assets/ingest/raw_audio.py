"""Stage 1: every file of a batch decoded, measured, judged; accepted audio copied to the raw
store. Every file ends either accepted or with at least one quarantine record."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

import polars as pl
from upath import UPath

from spira_assets.audio.quality import (
    SUPPORTED_SUFFIXES,
    AudioDecodeError,
    AudioQualityRules,
    AudioStats,
    Finding,
    judge,
    measure,
)
from spira_assets.batches import METADATA_FILE, is_control_file
from spira_assets.ingest.quarantine import Rejection, quarantine_frame
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.tables import RAW_AUDIO

STAGE = "raw_audio"
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class BatchFile:
    relative_path: str
    path: UPath
    escapes_batch: bool = False


@dataclass(frozen=True)
class FileOutcome:
    file: BatchFile
    sha256: str | None
    size_bytes: int
    stats: AudioStats | None
    findings: tuple[Finding, ...]

    @property
    def accepted(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class RawAudioResult:
    table: pl.DataFrame
    quarantine: pl.DataFrame
    outcomes: tuple[FileOutcome, ...]

    @property
    def files_in(self) -> int:
        return len(self.outcomes)

    @property
    def accepted(self) -> int:
        return sum(o.accepted for o in self.outcomes)

    @property
    def total_duration_s(self) -> float:
        return sum(o.stats.duration_s for o in self.outcomes if o.accepted and o.stats)


def list_batch_files(batch_dir: UPath) -> list[BatchFile]:
    """Every content file of the batch (recursively), except metadata.csv and control files.

    A symbolic link whose target lies outside the batch folder is listed but flagged.
    """
    root_real = os.path.realpath(str(batch_dir)) if batch_dir.protocol in ("", "file") else None
    found: list[BatchFile] = []

    def walk(directory: UPath, prefix: PurePosixPath) -> None:
        for entry in sorted(directory.iterdir(), key=lambda p: p.name):
            name = entry.name
            if is_control_file(name):
                continue
            relative = prefix / name
            if root_real is not None and entry.is_symlink():
                target = os.path.realpath(str(entry))
                if os.path.commonpath([root_real, target]) != root_real:
                    found.append(BatchFile(str(relative), entry, escapes_batch=True))
                    continue
            if entry.is_dir():
                walk(entry, relative)
            elif str(relative) != METADATA_FILE:
                found.append(BatchFile(str(relative), entry))

    walk(batch_dir, PurePosixPath())
    return found


def inspect_file(file: BatchFile, rules: AudioQualityRules) -> FileOutcome:
    if file.escapes_batch:
        finding = Finding("unsafe_link", "a link pointing outside the batch folder is not followed")
        return FileOutcome(file, None, 0, None, (finding,))
    suffix = PurePosixPath(file.relative_path).suffix.lower()
    data = file.path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if suffix not in SUPPORTED_SUFFIXES:
        finding = Finding(
            "unsupported_format",
            f"extension {suffix or '(none)'} is not one of {sorted(SUPPORTED_SUFFIXES)}",
        )
        return FileOutcome(file, sha, len(data), None, (finding,))
    try:
        stats = measure(data, rules)
    except AudioDecodeError as error:
        return FileOutcome(file, sha, len(data), None, (error.finding,))
    return FileOutcome(file, sha, len(data), stats, tuple(judge(stats, rules)))


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
) -> RawAudioResult:
    """Decode and judge every file of one batch; copy accepted audio to the raw store."""
    files = list_batch_files(batch_dir)
    outcomes: list[FileOutcome] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for index, outcome in enumerate(pool.map(lambda f: inspect_file(f, rules), files), 1):
            outcomes.append(outcome)
            if progress and (index % 50 == 0 or index == len(files)):
                progress(index, len(files))

    # The same bytes twice in one batch: keep the first, reject the copies.
    first_by_sha: dict[str, str] = {}
    deduplicated: list[FileOutcome] = []
    for outcome in outcomes:
        if outcome.accepted and outcome.sha256:
            original = first_by_sha.setdefault(outcome.sha256, outcome.file.relative_path)
            if original != outcome.file.relative_path:
                finding = Finding(
                    "duplicate_content", f"same bytes as {redactor(original)}; upload it once"
                )
                outcome = FileOutcome(
                    outcome.file, outcome.sha256, outcome.size_bytes, outcome.stats, (finding,)
                )
        deduplicated.append(outcome)

    rows: list[dict[str, object]] = []
    rejections: list[Rejection] = []
    for outcome in deduplicated:
        shown_path = redactor(outcome.file.relative_path)
        suffix = PurePosixPath(outcome.file.relative_path).suffix.lower()
        raw_uri = None
        if outcome.accepted and outcome.sha256:
            raw_store.put(outcome.file.path, outcome.sha256, suffix)
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
    )
