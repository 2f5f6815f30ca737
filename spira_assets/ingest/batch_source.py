"""One landing batch as the stages see it: its folder, its metadata bytes, its redactor."""

from __future__ import annotations

from dataclasses import dataclass, field

from upath import UPath

from spira_assets.ingest.identity import ALIAS_FILE, AliasMap, parse_aliases
from spira_assets.ingest.metadata_csv import identifier_values, normalize_audio_path
from spira_assets.ingest.provenance import (
    IMPORT_REPORT_FILE,
    PER_FILE,
    PROVENANCE_FILE,
    BatchProvenance,
)
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.batches import METADATA_FILE, READY_MARKER, require_valid_batch_id
from spira_assets.storage.layout import DataLayout


class BatchNotReadyError(RuntimeError):
    """The batch folder is missing or its upload is not complete (no _READY)."""


@dataclass(frozen=True)
class BatchSource:
    batch_id: str
    directory: UPath
    metadata_bytes: bytes | None
    provenance: BatchProvenance = field(default_factory=BatchProvenance)
    provenance_error: str | None = None  # an import record that could not be read, or none
    provenance_rule: str = ""  # the quarantine rule of provenance_error
    alias_bytes: bytes | None = None  # the site's alias map (landing/id_aliases.csv), if any

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
        provenance, error, rule = _provenance(directory)
        aliases = layout.landing / ALIAS_FILE
        return cls(
            batch_id,
            directory,
            metadata.read_bytes() if metadata.exists() else None,
            provenance,
            error,
            rule,
            aliases.read_bytes() if aliases.is_file() else None,
        )

    def aliases(self) -> AliasMap:
        """The site's alias map: which spelling of a participant id stands for which id."""
        return parse_aliases(self.alias_bytes)

    def redactor(self, pseudonymizer: Pseudonymizer) -> Redactor:
        """Identifiers of the batch replaced by pseudonyms; when they cannot be known (no or
        unreadable metadata.csv), file names are withheld altogether."""
        known = identifier_values(self.metadata_bytes) if self.metadata_bytes else None
        if known is None:
            return Redactor.withholding(pseudonymizer)
        paths = [p for p in (normalize_audio_path(v) for v in known.referenced_paths) if p]
        aliases = self.aliases().targets
        return Redactor.build(pseudonymizer, known.participants, known.others, paths, aliases)


def _provenance(directory: UPath) -> tuple[BatchProvenance, str | None, str]:
    """The batch's import record; an unreadable one, or none in a batch ``import-spira``
    wrote (its ``_import_report.txt`` is there), is reported, and its rows are then treated as
    grouped one participant per file (the conservative reading). Returns (record, problem,
    quarantine rule of the problem)."""
    record = directory / PROVENANCE_FILE
    if not record.exists():
        if (directory / IMPORT_REPORT_FILE).exists():
            return (
                BatchProvenance(grouping=PER_FILE),
                f"the batch was imported ({IMPORT_REPORT_FILE} is there) but its import record "
                f"{PROVENANCE_FILE} is missing, so how its speakers were grouped is unknown",
                "import_record_missing",
            )
        return BatchProvenance(), None, ""
    try:
        return BatchProvenance.from_json(record.read_text(encoding="utf-8")), None, ""
    except (ValueError, OSError, UnicodeDecodeError) as error:
        return BatchProvenance(grouping=PER_FILE), str(error), "import_record_unreadable"
