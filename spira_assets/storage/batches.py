"""Collection batches in the landing zone: names, completeness, discovery.

A batch is a folder ``landing/<batch_id>/`` uploaded by the collection app. Uploads are not
atomic, so a batch counts only once its ``_READY`` marker exists. The folder name becomes the
Dagster partition key and a file name in the lake, so it must match a strict pattern; anything
else is refused with a message and never used to build a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from upath import UPath

BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
READY_MARKER = "_READY"
METADATA_FILE = "metadata.csv"
NOISE_FOLDER = "noise"
OUTCOMES_FOLDER = "outcomes"  # clinical outcomes of scored recordings (monitoring/outcomes.py)


class InvalidBatchIdError(ValueError):
    """A folder or argument that cannot be a batch id."""


def is_valid_batch_id(name: str) -> bool:
    return bool(BATCH_ID_PATTERN.fullmatch(name)) and name not in {".", ".."}


def require_valid_batch_id(name: str) -> str:
    if not is_valid_batch_id(name):
        raise InvalidBatchIdError(
            f"batch id {name!r} is refused: it must match {BATCH_ID_PATTERN.pattern} "
            "(letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64 "
            "characters); rename the upload folder"
        )
    return name


# The control files a batch folder may hold at its top, beside metadata.csv: never audio.
# Any other name starting with '_' or '.' in a batch is quarantined (ingest/listing.py).
CONTROL_FILES = frozenset(
    {READY_MARKER, "_import.json", "_import_report.txt", "_demo_manifest.json"}
)


def is_control_file(name: str) -> bool:
    """Entries of the landing root (and of landing/noise) starting with '_' or '.': staging
    folders of an import in progress, the site's files; never a batch or a noise file."""
    return name.startswith(("_", "."))


@dataclass(frozen=True)
class LandingScan:
    """What a look at the landing zone found."""

    complete: tuple[str, ...]
    incomplete: tuple[str, ...]
    refused: tuple[str, ...]


def scan_landing(landing: UPath) -> LandingScan:
    """List batch folders, split into complete, incomplete (no marker yet) and refused names."""
    complete: list[str] = []
    incomplete: list[str] = []
    refused: list[str] = []
    if not landing.exists():
        return LandingScan((), (), ())
    for entry in sorted(landing.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name in (NOISE_FOLDER, OUTCOMES_FOLDER) or is_control_file(name) or not entry.is_dir():
            continue
        if not is_valid_batch_id(name):
            refused.append(name)
        elif (entry / READY_MARKER).exists():
            complete.append(name)
        else:
            incomplete.append(name)
    return LandingScan(tuple(complete), tuple(incomplete), tuple(refused))
