"""The promotion gate: evidence a candidate must show before it replaces the champion.

- Floors on the candidate's own test set (AUROC, sensitivity), undefined metrics refused.
- **Non-inferiority**, not a point comparison: against the champion *and every model that ever
  held the title*, the lower 95 % bound of the paired participant-bootstrap AUROC difference
  (candidate minus reference, on people neither saw) must lie above ``-margin``. Comparing
  with the whole history bounds the total loss: successive promotions cannot each give away a
  little until quality has drifted down.
- A reference that cannot be evaluated (folder gone, registry error, no common unseen people)
  refuses the candidate with the reason: the comparison is never skipped.
- Judgeable subgroups must reach a floor and stay close to the overall figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from spira_assets.ml.comparison import Comparison


@dataclass(frozen=True)
class GateConfig:
    min_auroc: float = 0.80
    min_sensitivity: float = 0.80
    # Largest AUROC loss against any champion, past or present, that the lower 95 % bound of
    # the paired difference may show. 0.05: with ~100 test participants the paired interval is
    # about +/-0.03 wide, so an equally good model passes; a 0.02 margin would refuse most of
    # them on sampling noise alone.
    non_inferiority_margin: float = 0.05
    subgroup_min_auroc: float = 0.70
    max_subgroup_gap: float = 0.15  # from the overall AUROC


@dataclass(frozen=True)
class Criterion:
    name: str
    value: float | None
    threshold: str
    passed: bool


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    criteria: list[Criterion] = field(default_factory=list)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def decide(
    candidate: dict[str, float],
    comparisons: Sequence[Comparison],
    subgroups: pl.DataFrame,
    config: GateConfig,
    champion_error: str | None = None,
) -> GateDecision:
    """``candidate``: clean test metrics on its own test set; ``comparisons``: one per model
    that held the title; ``champion_error``: why the champion could not be established."""
    reasons: list[str] = []
    criteria: list[Criterion] = []

    def criterion(name: str, value: float | None, threshold: str, ok: bool, why: str) -> None:
        criteria.append(Criterion(name, value, threshold, ok))
        if not ok:
            reasons.append(why)

    auroc, sensitivity = candidate["auroc"], candidate["sensitivity"]
    if not (_finite(auroc) and _finite(sensitivity)):
        reasons.append(
            "AUROC or sensitivity is undefined: the test set lacks patients or controls; add "
            "batches (or raise test_share) before a model can be judged"
        )
    else:
        criterion(
            "AUROC (own test set)",
            auroc,
            f">= {config.min_auroc}",
            auroc >= config.min_auroc,
            f"AUROC {auroc:.3f} below the floor {config.min_auroc}",
        )
        criterion(
            "sensitivity (own test set)",
            sensitivity,
            f">= {config.min_sensitivity}",
            sensitivity >= config.min_sensitivity,
            f"sensitivity {sensitivity:.3f} below the floor {config.min_sensitivity}",
        )
    if champion_error:
        criterion("champion established", None, "audit and registry agree", False, champion_error)
    margin = config.non_inferiority_margin
    for c in comparisons:
        name = f"AUROC vs {c.role} {c.reference_version[:8]} (lower 95% bound)"
        if c.error:
            criterion(
                name, None, f"> -{margin}", False, f"{c.role} {c.reference_version}: {c.error}"
            )
            continue
        criterion(
            name,
            c.ci_low,
            f"> -{margin}",
            c.ci_low > -margin,
            f"not shown non-inferior to {c.role} {c.reference_version}: AUROC difference "
            f"{c.difference:+.3f} [95% CI {c.ci_low:+.3f}, {c.ci_high:+.3f}] on "
            f"{c.participants} participants unseen by both; the lower bound must be above "
            f"-{margin}",
        )
    judged = subgroups.filter(pl.col("judgeable")) if not subgroups.is_empty() else subgroups
    for row in judged.iter_rows(named=True):
        value = row["auroc"]
        if not _finite(value) or not _finite(auroc):
            continue
        name = f"subgroup {row['subgroup']}={row['value']}"
        criterion(
            f"{name} AUROC",
            value,
            f">= {config.subgroup_min_auroc}",
            value >= config.subgroup_min_auroc,
            f"{name}: AUROC {value:.3f} below {config.subgroup_min_auroc}",
        )
        criterion(
            f"{name} gap to overall",
            auroc - value,
            f"<= {config.max_subgroup_gap}",
            auroc - value <= config.max_subgroup_gap,
            f"{name}: AUROC {value:.3f} is {auroc - value:.3f} below the overall {auroc:.3f} "
            f"(allowed gap {config.max_subgroup_gap})",
        )
    return GateDecision(not reasons, reasons, criteria)
