"""The promotion gate's decision on one candidate, assembled (no Dagster): the judgment (floors
on its own test set, non-inferiority against every model that held the title, subgroups, a test
set that overlaps its training data) as a typed record, and the decision's row of the
``promotions`` audit table. The ``champion`` asset computes the comparisons, calls these and
records what they return."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from spira_assets.evaluation.gate import GateConfig, GateDecision, comparison_shortfall, decide
from spira_assets.ml.lineage import code_version
from spira_assets.ml.split import test_set_leaks

if TYPE_CHECKING:
    from spira_assets.evaluation.comparison import Comparison


def clean_metrics(metrics: pl.DataFrame) -> dict[str, float]:
    """The candidate's clean, per-recording test metrics by name (``evaluation_metrics``)."""
    rows = metrics.filter(
        (pl.col("role") == "candidate")
        & (pl.col("condition") == "clean")
        & (pl.col("level") == "recording")
    )
    return dict(rows.select("metric", "value").rows())


@dataclass(frozen=True)
class GateOutcome:
    """What the gate decided about ``version``, and what follows for the title."""

    version: str
    decision: GateDecision
    champion: str | None  # the title holder before this decision
    comparisons: list[Comparison]
    # the comparison with the current champion (None for a first champion, or a re-gated one)
    head: Comparison | None

    @property
    def already(self) -> bool:
        """The candidate already holds the title."""
        return self.champion == self.version

    @property
    def holder(self) -> str:
        """Who holds the title after this decision ("none" when nobody does)."""
        return self.version if self.decision.passed else (self.champion or "none")

    @property
    def head_judged(self) -> Comparison | None:
        """The comparison with the current champion when it could be computed."""
        return self.head if self.head is not None and not self.head.error else None


def judge_candidate(
    version: str,
    metrics: pl.DataFrame,
    subgroups: pl.DataFrame,
    comparisons: list[Comparison],
    gate: GateConfig,
    champion: str | None,
    champion_error: str | None,
    model_split: pl.DataFrame,
) -> GateOutcome:
    """The gate's judgment (``gate.decide``), refused as well when the model's test set
    overlaps its own training data: ``evaluation_report``'s check blocks its own run, this
    blocks every other."""
    decision = decide(clean_metrics(metrics), comparisons, subgroups, gate, champion_error)
    leaks = test_set_leaks(model_split)
    if leaks:
        decision.passed = False
        decision.reasons.append(f"the model's test set overlaps its training data: {leaks[:5]}")
    head = next((c for c in comparisons if c.role == "champion"), None)
    return GateOutcome(version, decision, champion, comparisons, head)


def compared_with(comparisons: list[Comparison], gate: GateConfig) -> str:
    """Every comparison of the decision as JSON (the audit row's ``compared_with``), each with
    its error or why it could not be judged."""
    return json.dumps(
        [
            {
                "reference": c.reference_version,
                "role": c.role,
                "participants": c.participants,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "patients": c.patients,
                "controls": c.controls,
                "draws_defined": c.draws_defined,
                "error": c.error or comparison_shortfall(c, gate),
            }
            for c in comparisons
        ]
    )


def decision_id(now: datetime, version: str) -> str:
    """The decision's key in ``promotions``: when it was made, and which model."""
    return f"{now:%Y%m%dT%H%M%S%fZ}-{version[:8]}"


def audit_row(
    outcome: GateOutcome,
    decided_at: datetime,
    registered: str,
    metrics: pl.DataFrame,
    gate: GateConfig,
    test_recordings: int,
) -> dict[str, Any]:
    """The decision's row of ``promotions``: the candidate's clean test figures, the paired
    difference with the current champion (none when it could not be computed) and every
    comparison."""
    clean = clean_metrics(metrics)
    head = outcome.head_judged
    decision = outcome.decision
    return {
        "batch_id": decision_id(decided_at, outcome.version),
        "decided_at": decided_at,
        "candidate_version": outcome.version,
        "candidate_registered": registered,
        "champion_version": outcome.champion,
        "passed": decision.passed,
        "candidate_auroc": clean.get("auroc"),
        "candidate_sensitivity": clean.get("sensitivity"),
        "code_version": code_version(),
        "reasons": json.dumps(
            decision.reasons or (["already champion"] if outcome.already else [])
        ),
        "champion_auroc": head.reference_auroc if head else None,
        "auroc_difference": head.difference if head else None,
        "difference_ci_low": head.ci_low if head else None,
        "difference_ci_high": head.ci_high if head else None,
        "compared_with": compared_with(outcome.comparisons, gate),
        "test_recordings": test_recordings,
    }
