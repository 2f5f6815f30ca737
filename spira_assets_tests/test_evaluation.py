"""Evaluation metrics against scikit-learn and hand-computed references."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as sk

from spira_assets.evaluation.metrics import (
    aggregate,
    all_metrics,
    auprc,
    bootstrap,
    brier,
    expected_calibration_error,
    metric_table,
    paired_difference,
    subgroup_table,
)
from spira_assets.ml.calibration import youden_threshold
from spira_assets.ml.metrics import auroc

RNG = np.random.default_rng(3)
LABELS = RNG.integers(0, 2, 300)
SCORES = np.clip(LABELS * 0.3 + RNG.normal(0.35, 0.2, 300), 0, 1).round(2)  # with ties


def test_ranking_and_probability_metrics_match_scikit_learn() -> None:
    assert auroc(LABELS, SCORES) == pytest.approx(sk.roc_auc_score(LABELS, SCORES))
    assert auprc(LABELS, SCORES) == pytest.approx(sk.average_precision_score(LABELS, SCORES))
    assert brier(LABELS, SCORES) == pytest.approx(sk.brier_score_loss(LABELS, SCORES))


def test_threshold_metrics_match_scikit_learn() -> None:
    m = all_metrics(LABELS, SCORES, 0.5)
    predicted = SCORES >= 0.5
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(LABELS, predicted))
    assert m["sensitivity"] == pytest.approx(sk.recall_score(LABELS, predicted))
    assert m["specificity"] == pytest.approx(sk.recall_score(1 - LABELS, ~predicted))
    assert m["precision"] == pytest.approx(sk.precision_score(LABELS, predicted))
    assert m["f1"] == pytest.approx(sk.f1_score(LABELS, predicted))
    tn, fp, fn, tp = sk.confusion_matrix(LABELS, predicted).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)


def test_expected_calibration_error_by_hand() -> None:
    labels = np.array([0, 1, 1, 1])
    scores = np.array([0.05, 0.15, 0.95, 0.85])
    # bin 0: |0 - 0.05| * 1/4; bin 1: |1 - 0.15| * 1/4; bin 8: |1 - .85|/4; bin 9: |1 - .95|/4
    assert expected_calibration_error(labels, scores) == pytest.approx(
        (0.05 + 0.85 + 0.15 + 0.05) / 4
    )


def test_youden_threshold_separates_separable_scores() -> None:
    threshold = youden_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.6, 0.9]))
    assert 0.3 < threshold <= 0.6


def test_windows_aggregate_to_recordings_then_participants() -> None:
    windows = pl.DataFrame(
        {
            "participant": ["a", "a", "a", "b"],
            "recording": ["r1", "r1", "r2", "r3"],
            "label": [1, 1, 1, 0],
            "score": [0.2, 0.4, 0.9, 0.1],
            "sex": ["F", "F", "F", "M"],
        }
    )
    recordings = aggregate(windows, "recording")
    assert recordings.get_column("score").to_list() == pytest.approx([0.3, 0.9, 0.1])
    people = aggregate(windows, "participant")
    assert people.get_column("score").to_list() == pytest.approx([0.6, 0.1])
    assert people.get_column("sex").to_list() == ["F", "M"]


def test_bootstrap_resamples_whole_participants() -> None:
    # One participant with 99 positive rows, ten with one negative row each: resampling rows
    # would keep the positive share near 0.91; resampling people often drops "big" entirely.
    frame = pl.DataFrame(
        {
            "participant": ["big"] * 99 + [f"p{i}" for i in range(10)],
            "label": [1] * 99 + [0] * 10,
            "score": [0.5] * 109,
        }
    )
    estimate = bootstrap(frame, lambda labels, scores: float(labels.mean()), resamples=300)
    assert estimate.value == pytest.approx(99 / 109)
    assert estimate.low == 0.0 and estimate.high > 0.9


def test_metric_table_has_every_metric_with_an_interval_around_it() -> None:
    frame = pl.DataFrame(
        {"participant": [f"p{i}" for i in range(300)], "label": LABELS, "score": SCORES}
    )
    table = metric_table(frame, threshold=0.5, resamples=200)
    assert table.get_column("metric").to_list()[:3] == ["accuracy", "sensitivity", "specificity"]
    for value, low, high in table.select("value", "ci_low", "ci_high").iter_rows():
        assert low <= value <= high


def test_small_subgroups_are_marked_not_judgeable() -> None:
    frame = pl.DataFrame(
        {
            "participant": [f"p{i}" for i in range(40)],
            "label": [i % 2 for i in range(40)],
            "score": [0.8 if i % 2 else 0.2 for i in range(40)],
            "sex": ["F"] * 34 + ["M"] * 6,
        }
    )
    table = subgroup_table(frame, ["sex"], threshold=0.5)
    judged = dict(table.select("value", "judgeable").rows())
    assert judged == {"F": True, "M": False}
    assert table.filter(pl.col("value") == "F").get_column("auroc").item() == 1.0


def test_an_interval_from_too_few_defined_draws_is_undefined_and_says_its_share() -> None:
    # one patient and one control: about half the draws have a single class (AUROC undefined);
    # the percentiles of the other half used to give the interval [1, 1]
    two = pl.DataFrame({"participant": ["a", "b"], "label": [1, 0], "score": [0.9, 0.1]})
    estimate = bootstrap(two, auroc, resamples=400)
    assert estimate.value == 1.0
    assert np.isnan(estimate.low) and np.isnan(estimate.high) and not estimate.has_interval
    assert 0.3 < estimate.defined < 0.7
    table = metric_table(two, threshold=0.5, resamples=400)
    row = table.filter(pl.col("metric") == "auroc").row(0, named=True)
    assert row["ci_low"] is None and row["ci_high"] is None
    assert row["draws_defined"] == pytest.approx(estimate.defined)
    accuracy = table.filter(pl.col("metric") == "accuracy").row(0, named=True)
    assert accuracy["draws_defined"] == 1.0 and accuracy["ci_low"] is not None  # always defined
    # 19 patients and 1 control: a draw misses the control (19/20)^20 = 36 % of the time
    rare = pl.DataFrame(
        {"participant": [f"p{i}" for i in range(20)], "label": [1] * 19 + [0], "score": [0.5] * 20}
    )
    assert not bootstrap(rare, auroc, resamples=400).has_interval
    assert bootstrap(rare, auroc, resamples=400, min_defined=0.5).has_interval  # configurable


def test_a_paired_difference_on_two_people_has_no_interval() -> None:
    # the gate's fault: two participants unseen by both models, both models scoring alike
    frame = pl.DataFrame(
        {"participant": ["a", "b"], "recording": ["r1", "r2"], "label": [1, 0], "score": [0.8, 0.3]}
    )
    paired = paired_difference(frame, frame, resamples=400)
    assert paired.difference.value == 0.0
    assert not paired.difference.has_interval  # it used to be [0, 0]
    assert 0.3 < paired.difference.defined < 0.7
    assert (paired.participants, paired.patients, paired.controls) == (2, 1, 1)


@pytest.mark.parametrize("case", ["ties", "few people", "one class"])
def test_each_bootstrap_draw_equals_scikit_learn_on_the_resampled_rows(case: str) -> None:
    """The draws are weighted sums over all draws at once (``evaluation/bootstrap.py``); each
    must be what scikit-learn (``all_metrics``) gives on that draw's rows, duplicates included: ties
    counted half, draws without a patient or a control undefined, bins of the ECE."""
    from spira_assets.evaluation.bootstrap import draw_rows, draw_weights, weighted_metrics
    from spira_assets.evaluation.metrics import METRICS

    rng = np.random.default_rng({"ties": 1, "few people": 2, "one class": 3}[case])
    people = {"ties": 40, "few people": 3, "one class": 12}[case]
    rows = 4 * people
    participants = np.array([f"p{i % people:02d}" for i in range(rows)])
    labels = (np.arange(rows) % people) % 3 == 0 if case != "one class" else np.ones(rows, bool)
    scores = np.clip(labels * 0.25 + rng.normal(0.4, 0.2, rows), 0, 1).round(1)  # many ties
    weights = np.concatenate(list(draw_weights(participants, 60, seed=5)))
    drawn = draw_rows(participants, 60, seed=5)
    fast = weighted_metrics(labels, scores, 0.5, weights)
    for index, chosen in enumerate(drawn):
        assert weights[index].sum() == len(chosen)  # the same draw, as weights
        slow = all_metrics(labels[chosen], scores[chosen], 0.5)
        for name in METRICS:
            expected, got = float(slow[name]), float(fast[name][index])
            assert (np.isnan(expected) and np.isnan(got)) or got == pytest.approx(
                expected, abs=1e-12
            ), (name, index)


def test_the_bootstrap_reads_its_draws_in_chunks_as_one() -> None:
    from spira_assets.evaluation import bootstrap as module

    frame = pl.DataFrame(
        {"participant": [f"p{i % 30}" for i in range(90)], "label": LABELS[:90],
         "score": SCORES[:90]}
    )  # fmt: skip
    whole = metric_table(frame, 0.5, resamples=50)
    saved = module.CHUNK_CELLS
    module.CHUNK_CELLS = 7 * 90  # 7 draws per chunk
    try:
        chunked = metric_table(frame, 0.5, resamples=50)
    finally:
        module.CHUNK_CELLS = saved
    assert whole.equals(chunked)
