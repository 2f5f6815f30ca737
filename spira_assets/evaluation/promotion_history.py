"""The promotion history kept twice: rows of the ``promotions`` audit table, and on each
promoted registered version a tag holding its row (``tracking.PROMOTION_TAG``). When the lake
loses the table (or some rows), the gate fails on the disagreement (``champions``) until the
rows are rebuilt here from the registry's records; nothing is restored silently.

A restored row is the tagged row itself, its ``reasons`` saying when and from what it was
restored. A version holding the alias without a tag (promoted before promotions were tagged)
gets a row placed after every known decision, saying its decision time is not recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from spira_assets.evaluation.champions import champion_history
from spira_assets.ml.tracking import (
    CHAMPION_ALIAS,
    PROMOTION_TAG,
    RegistryPromotion,
    registry_promotions,
)
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import PROMOTIONS

# What the tag keeps of a decision: the row without the long JSON of every comparison (a tag
# value is bounded; evaluation_comparisons keeps those rows).
UNTAGGED = ("compared_with", "reasons")


def promotion_record(row: dict[str, Any]) -> dict[str, Any]:
    """The part of a passed decision's audit row stored with the registered version."""
    return {k: v for k, v in row.items() if k not in UNTAGGED}


@dataclass(frozen=True)
class RestoredPromotion:
    decision_id: str
    model_version: str
    registered: str
    decided_at: datetime
    source: str  # what the row was rebuilt from


def _tagged_row(p: RegistryPromotion, now: datetime) -> tuple[dict[str, Any], str]:
    record = dict(p.record or {})
    record["decided_at"] = datetime.fromisoformat(str(record["decided_at"]))
    source = f"tag {PROMOTION_TAG} of registered version {p.registered}"
    note = (
        f"restored on {now.isoformat()} from the MLflow registry ({source}); the comparisons "
        "of this decision are in evaluation_comparisons, not in the registry"
    )
    return {**record, "passed": True, "reasons": json.dumps([note]), "compared_with": "[]"}, source


def _alias_row(p: RegistryPromotion, after: datetime | None, now: datetime) -> dict[str, Any]:
    decided = max(p.created_at, after + timedelta(microseconds=1)) if after else p.created_at
    note = (
        f"restored on {now.isoformat()} from the MLflow registry: registered version "
        f"{p.registered} holds the {CHAMPION_ALIAS!r} alias but carries no {PROMOTION_TAG} tag "
        "(promoted before promotions were tagged); its decision time and figures are not "
        "recorded, the time given is its registration or just after the latest known decision"
    )
    return {
        "batch_id": f"restored-{now:%Y%m%dT%H%M%S%fZ}-{p.model_version[:8]}",
        "decided_at": decided,
        "candidate_version": p.model_version,
        "candidate_registered": p.registered,
        "champion_version": None,
        "passed": True,
        "reasons": json.dumps([note]),
        "compared_with": "[]",
    }


def _latest_decision(lake: Lake, rows: list[dict[str, Any]]) -> datetime | None:
    times = [r["decided_at"] for r in rows]
    passed = lake.read_table(PROMOTIONS).filter(pl.col("passed"))
    if not passed.is_empty():
        times.append(passed.get_column("decided_at").max())
    return max(times) if times else None


def restore_promotions(
    lake: Lake,
    tracking_uri: str,
    registered_model: str,
    now: datetime,
    alias: str = CHAMPION_ALIAS,
) -> list[RestoredPromotion]:
    """Write a ``promotions`` row for every version the registry records as promoted that has
    no passed decision in the table; returns what was restored (nothing when they agree)."""
    known = set(champion_history(lake))
    promoted = registry_promotions(tracking_uri, registered_model, alias)
    missing = [p for p in promoted if p.model_version not in known]
    rows: list[dict[str, Any]] = []
    restored = []
    for p in sorted(missing, key=lambda p: (p.record is None, p.registered)):
        if p.record is not None:
            row, source = _tagged_row(p, now)
        else:  # the alias holder: after every other decision, so it is the current champion
            row, source = _alias_row(p, _latest_decision(lake, rows), now), f"alias {alias!r}"
        rows.append(row)
        restored.append(
            RestoredPromotion(
                str(row["batch_id"]), p.model_version, p.registered, row["decided_at"], source
            )
        )
    for row in rows:  # every column of the table (a legacy alias row has no figures: null)
        complete = {column: row.get(column) for column in PROMOTIONS.schema}
        frame = pl.DataFrame([complete], schema=PROMOTIONS.schema)
        lake.write_part(PROMOTIONS, str(row["batch_id"]), frame)
    return restored
