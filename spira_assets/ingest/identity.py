"""Who is who in a batch: participant ids resolved, checked against the site's format, against
other spellings of the same id, and against the attributes one person cannot have twice.

Ids are compared in their canonical spelling (``privacy.normalize_identifier``: NFKC, format
characters removed, white space collapsed, case folded). Two spellings that are equal once
separators are removed (``SP-0001``, ``SP_0001``, ``SP 0001``, ``SP0001``) but differ
otherwise could be one person or two: they are quarantined as ``ambiguous_participant_id``, the
batch's blocking check ``participant_ids_unambiguous`` fails, until the site's alias map
(``landing/id_aliases.csv``: ``alias,participant_id``) says which spelling stands for which id.
Earlier batches are compared through the keyed fingerprint stored beside each pseudonym
(``Pseudonymizer.id_fingerprint``), never through raw ids.

Findings are returned as ``(row, column, rule, detail)``; details never quote an id: spellings
are named by their pseudonym and their shape (``AA-####``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from spira_assets.ingest.metadata_csv import ROW_NUMBER
from spira_assets.privacy import (
    Pseudonymizer,
    clean_identifier,
    id_shape,
    normalize_identifier,
    separator_free,
)

ALIAS_FILE = "id_aliases.csv"  # under the landing zone (raw zone: it holds raw ids)
ALIAS_COLUMNS = ("alias", "participant_id")
AMBIGUOUS = "ambiguous_participant_id"
OUTSIDE_FORMAT = "participant_id_format"
ATTRIBUTES_CONFLICT = "participant_attributes_conflict"
ALIASES_UNREADABLE = "id_aliases_unreadable"
RESOLVE_HINT = (
    f"they are equal once spaces, hyphens, underscores and dots are removed; say which id "
    f"each spelling is in landing/{ALIAS_FILE} (columns {','.join(ALIAS_COLUMNS)})"
)
MAX_LISTED = 5

Add = Callable[[int | None, str | None, str, str], None]


@dataclass(frozen=True)
class ParticipantRules:
    """What one person's rows must agree on within a batch."""

    max_age_spread_years: int = 2  # a batch collected over a birthday, a typo of one year


@dataclass(frozen=True)
class AliasMap:
    """The site's alias map: canonical alias spelling -> the id (as written) it stands for."""

    targets: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why the file was not used (it is then ignored whole)

    def resolve(self, participant_id: str) -> str:
        cleaned = clean_identifier(participant_id)
        return clean_identifier(self.targets.get(normalize_identifier(cleaned), cleaned))


def parse_aliases(data: bytes | None) -> AliasMap:
    """``alias,participant_id`` rows (UTF-8, header row). A file that cannot be read whole is
    ignored (and reported): a half-read map could silently merge or split people."""
    if data is None:
        return AliasMap()
    try:
        records = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return AliasMap(problem=f"{ALIAS_FILE} is not a UTF-8 CSV file")
    records = [r for r in records if any(cell.strip() for cell in r)]
    header = tuple(cell.strip() for cell in records[0]) if records else ()
    if header != ALIAS_COLUMNS:
        return AliasMap(problem=f"{ALIAS_FILE} needs the header {','.join(ALIAS_COLUMNS)}")
    targets: dict[str, str] = {}
    for line, record in enumerate(records[1:], start=2):
        cells = [clean_identifier(cell) for cell in record]
        if len(cells) != 2 or not all(cells):
            return AliasMap(problem=f"{ALIAS_FILE} line {line} does not hold two ids")
        alias, target = normalize_identifier(cells[0]), cells[1]
        if normalize_identifier(targets.get(alias, target)) != normalize_identifier(target):
            return AliasMap(problem=f"{ALIAS_FILE} line {line} maps an alias to a second id")
        targets[alias] = target
    if any(normalize_identifier(t) in targets for t in targets.values()):
        return AliasMap(problem=f"{ALIAS_FILE} maps an id that is itself an alias (a chain)")
    return AliasMap(targets)


@dataclass(frozen=True)
class EarlierParticipants:
    """What other batches' stored rows say (same key only): fingerprint -> pseudonyms by
    batch, and pseudonym -> sexes by batch."""

    spellings: dict[str, dict[str, str]] = field(default_factory=dict)  # fp -> {P: batch}
    sexes: dict[str, dict[str, str]] = field(default_factory=dict)  # P -> {sex: batch}

    @classmethod
    def from_table(cls, stored: pl.DataFrame, key_id: str, batch_id: str) -> EarlierParticipants:
        """From the ``validated_metadata`` table of every batch (this one is left out)."""
        rows = stored.filter(
            (pl.col("batch_id") != batch_id) & (pl.col("pseudonym_key_id") == key_id)
        ).sort("batch_id")
        spellings: dict[str, dict[str, str]] = {}
        sexes: dict[str, dict[str, str]] = {}
        for batch, participant, fingerprint, sex in rows.select(
            "batch_id", "participant", "id_fingerprint", "sex"
        ).iter_rows():
            if fingerprint is not None:
                spellings.setdefault(fingerprint, {}).setdefault(participant, batch)
            sexes.setdefault(participant, {}).setdefault(sex, batch)
        return cls(spellings, sexes)

    def digest_input(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """What of other batches this batch's outcome depends on (for its data version)."""
        return sorted((k, sorted(v.items())) for k, v in (self.spellings | self.sexes).items())


def resolve_ids(
    typed: pl.DataFrame, pseudonymizer: Pseudonymizer, aliases: AliasMap
) -> pl.DataFrame:
    """Adds ``__pid`` (canonical id after the alias map), ``__participant`` (its pseudonym),
    ``__fingerprint`` (keyed, separators removed) and ``__shape`` (the row's spelling, redacted)."""
    raw = typed.get_column("participant_id").to_list()
    resolved = [aliases.resolve(v) if v else None for v in raw]
    return typed.with_columns(
        pl.Series("__pid", [normalize_identifier(v) if v else None for v in resolved], pl.String),
        pl.Series(
            "__participant",
            [pseudonymizer.participant(v) if v else None for v in resolved],
            pl.String,
        ),
        pl.Series(
            "__fingerprint",
            [pseudonymizer.id_fingerprint(v) if v else None for v in resolved],
            pl.String,
        ),
        pl.Series("__shape", [id_shape(v) if v else None for v in raw], pl.String),
        pl.Series("__resolved", resolved, pl.String),
    )


def reject_outside_format(typed: pl.DataFrame, pseudonymizer: Pseudonymizer, add: Add) -> None:
    """Ids (after the alias map) that do not match the site's id format."""
    if pseudonymizer.id_format is None:
        return
    for row, resolved, shape in typed.select(ROW_NUMBER, "__resolved", "__shape").iter_rows():
        if resolved and pseudonymizer.outside_id_format(resolved):
            add(
                row,
                "participant_id",
                OUTSIDE_FORMAT,
                f"participant_id (shaped `{shape}`) does not match the site's id format "
                f"{pseudonymizer.id_format} (PseudonymResource.participant_id_format)",
            )


def _rows(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_LISTED])
    return shown + (f" and {len(numbers) - MAX_LISTED} more" if len(numbers) > MAX_LISTED else "")


def reject_ambiguous_ids(typed: pl.DataFrame, earlier: EarlierParticipants, add: Add) -> list[str]:
    """Spellings of one separator-free id that differ otherwise, within the batch or against
    other batches: every row of every such spelling is quarantined. Returns one line per
    ambiguous id for the blocking check (rows, shapes and pseudonyms; never an id)."""
    rows = typed.filter(pl.col("__pid").is_not_null()).sort(ROW_NUMBER)
    spellings: dict[str, dict[str, list[tuple[int, str, str]]]] = {}
    for row, pid, participant, fingerprint, shape in rows.select(
        ROW_NUMBER, "__pid", "__participant", "__fingerprint", "__shape"
    ).iter_rows():
        key = separator_free(pid)
        spellings.setdefault(key, {}).setdefault(participant, []).append((row, shape, fingerprint))
    findings: list[str] = []
    for by_participant in spellings.values():
        fingerprint = next(iter(by_participant.values()))[0][2]
        elsewhere = {
            p: b
            for p, b in earlier.spellings.get(fingerprint, {}).items()
            if p not in by_participant
        }
        if len(by_participant) < 2 and not elsewhere:
            continue
        named = {
            p: f"`{entries[0][1]}` ({p}) in rows {_rows([r for r, _, _ in entries])}"
            for p, entries in by_participant.items()
        }
        named |= {p: f"{p} in batch {b}" for p, b in elsewhere.items()}
        findings.append("one id spelled " + " / ".join(named.values()))
        for participant, entries in by_participant.items():
            others = "; ".join(text for p, text in named.items() if p != participant)
            for row, shape, _ in entries:
                add(
                    row,
                    "participant_id",
                    AMBIGUOUS,
                    f"participant_id spelled `{shape}` here ({participant}) is also spelled "
                    f"{others}: {RESOLVE_HINT}",
                )
    return findings


def reject_attribute_conflicts(
    live: pl.DataFrame, rules: ParticipantRules, earlier: EarlierParticipants, add: Add
) -> None:
    """One person, one label, one sex and one age (within ``max_age_spread_years``) in a
    batch, and one sex across batches: otherwise every row of the participant is quarantined
    (merged people: an importer's grouping, a typo in an id), the detail naming the attribute
    and how many values it has, never the id."""
    summary = live.group_by("__participant").agg(
        pl.col("label").n_unique().alias("labels"),
        pl.col("sex").n_unique().alias("sexes"),
        pl.col("sex").first().alias("sex"),
        (pl.col("age").max() - pl.col("age").min()).alias("age_spread"),
        pl.col("age").min().alias("age_min"),
        pl.col("age").max().alias("age_max"),
    )
    conflicts: dict[str, tuple[str, str]] = {}
    for participant, labels, sexes, sex, spread, low, high in summary.iter_rows():
        problems: list[tuple[str, str]] = []
        if labels > 1:
            problems.append(("label", f"label has {labels} different values"))
        if sexes > 1:
            problems.append(("sex", f"sex has {sexes} different values"))
        if spread is not None and spread > rules.max_age_spread_years:
            problems.append(
                (
                    "age",
                    f"age spans {spread} years ({low}..{high}; at most "
                    f"{rules.max_age_spread_years} allowed, IngestPolicy.max_age_spread_years)",
                )
            )
        before = {s: b for s, b in earlier.sexes.get(participant, {}).items() if s != sex}
        if sexes == 1 and before:
            batches = ", ".join(sorted(set(before.values())))
            problems.append(("sex", f"sex differs from this participant's rows in batch {batches}"))
        if problems:
            detail = "; ".join(text for _, text in problems)
            conflicts[participant] = (problems[0][0], detail)
    if not conflicts:
        return
    for row, participant in (
        live.filter(pl.col("__participant").is_in(sorted(conflicts)))
        .sort(ROW_NUMBER)
        .select(ROW_NUMBER, "__participant")
        .iter_rows()
    ):
        column, detail = conflicts[participant]
        add(
            row,
            column,
            ATTRIBUTES_CONFLICT,
            f"the rows of this participant disagree ({detail}): one person has one label, sex "
            "and age; fix the source, or give each person their own id",
        )
