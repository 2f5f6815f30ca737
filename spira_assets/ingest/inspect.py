"""One landed file read once, hashed, decoded, measured and judged; the unit of work that
``raw_audio`` runs on worker processes. Kept free of polars and Dagster so that a worker
process starts in a fraction of a second."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from upath import UPath

from spira_assets.audio.decode import decode_16k
from spira_assets.audio.quality import (
    SUPPORTED_SUFFIXES,
    AudioDecodeError,
    AudioQualityRules,
    AudioStats,
    Finding,
    judge,
    measure,
)
from spira_assets.privacy import printable
from spira_assets.storage.raw_store import RawStore


@dataclass(frozen=True)
class BatchFile:
    relative_path: str  # may carry surrogate escapes when the name is not UTF-8
    path: UPath
    fault: Finding | None = None  # found while listing: the file is not read


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


def _read(file: BatchFile) -> bytes | Finding:
    try:
        return file.path.read_bytes()
    except FileNotFoundError:
        return Finding("vanished", "the file disappeared while the batch was read; upload it again")
    except IsADirectoryError:
        return Finding("unreadable", "a folder where a file was listed; upload the file again")
    except OSError as error:  # permissions, I/O errors, a remote store refusing the read
        return Finding("unreadable", f"cannot be read ({error.strerror or error})")


def inspect_file(
    file: BatchFile, rules: AudioQualityRules, store: RawStore | None = None
) -> FileOutcome:
    """Read a file once, measure and judge it; accepted bytes go to ``store`` from that same
    read, so the stored copy is exactly what was hashed and judged."""
    return inspect_and_resample(file, rules, store, None)[0]


def inspect_and_resample(
    file: BatchFile,
    rules: AudioQualityRules,
    store: RawStore | None,
    target_rate: int | None,
) -> tuple[FileOutcome, np.ndarray | None]:
    """``inspect_file``, and for a file it accepts the mono int16 waveform at ``target_rate``
    made from the same decode (None when ``target_rate`` is None or the file is refused)."""
    if file.fault is not None:
        return FileOutcome(file, None, 0, None, (file.fault,)), None
    suffix = PurePosixPath(file.relative_path).suffix.lower()
    data = _read(file)
    if isinstance(data, Finding):
        return FileOutcome(file, None, 0, None, (data,)), None
    sha = hashlib.sha256(data).hexdigest()
    if suffix not in SUPPORTED_SUFFIXES:
        finding = Finding(
            "unsupported_format",
            f"extension {printable(suffix) or '(none)'} is not one of {sorted(SUPPORTED_SUFFIXES)}",
        )
        return FileOutcome(file, sha, len(data), None, (finding,)), None
    pcm = None
    try:
        if target_rate is None:
            stats = measure(data, rules)
        else:
            stats, pcm = decode_16k(data, rules, target_rate)
    except AudioDecodeError as error:
        return FileOutcome(file, sha, len(data), None, (error.finding,)), None
    findings = tuple(judge(stats, rules))
    if store is not None and not findings:
        store.put_bytes(data, sha, suffix)
    return FileOutcome(file, sha, len(data), stats, findings), (None if findings else pcm)
