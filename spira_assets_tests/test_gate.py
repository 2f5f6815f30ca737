"""The promotion gate's decisions, one reason per test."""

from __future__ import annotations

import polars as pl

from spira_assets.ml.champions import ChampionState
from spira_assets.ml.comparison import Comparison
from spira_assets.ml.gate import GateConfig, decide

GOOD = {"auroc": 0.92, "sensitivity": 0.88}


def subgroups(*rows: tuple[str, str, float, bool]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["subgroup", "value", "auroc", "judgeable"], orient="row")


def versus(reference: str, low: float, role: str = "champion", diff: float = 0.0) -> Comparison:
    return Comparison(reference, role, 40, 160, "", 0.9, 0.9 - diff, diff, low, diff + (diff - low))


def test_a_good_first_model_passes() -> None:
    decision = decide(GOOD, [], subgroups(("sex", "F", 0.9, True)), GateConfig())
    assert decision.passed and decision.reasons == []
    assert all(c.passed for c in decision.criteria) and len(decision.criteria) == 4


def test_floors_fail_with_their_reasons() -> None:
    decision = decide({"auroc": 0.75, "sensitivity": 0.6}, [], subgroups(), GateConfig())
    assert not decision.passed
    assert any("AUROC 0.750 below the floor 0.8" in r for r in decision.reasons)
    assert any("sensitivity 0.600 below the floor 0.8" in r for r in decision.reasons)


def test_non_inferiority_uses_the_lower_bound_of_the_paired_difference() -> None:
    # the point estimate is better, but the interval reaches further down than the margin
    noisy = versus("champ", low=-0.08, diff=+0.01)
    decision = decide(GOOD, [noisy], subgroups(), GateConfig(non_inferiority_margin=0.05))
    assert not decision.passed
    assert "not shown non-inferior to champion champ" in decision.reasons[0]
    assert "[95% CI -0.080" in decision.reasons[0]
    # a worse point estimate whose interval stays within the margin passes
    assert decide(GOOD, [versus("champ", low=-0.04, diff=-0.01)], subgroups(), GateConfig()).passed


def test_every_past_champion_bounds_the_loss_so_quality_cannot_ratchet_down() -> None:
    state = ChampionState(current="v3", history=("v1", "v2", "v3"))
    assert state.references("v4") == [
        ("v1", "past champion"),
        ("v2", "past champion"),
        ("v3", "champion"),
    ]
    # within the margin of the current champion, but too far below the first one
    comparisons = [
        versus("v1", low=-0.09, role="past champion", diff=-0.06),
        versus("v2", low=-0.06, role="past champion", diff=-0.03),
        versus("v3", low=-0.03, role="champion", diff=0.0),
    ]
    decision = decide(GOOD, comparisons, subgroups(), GateConfig(non_inferiority_margin=0.05))
    assert not decision.passed
    assert [r.split(":")[0] for r in decision.reasons] == [
        "not shown non-inferior to past champion v1",
        "not shown non-inferior to past champion v2",
    ]


def test_a_champion_that_cannot_be_evaluated_fails_the_gate() -> None:
    missing = Comparison("v1", "champion", error="cannot be evaluated: model folder missing")
    decision = decide(GOOD, [missing], subgroups(), GateConfig(non_inferiority_margin=1.0))
    assert not decision.passed and "champion v1: cannot be evaluated" in decision.reasons[0]
    registry = decide(GOOD, [], subgroups(), GateConfig(), champion_error="registry unreachable")
    assert not registry.passed and registry.reasons == ["registry unreachable"]


def test_a_judgeable_subgroup_below_its_floor_or_too_far_fails() -> None:
    low = decide(GOOD, [], subgroups(("utterance", "sustentada", 0.65, True)), GateConfig())
    gap = decide(GOOD, [], subgroups(("sex", "M", 0.75, True)), GateConfig())
    assert not low.passed and "utterance=sustentada" in low.reasons[0]
    assert not gap.passed and "allowed gap 0.15" in gap.reasons[0]


def test_subgroups_too_small_to_judge_do_not_block() -> None:
    assert decide(GOOD, [], subgroups(("age_band", "60+", 0.2, False)), GateConfig()).passed


def test_undefined_metrics_fail_with_an_explanation() -> None:
    decision = decide(
        {"auroc": float("nan"), "sensitivity": float("nan")},
        [],
        subgroups(),
        GateConfig(0.0, 0.0),
    )
    assert not decision.passed and "lacks patients or controls" in decision.reasons[0]
