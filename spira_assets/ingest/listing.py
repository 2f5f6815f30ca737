"""The files of a landing batch, listed so that the listing cannot hang, escape the folder or
lose a file.

Every entry of the folder ends in one of three places: a content file to ingest, a file with
the fault found while listing (one quarantine record each: the batch goes on), or, for the
batch's own control files and operating-system litter named in ``OS_LITTER``, skipped and
counted. A link is followed only inside the batch and never to a folder already listed (``ln
-s . x`` would otherwise list for ever); the depth and the number of entries are bounded.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from upath import UPath

from spira_assets.audio.quality import Finding
from spira_assets.ingest.inspect import BatchFile
from spira_assets.storage.batches import CONTROL_FILES, METADATA_FILE
from spira_assets.storage.layout import is_local

MAX_DEPTH = 16  # folders below the batch folder
MAX_ENTRIES = 100_000  # files, folders and OS litter listed in one batch
# written by operating systems and file managers, never by a recorder: skipped, and counted
OS_LITTER = (".DS_Store", "._*", "Thumbs.db", "desktop.ini", ".directory", "Icon\r")


@dataclass(frozen=True)
class ListingLimits:
    """How far a batch folder is listed: deeper folders and entries beyond the count are one
    ``listing_limit`` quarantine record each, never a listing without end."""

    max_listing_depth: int = MAX_DEPTH
    max_listing_entries: int = MAX_ENTRIES


@dataclass
class BatchListing:
    files: list[BatchFile] = field(default_factory=list)
    ignored: tuple[str, ...] = ()  # OS litter, by relative path


def is_os_litter(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OS_LITTER)


def _name_fault(name: str, top_level: bool) -> Finding | None:
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
    if name.startswith(("_", ".")) and not (top_level and name in CONTROL_FILES):
        return Finding(
            "reserved_name",
            "names starting with '_' or '.' are reserved for the landing zone's control files "
            f"({', '.join(sorted(CONTROL_FILES))}); rename the file and upload it again",
        )
    return None


def _local_fault(path: Path, root_real: str) -> Finding | None:
    """Links, link targets and special files of a local batch folder (never followed or read
    when they are unsafe)."""
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
    except OSError as error:  # ELOOP included: a link to itself
        return Finding("unreadable", f"cannot be inspected ({error.strerror or error})")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return Finding("not_a_file", "a device, pipe or socket, not an audio file; remove it")
    return None


def list_batch_files(
    batch_dir: UPath, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES
) -> BatchListing:
    """Every content file of the batch (recursively), except metadata.csv and the control
    files at its top; faults found while listing are attached to their entry."""
    root_real = os.path.realpath(str(batch_dir)) if is_local(batch_dir) else None
    listing = BatchListing()
    ignored: list[str] = []
    seen: set[tuple[int, int]] = set()
    count = 0

    def enter(directory: UPath, prefix: PurePosixPath) -> Finding | None:
        """Why ``directory`` is not listed: already listed (a link loop), too deep."""
        if len(prefix.parts) > max_depth:
            return Finding(
                "listing_limit",
                f"folders nested deeper than {max_depth} levels are not listed; flatten the batch",
            )
        if root_real is None:
            return None
        try:
            info = Path(str(directory)).stat()
        except OSError as error:  # gone or unreadable since it was judged
            return Finding("unreadable", f"folder cannot be listed ({error.strerror or error})")
        if (info.st_dev, info.st_ino) in seen:
            return Finding(
                "link_loop",
                "a link to a folder already listed (a loop, or a second path to the same files) "
                "is not followed; remove the link",
            )
        seen.add((info.st_dev, info.st_ino))
        return None

    def walk(directory: UPath, prefix: PurePosixPath) -> None:
        nonlocal count
        try:
            entries = sorted(directory.iterdir(), key=lambda p: os.fsencode(p.name))
        except OSError as error:
            unlisted = Finding("unreadable", f"folder cannot be listed ({error.strerror or error})")
            listing.files.append(BatchFile(str(prefix) or ".", directory, unlisted))
            return
        for entry in entries:
            name, relative = entry.name, prefix / entry.name
            if not prefix.parts and name in CONTROL_FILES | {METADATA_FILE}:
                continue
            count += 1  # OS litter too: a folder of a million '._*' files is no exception
            if count > max_entries:
                limit = Finding(
                    "listing_limit",
                    f"the batch holds more than {max_entries} entries (files, folders, OS "
                    "litter); the rest is not listed: split it into several batches",
                )
                listing.files.append(BatchFile(str(relative), entry, limit))
                return
            if is_os_litter(name):
                ignored.append(str(relative))
                continue
            fault = _name_fault(name, not prefix.parts)
            if fault is None and root_real is not None:
                fault = _local_fault(Path(str(entry)), root_real)
            if fault is None and entry.is_dir():
                fault = enter(entry, relative)
                if fault is None:
                    walk(entry, relative)
                    continue
            if fault is not None:
                listing.files.append(BatchFile(str(relative), entry, fault))
            else:
                listing.files.append(BatchFile(str(relative), entry))

    if root_real is not None:
        info = Path(root_real).stat()
        seen.add((info.st_dev, info.st_ino))
    walk(batch_dir, PurePosixPath())
    listing.ignored = tuple(ignored)
    return listing
