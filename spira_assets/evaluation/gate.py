"""The promotion gate: evidence a candidate must show before it replaces the champion.

- Floors on the candidate's own test set (AUROC, sensitivity), undefined metrics refused.
- **Non-inferiority**, not a point comparison: against the champion *and every model that ever
  held the title*, the lower 95 % bound of the paired participant-bootstrap AUROC difference
  (candidate minus reference, on people neither saw) must lie above ``-margin``. Comparing
  with the whole history bounds the total loss: successive promotions cannot each give away a
  little until quality has drifted down.
- A reference that cannot be evaluated (folder gone, registry error, no common unseen people)
  refuses the candidate with the reason: the comparison is never skipped.
- **Evidence**: non-inferiority is judged only on at least ``min_unseen_per_class`` patients
  *and* controls unseen by both models, and on a bootstrap whose draws were defined (both
  classes drawn) at least ``min_defined_draws`` of the time. Fewer refuses the candidate with
  "insufficient evidence" and the counts: two people give an interval of [0, 0], not proof.
- Judgeable subgroups must reach a floor and stay close to the overall figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from spira_assets.evaluation.config import MIN_DEFINED_DRAWS


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
    # Patients and controls (each) unseen by both models that a comparison must rest on. On n
    # patients one patient ranked differently moves an AUROC by up to 1/n: below 10 a single
    # person outweighs twice the default margin.
    min_unseen_per_class: int = 10
    # Share of bootstrap draws that must give a defined statistic (both classes drawn): below
    # it the interval is undefined, not the percentile of the lucky draws.
    min_defined_draws: float = MIN_DEFINED_DRAWS


def evidence_shortfall(
    patients: int, controls: int, defined: float, config: GateConfig
) -> str | None:
    """Why a paired comparison on ``patients`` and ``controls`` unseen by both models, whose
    bootstrap was defined in a share ``defined`` of its draws, cannot support a decision."""
    need = config.min_unseen_per_class
    if min(patients, controls) < need:
        return (
            f"insufficient evidence: {patients} patients and {controls} controls unseen by both "
            f"models, at least {need} of each are needed"
        )
    if not (math.isfinite(defined) and defined >= config.min_defined_draws):
        return (
            f"insufficient evidence: the paired bootstrap was defined in {defined:.0%} of its "
            f"draws (both classes drawn), at least {config.min_defined_draws:.0%} are needed"
        )
    return None


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


class _Criteria:
    """Criteria as they are judged, and the reason of each that failed."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.criteria: list[Criterion] = []

    def add(self, name: str, value: float | None, threshold: str, ok: bool, why: str) -> None:
        self.criteria.append(Criterion(name, value, threshold, ok))
        if not ok:
            self.reasons.append(why)


def _floors(judged: _Criteria, auroc: float, sensitivity: float, config: GateConfig) -> None:
    if not (_finite(auroc) and _finite(sensitivity)):
        judged.reasons.append(
            "AUROC or sensitivity is undefined: the test set lacks patients or controls; add "
            "batches (or raise test_share) before a model can be judged"
        )
        return
    judged.add(
        "AUROC (own test set)",
        auroc,
        f">= {config.min_auroc}",
        auroc >= config.min_auroc,
        f"AUROC {auroc:.3f} below the floor {config.min_auroc}",
    )
    judged.add(
        "sensitivity (own test set)",
        sensitivity,
        f">= {config.min_sensitivity}",
        sensitivity >= config.min_sensitivity,
        f"sensitivity {sensitivity:.3f} below the floor {config.min_sensitivity}",
    )


# the candidate against one model that held the title, on people neither saw (made by
# ``comparison.py``; judged here)
@dataclass(frozen=True)
class Comparison:
    reference_version: str
    role: str  # "champion" or "past champion"
    participants: int = 0
    recordings: int = 0
    from_splits: str = ""
    candidate_auroc: float = math.nan
    reference_auroc: float = math.nan
    difference: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    error: str | None = None
    patients: int = 0  # participants unseen by both, by class
    controls: int = 0
    draws_defined: float = math.nan  # share of the paired bootstrap's draws that were defined


def comparison_shortfall(c: Comparison, config: GateConfig) -> str | None:
    """Why a comparison that ran cannot support a decision (too few people of a class, too
    few defined bootstrap draws, no interval), or None."""
    shortfall = evidence_shortfall(c.patients, c.controls, c.draws_defined, config)
    if shortfall is None and not (_finite(c.ci_low) and _finite(c.ci_high)):
        shortfall = "insufficient evidence: the paired bootstrap gave no interval"
    return shortfall


def _comparison(judged: _Criteria, c: Comparison, config: GateConfig) -> None:
    """Evidence first (people of each class unseen by both, defined bootstrap draws), then
    non-inferiority on the lower bound; a comparison that failed to run refuses outright."""
    margin, short = config.non_inferiority_margin, c.reference_version[:8]
    name = f"AUROC vs {c.role} {short} (lower 95% bound)"
    if c.error:
        judged.add(name, None, f"> -{margin}", False, f"{c.role} {c.reference_version}: {c.error}")
        return
    shortfall = comparison_shortfall(c, config)
    judged.add(
        f"patients / controls unseen by both vs {c.role} {short} (fewer of the two)",
        float(min(c.patients, c.controls)),
        f">= {config.min_unseen_per_class} each, bootstrap defined in >= "
        f"{config.min_defined_draws:.0%} of draws",
        shortfall is None,
        f"{c.role} {c.reference_version}: {shortfall}",
    )
    if shortfall:
        return
    judged.add(
        name,
        c.ci_low,
        f"> -{margin}",
        c.ci_low > -margin,
        f"not shown non-inferior to {c.role} {c.reference_version}: AUROC difference "
        f"{c.difference:+.3f} [95% CI {c.ci_low:+.3f}, {c.ci_high:+.3f}] on "
        f"{c.participants} participants unseen by both; the lower bound must be above "
        f"-{margin}",
    )


def _subgroups(
    judged: _Criteria, auroc: float, subgroups: pl.DataFrame, config: GateConfig
) -> None:
    rows = subgroups.filter(pl.col("judgeable")) if not subgroups.is_empty() else subgroups
    for row in rows.iter_rows(named=True):
        value = row["auroc"]
        if not _finite(value) or not _finite(auroc):
            continue
        name = f"subgroup {row['subgroup']}={row['value']}"
        judged.add(
            f"{name} AUROC",
            value,
            f">= {config.subgroup_min_auroc}",
            value >= config.subgroup_min_auroc,
            f"{name}: AUROC {value:.3f} below {config.subgroup_min_auroc}",
        )
        judged.add(
            f"{name} gap to overall",
            auroc - value,
            f"<= {config.max_subgroup_gap}",
            auroc - value <= config.max_subgroup_gap,
            f"{name}: AUROC {value:.3f} is {auroc - value:.3f} below the overall {auroc:.3f} "
            f"(allowed gap {config.max_subgroup_gap})",
        )


def decide(
    candidate: dict[str, float],
    comparisons: Sequence[Comparison],
    subgroups: pl.DataFrame,
    config: GateConfig,
    champion_error: str | None = None,
) -> GateDecision:
    """``candidate``: clean test metrics on its own test set; ``comparisons``: one per model
    that held the title; ``champion_error``: why the champion could not be established."""
    judged = _Criteria()
    _floors(judged, candidate["auroc"], candidate["sensitivity"], config)
    if champion_error:
        judged.add("champion established", None, "audit and registry agree", False, champion_error)
    for c in comparisons:
        _comparison(judged, c, config)
    _subgroups(judged, candidate["auroc"], subgroups, config)
    return GateDecision(not judged.reasons, judged.reasons, judged.criteria)
