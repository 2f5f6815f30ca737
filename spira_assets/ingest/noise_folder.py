"""The hospital-ambience folder ``landing/noise/``: what identifies its contents (the noise
sensor compares it with the cursor it keeps and with the one ``hospital_noise`` recorded when
it last prepared the folder), and its files read once, judged and resampled to 16 kHz."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from upath import UPath

from spira_assets.audio.decode import decode_16k
from spira_assets.audio.quality import (
    SUPPORTED_SUFFIXES,
    AudioDecodeError,
    AudioQualityRules,
    judge,
)
from spira_assets.ingest.quarantine import Rejection
from spira_assets.storage.batches import is_control_file

FINGERPRINT_KEY = "landing_fingerprint"  # hospital_noise's metadata entry


def noise_fingerprint(folder: Path | UPath) -> str:
    """Names, sizes and modification times of the folder's files ("" when it has none)."""
    if not folder.exists():
        return ""
    entries = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16] if entries else ""


@dataclass
class NoiseFiles:
    """The folder's files: the usable ones (with their SHA-256 and 16 kHz samples, in name
    order) and the rejections of the others."""

    files: list[Path | UPath] = field(default_factory=list)  # every file considered
    accepted: list[Path | UPath] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    waves: list[np.ndarray] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def read_noise_folder(folder: Path | UPath) -> NoiseFiles:
    """Every file of the folder (control files aside) decoded once: judged by the audio
    quality rules (clipping aside: ambience may clip; up to a day long) and resampled. An
    unsupported, unreadable or silent file is a rejection, never an error."""
    found = NoiseFiles()
    if folder.exists():
        found.files = sorted(
            (p for p in folder.iterdir() if p.is_file() and not is_control_file(p.name)),
            key=lambda p: p.name,
        )
    rules = AudioQualityRules(max_duration_s=24 * 3600.0)
    for path in found.files:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            found.rejections.append(
                Rejection(path.name, "unsupported_format", f"{path.suffix} is not audio")
            )
            continue
        data = path.read_bytes()
        try:
            stats, samples = decode_16k(data, rules)  # one decode: judged and resampled
            findings = [f for f in judge(stats, rules) if f.rule != "clipped"]
        except AudioDecodeError as error:
            findings = [error.finding]
        if findings:
            found.rejections += [Rejection(path.name, f.rule, f.detail) for f in findings]
            continue
        found.accepted.append(path)
        found.hashes.append(hashlib.sha256(data).hexdigest())
        found.waves.append(samples)
    return found
