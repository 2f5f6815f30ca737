"""Stage 1: every file of a batch decoded, measured, judged; accepted audio copied to the raw
store. Every file ends either accepted or with at least one quarantine record."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
import polars as pl
from upath import UPath

from spira_assets.audio.decode import TARGET_RATE
from spira_assets.audio.quality import AudioQualityRules, Finding
from spira_assets.batches import METADATA_FILE, is_control_file
from spira_assets.ingest.inspect import BatchFile, FileOutcome, inspect_and_resample, inspect_file
from spira_assets.ingest.quarantine import Rejection, quarantine_frame
from spira_assets.layout import is_local
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.tables import RAW_AUDIO
from spira_assets.workers import ordered_map

__all__ = [
    "BatchFile",
    "FileOutcome",
    "FirstOccurrence",
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


def _name_fault(name: str) -> Finding | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return Finding(
            "undecodable_name",
            "the file name is not valid UTF-8, so no metadata.csv row can refer to it; rename "
            "the file (letters, digits, '.', '_', '-') and upload it again",
        )
    if any(not c.isprintable() for c in name):
        return Finding(
            "unsafe_name",
            "the file name contains control characters (a line break, tab or similar); rename "
            "the file and upload it again",
        )
    return None


def _local_fault(entry: UPath, root_real: str) -> Finding | None:
    """Links, link targets and special files of a local batch folder (never followed or read
    when they are unsafe)."""
    path = Path(str(entry))
    if path.is_symlink():
        target = os.path.realpath(path)
        if os.path.commonpath([root_real, target]) != root_real:
            return Finding(
                "unsafe_link", "a link pointing outside the batch folder is not followed"
            )
        if not path.exists():
            return Finding("dangling_link", "a link whose target does not exist; upload the file")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return Finding("vanished", "the file disappeared while the batch was read; upload it again")
    except OSError as error:
        return Finding("unreadable", f"cannot be inspected ({error.strerror or error})")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return Finding("not_a_file", "a device, pipe or socket, not an audio file; remove it")
    return None


def list_batch_files(batch_dir: UPath) -> list[BatchFile]:
    """Every content file of the batch (recursively), except metadata.csv and control files.

    Nothing that could escape the batch or block the reader is followed or read: links leaving
    the folder, dangling links, special files, unreadable folders and names that are not UTF-8
    are listed with their fault, so each becomes one quarantine record and the batch goes on.
    """
    root_real = os.path.realpath(str(batch_dir)) if is_local(batch_dir) else None
    found: list[BatchFile] = []

    def walk(directory: UPath, prefix: PurePosixPath) -> None:
        try:
            entries = sorted(directory.iterdir(), key=lambda p: os.fsencode(p.name))
        except OSError as error:
            unlisted = Finding("unreadable", f"folder cannot be listed ({error.strerror or error})")
            found.append(BatchFile(str(prefix) or ".", directory, unlisted))
            return
        for entry in entries:
            name = entry.name
            if is_control_file(name):
                continue
            relative = prefix / name
            fault = _name_fault(name)
            if fault is None and root_real is not None:
                fault = _local_fault(entry, root_real)
            if fault is not None:
                found.append(BatchFile(str(relative), entry, fault))
            elif entry.is_dir():
                walk(entry, relative)
            elif str(relative) != METADATA_FILE:
                found.append(BatchFile(str(relative), entry))

    walk(batch_dir, PurePosixPath())
    return found


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
) -> RawAudioResult:
    """Decode and judge every file of one batch on ``workers`` processes; copy accepted audio
    to the raw store.

    ``elsewhere`` maps the content hash of audio accepted by other batches to its first
    occurrence: the same recording uploaded again in a later batch is quarantined, never
    counted twice (one voice must not reach two splits under two ids).

    ``pcm_sink(sha256, samples)`` receives, in file order, the 16 kHz mono int16 waveform of
    every file finally accepted (after duplicates), made from the decode that measured it."""
    files = list_batch_files(batch_dir)
    target_rate = None if pcm_sink is None else TARGET_RATE
    inspect = partial(inspect_and_resample, rules=rules, store=raw_store, target_rate=target_rate)
    # The same bytes in an earlier batch, or twice in this one: the first occurrence stays.
    earlier = elsewhere or {}
    first_by_sha: dict[str, str] = {}
    deduplicated: list[FileOutcome] = []
    for index, (outcome, pcm) in enumerate(ordered_map(inspect, files, workers), 1):
        sha = outcome.sha256
        if outcome.accepted and sha:
            if sha in earlier:
                first = earlier[sha]
                outcome = _duplicate(
                    outcome,
                    Finding(
                        "duplicate_content",
                        f"same bytes as {first.shown_path} in batch {first.batch_id}, accepted "
                        "there first; a recording is uploaded once",
                    ),
                )
            else:
                original = first_by_sha.setdefault(sha, outcome.file.relative_path)
                if original != outcome.file.relative_path:
                    outcome = _duplicate(
                        outcome,
                        Finding(
                            "duplicate_content",
                            f"same bytes as {redactor.path(original)} in this batch; a "
                            "recording is uploaded once",
                        ),
                    )
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
