"""Staging files: every write goes to a hidden temporary name first and is renamed into place.

A process killed mid-write (OOM, ``kill -9``, a lost node) leaves its staging file behind.
The name records who wrote it (``.<target>.<host>~<pid>~<random>.tmp``), so the next writer of
the same target removes the leftovers of dead writers on this host right away, and those of
other hosts (other pods) once they are older than ``STALE_AFTER_S``; a live writer's file is
never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import TypeVar

from upath import UPath

STALE_AFTER_S = 6 * 3600.0
SUFFIX = ".tmp"
P = TypeVar("P", Path, UPath)


def _host() -> str:
    return socket.gethostname().replace("~", "-")


def staging_path(target: P) -> P:
    """A hidden sibling of ``target`` naming this host and process."""
    return target.with_name(
        f".{target.name}.{_host()}~{os.getpid()}~{uuid.uuid4().hex[:8]}{SUFFIX}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_stale(path: Path | UPath, now: float) -> bool:
    writer = path.name.removesuffix(SUFFIX).rsplit("~", 2)
    if len(writer) == 3 and writer[0].endswith(f".{_host()}") and writer[1].isdigit():
        pid = int(writer[1])
        if pid != os.getpid() and not _alive(pid):
            return True
    try:
        modified = path.stat().st_mtime
    except (FileNotFoundError, AttributeError):
        return False
    return now - float(modified) > STALE_AFTER_S


def remove_stale_staging(directory: Path | UPath, target_prefix: str) -> list[str]:
    """Delete leftover staging files of targets named ``target_prefix*`` in ``directory``."""
    if not directory.exists():
        return []
    now = time.time()
    removed = []
    head = f".{target_prefix}"
    # a name test per entry, not glob(): glob compiles a regular expression for every target,
    # which cost more than writing the file when the raw store copies a batch
    for path in directory.iterdir():
        name = path.name
        if not (name.startswith(head) and name.endswith(SUFFIX)) or len(name) < len(head) + 4:
            continue
        if _is_stale(path, now):
            if path.is_dir():
                shutil.rmtree(str(path), ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
