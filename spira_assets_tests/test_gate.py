"""The promotion gate's decisions, one reason per test."""

from __future__ import annotations

import polars as pl

from spira_assets.ml.gate import GateConfig, decide

GOOD = {"auroc": 0.92, "sensitivity": 0.88}


def subgroups(*rows: tuple[str, str, float, bool]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["subgroup", "value", "auroc", "judgeable"], orient="row")


def test_a_good_first_model_passes() -> None:
    decision = decide(GOOD, None, subgroups(("sex", "F", 0.9, True)), GateConfig())
    assert decision.passed and decision.reasons == []


def test_floors_fail_with_their_reasons() -> None:
    decision = decide({"auroc": 0.75, "sensitivity": 0.6}, None, subgroups(), GateConfig())
    assert not decision.passed
    assert any("AUROC 0.750 below the floor 0.8" in r for r in decision.reasons)
    assert any("sensitivity 0.600 below the floor 0.8" in r for r in decision.reasons)


def test_a_better_champion_on_the_same_test_set_blocks_the_candidate() -> None:
    assert decide(GOOD, {"auroc": 0.93}, subgroups(), GateConfig()).passed  # within margin
    decision = decide(GOOD, {"auroc": 0.97}, subgroups(), GateConfig())
    assert not decision.passed and "worse than the champion" in decision.reasons[0]


def test_a_judgeable_subgroup_below_its_floor_or_too_far_fails() -> None:
    low = decide(GOOD, None, subgroups(("utterance", "sustentada", 0.65, True)), GateConfig())
    gap = decide(GOOD, None, subgroups(("sex", "M", 0.75, True)), GateConfig())
    assert not low.passed and "utterance=sustentada" in low.reasons[0]
    assert not gap.passed and "allowed gap 0.15" in gap.reasons[0]


def test_subgroups_too_small_to_judge_do_not_block() -> None:
    assert decide(GOOD, None, subgroups(("age_band", "60+", 0.2, False)), GateConfig()).passed


def test_undefined_metrics_fail_with_an_explanation() -> None:
    decision = decide(
        {"auroc": float("nan"), "sensitivity": float("nan")},
        None,
        subgroups(),
        GateConfig(0.0, 0.0),
    )
    assert not decision.passed and "lacks patients or controls" in decision.reasons[0]
