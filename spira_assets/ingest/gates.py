"""Blocking checks that last beyond their run.

A blocking asset check stops downstream steps of the *same* run only. A batch that failed
``both_classes_present`` could otherwise still reach training through a run that selects
``audio_16k`` alone, a range backfill or a later training run. So the ingest stages record every
check outcome in the ``batch_checks`` table, and everything downstream of ingest asks
:func:`blocked_batches` before it takes a batch: whatever started the run, a batch whose latest
blocking outcome failed (or was never recorded) is refused, with the check named.

A block can come after a model was trained on the batch. Evaluation and the champion's
comparison pool ask again (:func:`without_blocked`): they leave out the recordings of batches
blocked *now*, and say which and how many; a range backfill fails only its blocked batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import BATCH_CHECKS

QUARANTINE_SHARE = "quarantine_share_within_limit"
BOTH_CLASSES = "both_classes_present"
UNAMBIGUOUS_IDS = "participant_ids_unambiguous"  # no id spelled two ways (ingest/identity.py)
STORED_SCHEMA = "stored_table_matches_schema"
# Every blocking check of the ingest stages, by asset: a batch is open for downstream use only
# when each has a recorded, passing outcome.
REQUIRED_CHECKS: dict[str, tuple[str, ...]] = {
    "raw_audio": (QUARANTINE_SHARE, STORED_SCHEMA),
    "validated_metadata": (QUARANTINE_SHARE, BOTH_CLASSES, UNAMBIGUOUS_IDS, STORED_SCHEMA),
}


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    blocking: bool = True


def record_outcomes(
    lake: Lake, batch_id: str, asset: str, outcomes: Iterable[CheckOutcome], at: datetime
) -> None:
    """Replace the batch's recorded outcomes for ``asset`` (one part per asset and batch)."""
    rows = [
        {
            "batch_id": batch_id,
            "asset": asset,
            "check_name": o.name,
            "passed": o.passed,
            "blocking": o.blocking,
            "description": o.description,
            "evaluated_at": at,
        }
        for o in outcomes
    ]
    frame = pl.DataFrame(rows, schema=BATCH_CHECKS.schema) if rows else BATCH_CHECKS.empty()
    lake.write_part(BATCH_CHECKS, batch_id, frame, sub=asset)


def blocked_batches(lake: Lake, batch_ids: Iterable[str]) -> dict[str, list[str]]:
    """For each batch that may not be used downstream, why: failed blocking checks as
    ``asset:check (description)`` and checks with no recorded outcome."""
    wanted = sorted(set(batch_ids))
    recorded = lake.read_table(BATCH_CHECKS).filter(pl.col("batch_id").is_in(wanted))
    outcomes = {
        (b, a, c): (passed, blocking, description)
        for b, a, c, passed, blocking, description in recorded.select(
            "batch_id", "asset", "check_name", "passed", "blocking", "description"
        ).iter_rows()
    }
    reasons: dict[str, list[str]] = {}
    for batch_id in wanted:
        problems = []
        for asset, checks in REQUIRED_CHECKS.items():
            for check in checks:
                outcome = outcomes.get((batch_id, asset, check))
                if outcome is None:
                    problems.append(
                        f"{asset}:{check} has no recorded outcome (materialize {asset} for "
                        f"batch {batch_id})"
                    )
                elif not outcome[0]:
                    problems.append(f"{asset}:{check} failed ({outcome[2]})")
        if problems:
            reasons[batch_id] = problems
    return reasons


def describe_blocked(blocked: dict[str, list[str]]) -> str:
    return "; ".join(f"batch {b} is blocked by {', '.join(r)}" for b, r in sorted(blocked.items()))


@dataclass(frozen=True)
class LeftOut:
    """Recordings left out because their batch is blocked now: how many per batch, and why."""

    recordings: dict[str, int]
    reasons: dict[str, list[str]]

    def __bool__(self) -> bool:
        return bool(self.recordings)

    def describe(self) -> str:
        return "; ".join(
            f"batch {b} ({n} recordings) is blocked by {', '.join(self.reasons[b])}"
            for b, n in sorted(self.recordings.items())
        )


def without_blocked(lake: Lake, recordings: pl.DataFrame) -> tuple[pl.DataFrame, LeftOut]:
    """``recordings`` (rows with a ``batch_id``) without those of batches blocked now."""
    batches = recordings.get_column("batch_id").unique().to_list()
    blocked = blocked_batches(lake, batches)
    left_out = recordings.filter(pl.col("batch_id").is_in(sorted(blocked)))
    counts = dict(left_out.group_by("batch_id").len().rows())
    kept = recordings.filter(~pl.col("batch_id").is_in(sorted(blocked)))
    return kept, LeftOut({str(b): int(n) for b, n in counts.items()}, blocked)
