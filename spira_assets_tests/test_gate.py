"""The promotion gate's decisions, one reason per test."""

from __future__ import annotations

import polars as pl

from spira_assets.evaluation.champions import ChampionState
from spira_assets.evaluation.comparison import Comparison
from spira_assets.evaluation.gate import GateConfig, decide
from spira_assets.resources import EvaluationSettings

GOOD = {"auroc": 0.92, "sensitivity": 0.88}


def subgroups(*rows: tuple[str, str, float, bool]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["subgroup", "value", "auroc", "judgeable"], orient="row")


def versus(
    reference: str,
    low: float,
    role: str = "champion",
    diff: float = 0.0,
    people: tuple[int, int] = (20, 20),
    defined: float = 1.0,
) -> Comparison:
    """A comparison that ran: ``people`` patients and controls unseen by both, a paired
    bootstrap defined in ``defined`` of its draws."""
    return Comparison(
        reference,
        role,
        sum(people),
        4 * sum(people),
        "",
        0.9,
        0.9 - diff,
        diff,
        low,
        diff + (diff - low),
        None,
        *people,
        defined,
    )


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


def test_two_people_unseen_by_both_are_not_evidence() -> None:
    # the fault: one patient and one control unseen by both models, identical scores: the
    # paired interval is [0, 0], which used to pass any margin
    two = versus("champ", low=0.0, people=(1, 1))
    decision = decide(GOOD, [two], subgroups(), GateConfig())
    assert not decision.passed
    assert decision.reasons == [
        "champion champ: insufficient evidence: 1 patients and 1 controls unseen by both "
        "models, at least 10 of each are needed"
    ]
    (evidence,) = [c for c in decision.criteria if c.name.startswith("patients / controls")]
    assert evidence.value == 1 and not evidence.passed
    # one class short is enough to refuse, and against a past champion the reason says which
    past = versus("old", low=0.0, role="past champion", people=(30, 9))
    refused = decide(GOOD, [past, versus("champ", low=0.0)], subgroups(), GateConfig())
    assert refused.reasons == [
        "past champion old: insufficient evidence: 30 patients and 9 controls unseen by both "
        "models, at least 10 of each are needed"
    ]
    assert decide(GOOD, [versus("champ", low=0.0, people=(10, 10))], subgroups(), GateConfig())


def test_the_minimum_is_configurable_and_its_default_is_the_gates() -> None:
    assert GateConfig().min_unseen_per_class == 10 and GateConfig().min_defined_draws == 0.95
    settings = EvaluationSettings()
    assert settings.gate() == GateConfig()  # the resource takes its defaults from the core
    lenient = EvaluationSettings(min_unseen_per_class=1).gate()
    assert decide(GOOD, [versus("champ", low=0.0, people=(1, 1))], subgroups(), lenient).passed


def test_a_bootstrap_defined_in_too_few_draws_fails_the_gate() -> None:
    # enough people, but 8 % of the paired draws had one class only: the interval of the
    # other 92 % would be narrower than the truth
    shaky = versus("champ", low=-0.01, people=(12, 12), defined=0.92)
    decision = decide(GOOD, [shaky], subgroups(), GateConfig())
    assert not decision.passed
    assert decision.reasons == [
        "champion champ: insufficient evidence: the paired bootstrap was defined in 92% of "
        "its draws (both classes drawn), at least 95% are needed"
    ]
    assert decide(GOOD, [versus("champ", low=-0.01, defined=0.95)], subgroups(), GateConfig())
