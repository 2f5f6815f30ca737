"""What identifies the contents of ``landing/noise/``: the noise sensor compares it with the
cursor it keeps and with the one ``hospital_noise`` recorded when it last prepared the folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from upath import UPath

FINGERPRINT_KEY = "landing_fingerprint"  # hospital_noise's metadata entry


def noise_fingerprint(folder: Path | UPath) -> str:
    """Names, sizes and modification times of the folder's files ("" when it has none)."""
    if not folder.exists():
        return ""
    entries = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16] if entries else ""
