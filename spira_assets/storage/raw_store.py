"""Immutable, content-addressed copies of accepted audio: ``raw/<aa>/<sha256><ext>``.

Addressing by content makes the copy idempotent (the same bytes land once, whatever batch or
re-run brings them) and makes every downstream artefact traceable to exact bytes.
"""

from __future__ import annotations

from upath import UPath

from spira_assets.storage.layout import is_local
from spira_assets.storage.staging import remove_stale_staging, staging_path


class RawStore:
    def __init__(self, root: UPath) -> None:
        self.root = root

    def path_for(self, sha256: str, suffix: str) -> UPath:
        return self.root / sha256[:2] / f"{sha256}{suffix.lower()}"

    def relative_uri(self, sha256: str, suffix: str) -> str:
        return f"raw/{sha256[:2]}/{sha256}{suffix.lower()}"

    def put_bytes(self, data: bytes, sha256: str, suffix: str) -> UPath:
        """Store bytes already read (and hashed) by the caller."""
        target = self.path_for(sha256, suffix)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if not is_local(target):  # object stores: a PUT is atomic
            target.write_bytes(data)
            return target
        remove_stale_staging(target.parent, target.name)
        tmp = staging_path(target)
        try:
            tmp.write_bytes(data)
            tmp.replace(target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return target
