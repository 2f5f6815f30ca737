"""Building quarantine records: one row per rejection, the same shape for every stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from spira_assets.storage.tables import QUARANTINE


@dataclass(frozen=True)
class Rejection:
    item: str
    rule: str
    detail: str
    row_number: int | None = None
    column: str | None = None


def quarantine_frame(
    batch_id: str, stage: str, rejections: list[Rejection], at: datetime
) -> pl.DataFrame:
    if not rejections:
        return QUARANTINE.empty()
    return QUARANTINE.conform(
        pl.DataFrame(
            {
                "batch_id": [batch_id] * len(rejections),
                "stage": [stage] * len(rejections),
                "item": [r.item for r in rejections],
                "row_number": [r.row_number for r in rejections],
                "column": [r.column for r in rejections],
                "rule": [r.rule for r in rejections],
                "detail": [r.detail for r in rejections],
                "quarantined_at": [at] * len(rejections),
            },
            schema_overrides={"row_number": pl.Int64, "column": pl.String},
        )
    )


def counts_by_rule(frame: pl.DataFrame) -> dict[str, int]:
    if frame.is_empty():
        return {}
    grouped = frame.group_by("rule").len().sort("len", descending=True)
    return {str(r): int(n) for r, n in grouped.iter_rows()}
