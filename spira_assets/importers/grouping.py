"""Who spoke each recording of an imported list, and whether that grouping can be believed.

SPIRA's lists have no participant column, so one person's files are grouped by a participant
column, a file -> participant map or a pattern over the file path; without one the import
refuses and proposes a pattern. A grouping is checked before anything is written:

- **one participant holding a large share of the files** is a pattern that cut the name in
  the wrong place (``patient_0000_1.wav`` -> ``patient``: every patient one person);
- **one file per participant** where the names look grouped is a pattern that kept the
  recording number (``patient_0000_1`` -> itself); a pattern that gives every file its own
  participant is no grouping at all, and is recorded as one participant per file (it needs
  ``--one-participant-per-file``, and every report says speaker independence is not
  guaranteed).

The proposal is the id-like prefix of the names: the longest prefix, cut at an underscore,
whose last part holds a digit and that several files share (``patient_0000`` for
``patient_0000_1.wav``, ``c01`` for ``c01_frase.wav``), printed with what it gives.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spira_assets.ingest.provenance import BY_COLUMN, BY_MAP, BY_PATTERN, PER_FILE

PARTICIPANT_COLUMNS = ("participant_id", "participant", "speaker_id", "speaker")
MAX_PARTICIPANT_SHARE = 0.10  # of the files, for one participant
MIN_FILES_FOR_SHARE = 8  # a participant may always hold this many files (4 utterances x 2)
EXAMPLES = 3


class GroupingError(RuntimeError):
    """The speakers cannot be grouped as asked (no grouping, or one that cannot be right)."""


def _name(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).name


def prefix_pattern(cut: int) -> str:
    """The pattern that keeps a file name up to its ``cut``-th underscore from the end."""
    return r"([^/]+)" + r"_[^/_]*" * cut + "$"


@dataclass(frozen=True)
class GroupingPreview:
    """What a grouping gives: participants, files per participant, examples."""

    participants: int
    files: int
    smallest: int
    median: float
    largest: int
    examples: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, assigned: Iterable[tuple[str, str]]) -> GroupingPreview:
        """``assigned``: (file path, participant) pairs."""
        pairs = list(assigned)
        counts = Counter(p for _, p in pairs)
        sizes = sorted(counts.values()) or [0]
        seen: dict[str, str] = {}
        for path, participant in pairs:  # one example per participant, the first ones
            seen.setdefault(participant, _name(path))
        examples = tuple((name, p) for p, name in list(seen.items())[:EXAMPLES])
        return cls(len(counts), len(pairs), sizes[0], statistics.median(sizes), sizes[-1], examples)

    @property
    def all_single(self) -> bool:
        return self.files > 1 and self.largest == 1

    def text(self) -> str:
        median = f"{self.median:g}"
        shown = ", ".join(f"{name!r} -> {p!r}" for name, p in self.examples)
        return (
            f"{self.participants} participants; files per participant: min {self.smallest}, "
            f"median {median}, max {self.largest}; e.g. {shown}"
        )


def proposed_pattern(paths: list[str]) -> str | None:
    """The ``--participant-pattern`` that keeps the id-like prefix of the names, or None when
    no prefix is shared by several files (names that do not look grouped)."""
    stems = [_name(p).rsplit(".", 1)[0] for p in paths]
    longest = max((s.count("_") for s in stems), default=0)
    for cut in range(1, longest + 1):
        prefixes = [
            "_".join(parts[:-cut])
            for parts in (s.split("_") for s in stems)
            if len(parts) > cut and re.search(r"\d", parts[-cut - 1])
        ]
        counts = Counter(prefixes)
        if len(counts) >= 2 and max(counts.values()) >= 2:
            return prefix_pattern(cut)
    return None


def proposal(paths: list[str]) -> str | None:
    """The proposal the refusal prints: the pattern, what it gives, the option to pass."""
    pattern = proposed_pattern(paths)
    if pattern is None:
        return None
    compiled = re.compile(pattern)
    assigned = [(p, m.group(1)) for p in paths if (m := compiled.search(p)) and m.group(1)]
    preview = GroupingPreview.of(assigned)
    return (
        f"file names look like <id>_<k>: the id-like prefix gives {preview.text()} "
        f"({len(assigned)} of {len(paths)} files matched); if that prefix is the speaker, "
        f"pass --participant-pattern '{pattern}'"
    )


def participant_column(rows: Iterable[dict[str, str]]) -> str | None:
    columns = {name for values in rows for name, v in values.items() if v}
    return next((c for c in PARTICIPANT_COLUMNS if c in columns), None)


def load_map(path: Path) -> dict[str, str]:
    mapping: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file_path", "participant_id"} <= set(reader.fieldnames):
            raise GroupingError(
                f"--participant-map {path}: needs a header with file_path and participant_id"
            )
        for row in reader:
            key = (row.get("file_path") or "").strip().replace("\\", "/")
            value = (row.get("participant_id") or "").strip()
            if key and value:
                mapping[key] = value
    return mapping


def refusal(paths: list[str]) -> GroupingError:
    offer = proposal(paths)
    return GroupingError(
        "cannot tell which recordings belong to the same person: the lists have no participant "
        "column, and no --participant-pattern or --participant-map was given. Treating every "
        "file as its own participant would let one speaker's recordings reach training and "
        "test, so held-out figures would measure speaker recognition, not respiratory "
        "insufficiency. "
        + (f"Proposal: {offer}. " if offer else "")
        + "Otherwise supply --participant-map FILE (columns file_path,participant_id), or, "
        "knowing the consequence, --one-participant-per-file (recorded in the batch: every "
        "report will say speaker independence is not guaranteed)."
    )


@dataclass(frozen=True)
class GroupingRules:
    max_share: float = MAX_PARTICIPANT_SHARE
    min_files: int = MIN_FILES_FOR_SHARE


class Grouper:
    """Who spoke each row, by the one grouping the options and lists allow, checked on every
    row before anything is written."""

    def __init__(
        self,
        rows: list[tuple[str, dict[str, str]]],
        pattern: str | None,
        mapping: Path | None,
        one_participant_per_file: bool,
        rules: GroupingRules = GroupingRules(),
    ) -> None:
        """``rows``: (file path, list values) of every row."""
        self.column = participant_column(v for _, v in rows)
        self.mapping = load_map(mapping) if mapping else None
        self.pattern = re.compile(pattern) if pattern else None
        if self.pattern is not None and self.pattern.groups < 1:
            raise GroupingError("--participant-pattern needs a group: (...) around the id")
        self.fallback = one_participant_per_file
        paths = [p for p, _ in rows]
        if self.column:
            self.method = BY_COLUMN
        elif self.mapping is not None:
            self.method = BY_MAP
        elif self.pattern is not None:
            self.method = BY_PATTERN
        elif self.fallback:
            self.method = PER_FILE
        else:
            raise refusal(paths)
        if self.method != PER_FILE:
            found = [(p, who) for p, v in rows if (who := self._found(p, v))]
            self._check(GroupingPreview.of(found), paths, rules)

    def _found(self, path: str, values: dict[str, str]) -> str | None:
        if self.method == BY_COLUMN and self.column:
            return values.get(self.column, "").strip() or None
        if self.method == BY_MAP and self.mapping is not None:
            return self.mapping.get(path.strip().replace("\\", "/"))
        if self.method in (BY_PATTERN, PER_FILE) and self.pattern is not None:
            match = self.pattern.search(path)
            return match.group(1) if match and match.group(1) else None
        return None

    def _check(self, preview: GroupingPreview, paths: list[str], rules: GroupingRules) -> None:
        how = {BY_COLUMN: "the participant column", BY_MAP: "--participant-map"}.get(
            self.method, "--participant-pattern"
        )
        limit = max(rules.min_files, int(rules.max_share * len(paths)))
        if preview.largest > limit:
            raise GroupingError(
                f"{how} puts {preview.largest} of {len(paths)} files into one participant "
                f"(at most {limit} allowed: {rules.max_share:.0%} of the files, and never fewer "
                f"than {rules.min_files}): {preview.text()}. That merges different people"
                + self._instead(paths)
            )
        if not preview.all_single:
            return
        if proposed_pattern(paths) is not None:
            raise GroupingError(
                f"{how} gives every file its own participant ({preview.text()}) though the "
                "names look grouped: it keeps each recording's own number" + self._instead(paths)
            )
        if self.method == BY_PATTERN:
            if not self.fallback:
                raise GroupingError(
                    f"--participant-pattern gives every file its own participant "
                    f"({preview.text()}): that is no grouping. Pass a pattern that puts each "
                    "speaker's files together, or, knowing the consequence, add "
                    "--one-participant-per-file (recorded: speaker independence not guaranteed)"
                )
            self.method = PER_FILE  # recorded as what it is

    @staticmethod
    def _instead(paths: list[str]) -> str:
        offer = proposal(paths)
        return f". Proposal: {offer}." if offer else "; supply a --participant-map instead."

    def __call__(self, path: str, values: dict[str, str]) -> tuple[str | None, str]:
        """(participant id or None, grouping of this row)."""
        if self.method != PER_FILE:
            found = self._found(path, values)
            if found:
                return found, self.method
        elif self.pattern is not None and (found := self._found(path, values)):
            return found, PER_FILE  # a pattern that gave every file its own participant
        if self.fallback:
            return PurePosixPath(path.replace("\\", "/")).stem, PER_FILE
        return None, self.method
