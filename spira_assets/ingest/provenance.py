"""How a batch came to be: the import record a batch carries beside its metadata.

The collection app's batches identify each participant themselves (``participant_id``). A batch
converted from SPIRA's published lists (``spira import-spira``) had to be grouped by speaker
some other way, or not at all; the importer writes ``_import.json`` (a control file, never
ingested as audio) saying how, and listing the list rows it refused. The ingest assets read it:
rows grouped one participant per file are marked, so every later table, report and model card
can say that speaker independence is not guaranteed for them; refused rows become quarantine
records of stage ``import``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

PROVENANCE_FILE = "_import.json"
IMPORT_REPORT_FILE = "_import_report.txt"  # written by every import, beside the record
PUBLISHED_SPLITS = ("train", "validation", "test")
IMPORT_STAGE = "import"

# How the pseudonymized participant of a row was obtained (column ``speaker_grouping``).
APP_ID = "participant_id"  # the collection app's participant id
BY_COLUMN = "import-column"  # a participant column in the imported list
BY_MAP = "import-map"  # a file -> participant mapping supplied by the user
BY_PATTERN = "import-pattern"  # a regular expression over the file path
PER_FILE = "one-participant-per-file"  # each file its own participant: not speaker-safe
GROUPINGS = (APP_ID, BY_COLUMN, BY_MAP, BY_PATTERN, PER_FILE)
NOT_SPEAKER_SAFE = frozenset({PER_FILE})
SPEAKER_WARNING = (
    "speaker independence not guaranteed: {n} recording(s) were imported with "
    "--one-participant-per-file, so one voice may be in more than one split"
)


# Noise files ``import-spira`` copies into ``landing/noise/``: ``<batch>_<list stem>_<line>``,
# the line counted from 1 as the list file numbers it. SPIRA-ACL2021's reader takes the first
# line of its headerless ``noise_data.csv`` for a header and never uses that file; the
# ``spira-acl2021`` profile reads the list the same way (``is_noise_list_header``).
ACL2021_NOISE_LIST = "noise_data.csv"
_ACL2021_NOISE_STEM = ACL2021_NOISE_LIST.removesuffix(".csv")


def imported_noise_name(batch_id: str, list_name: str, line: int, suffix: str) -> str:
    return f"{batch_id}_{list_name.removesuffix('.csv')}_{line:05d}{suffix}"


def is_noise_list_header(source: str) -> bool:
    """The noise file copied from line 1 of an ACL2021 ``noise_data.csv``."""
    stem = source.rsplit(".", 1)[0]
    return stem.endswith(f"_{_ACL2021_NOISE_STEM}_00001")


@dataclass(frozen=True)
class ImportRejection:
    """A list row (or list) the importer refused. ``detail`` never quotes a path or a value
    from the list: file names may carry identifiers, and this record leaves the raw zone."""

    item: str  # "<list>:<line>" or "<list>"
    rule: str
    detail: str


@dataclass(frozen=True)
class BatchProvenance:
    grouping: str = APP_ID
    per_file_paths: tuple[str, ...] = ()  # audio_path values grouped one participant per file
    rejections: tuple[ImportRejection, ...] = field(default_factory=tuple)
    source_lists: tuple[str, ...] = ()
    # audio_path -> train / validation / test, when the published split is kept
    published_split: dict[str, str] = field(default_factory=dict)
    # audio_path values whose utterance the import assumed (--utterance; the list named none)
    assumed_utterance: tuple[str, ...] = ()

    def grouping_of(self, audio_path: str) -> str:
        return PER_FILE if audio_path in self.per_file_paths else self.grouping

    def split_of(self, audio_path: str) -> str | None:
        return self.published_split.get(audio_path)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BatchProvenance:
        """Parse a provenance record; a malformed one raises ValueError naming the problem."""
        try:
            raw = json.loads(text)
            grouping = str(raw.get("grouping", APP_ID))
            record = cls(
                grouping=grouping,
                per_file_paths=tuple(str(p) for p in raw.get("per_file_paths", [])),
                rejections=tuple(
                    ImportRejection(str(r["item"]), str(r["rule"]), str(r["detail"]))
                    for r in raw.get("rejections", [])
                ),
                source_lists=tuple(str(s) for s in raw.get("source_lists", [])),
                published_split={
                    str(k): str(v) for k, v in dict(raw.get("published_split", {})).items()
                },
                assumed_utterance=tuple(str(p) for p in raw.get("assumed_utterance", [])),
            )
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"{PROVENANCE_FILE} is not a valid import record ({error})") from error
        if grouping not in GROUPINGS:
            raise ValueError(f"{PROVENANCE_FILE}: unknown grouping {grouping!r}")
        unknown = sorted(set(record.published_split.values()) - set(PUBLISHED_SPLITS))
        if unknown:
            raise ValueError(f"{PROVENANCE_FILE}: unknown published splits {unknown}")
        return record
