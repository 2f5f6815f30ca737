"""The promotion gate: evidence a candidate must show before it replaces the champion."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl


@dataclass(frozen=True)
class GateConfig:
    min_auroc: float = 0.80
    min_sensitivity: float = 0.80
    max_drop_vs_champion: float = 0.02  # on AUROC, same test set
    subgroup_min_auroc: float = 0.70
    max_subgroup_gap: float = 0.15  # from the overall AUROC


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    subgroups: pl.DataFrame,
    config: GateConfig,
) -> GateDecision:
    """``candidate``/``champion``: clean test metrics on the same test set; ``subgroups``:
    the candidate's subgroup table (only ``judgeable`` rows are held to the floors)."""
    reasons = []
    auroc, sensitivity = candidate["auroc"], candidate["sensitivity"]
    if math.isnan(auroc) or math.isnan(sensitivity):
        return GateDecision(
            False,
            [
                "AUROC or sensitivity is undefined: the test set lacks patients or controls; "
                "add batches (or raise test_share) before a model can be judged"
            ],
        )
    if not auroc >= config.min_auroc:
        reasons.append(f"AUROC {auroc:.3f} below the floor {config.min_auroc}")
    if not sensitivity >= config.min_sensitivity:
        reasons.append(f"sensitivity {sensitivity:.3f} below the floor {config.min_sensitivity}")
    if champion is not None and auroc < champion["auroc"] - config.max_drop_vs_champion:
        reasons.append(
            f"AUROC {auroc:.3f} is worse than the champion's {champion['auroc']:.3f} on the same "
            f"test set by more than {config.max_drop_vs_champion}"
        )
    judged = subgroups.filter(pl.col("judgeable")) if not subgroups.is_empty() else subgroups
    for row in judged.iter_rows(named=True):
        value = row["auroc"]
        name = f"{row['subgroup']}={row['value']}"
        if value is None or math.isnan(value):
            continue
        if value < config.subgroup_min_auroc:
            reasons.append(f"subgroup {name}: AUROC {value:.3f} below {config.subgroup_min_auroc}")
        elif auroc - value > config.max_subgroup_gap:
            reasons.append(
                f"subgroup {name}: AUROC {value:.3f} is {auroc - value:.3f} below the overall "
                f"{auroc:.3f} (allowed gap {config.max_subgroup_gap})"
            )
    return GateDecision(not reasons, reasons)
