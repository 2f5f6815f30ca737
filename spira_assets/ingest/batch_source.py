"""One landing batch as the stages see it: its folder, its metadata bytes, its redactor."""

from __future__ import annotations

from dataclasses import dataclass

from upath import UPath

from spira_assets.batches import METADATA_FILE, READY_MARKER, require_valid_batch_id
from spira_assets.ingest.metadata_csv import identifier_values
from spira_assets.layout import DataLayout
from spira_assets.privacy import Pseudonymizer, Redactor


class BatchNotReadyError(RuntimeError):
    """The batch folder is missing or its upload is not complete (no _READY)."""


@dataclass(frozen=True)
class BatchSource:
    batch_id: str
    directory: UPath
    metadata_bytes: bytes | None

    @classmethod
    def open(cls, layout: DataLayout, batch_id: str) -> BatchSource:
        require_valid_batch_id(batch_id)
        directory = layout.batch_dir(batch_id)
        if not directory.is_dir():
            raise BatchNotReadyError(f"batch {batch_id}: folder {directory} does not exist")
        if not (directory / READY_MARKER).exists():
            raise BatchNotReadyError(
                f"batch {batch_id}: no {READY_MARKER} marker yet, the upload is incomplete"
            )
        metadata = directory / METADATA_FILE
        return cls(batch_id, directory, metadata.read_bytes() if metadata.exists() else None)

    def redactor(self, pseudonymizer: Pseudonymizer) -> Redactor:
        if self.metadata_bytes is None:
            return Redactor()
        participants, others = identifier_values(self.metadata_bytes)
        return Redactor.build(pseudonymizer, participants, others)
