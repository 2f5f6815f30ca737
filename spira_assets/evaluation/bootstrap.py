"""Participant bootstrap draws and the metrics of all draws at once.

A draw resamples participants with replacement and keeps every recording of each drawn
participant. A participant drawn twice counts twice, so a draw is a *weight* per row (how many
times its participant was drawn), and each metric of a draw is a weighted sum over the rows.
All draws are computed together as matrix products, one chunk of draws at a time, instead of
one scikit-learn call per metric per draw (about 5 ms a draw: 5 s per table at the default
1,000 resamples, docs/PERFORMANCE.md "Bootstrap").

scikit-learn still computes every point estimate (``evaluation/metrics.py``); the weighted forms
here give the same value as scikit-learn on the explicitly resampled rows, draw for draw
(``test_evaluation.py`` checks them against each other, ties included):
- AUROC: the Mann-Whitney form of the area under the ROC curve, ties counted half;
- average precision: the sum over distinct scores, from the highest, of the recall gained
  times the precision there (scikit-learn's definition, no interpolation);
- Brier score, and ECE over 10 equal-width bins, as ``evaluation/metrics.py`` defines them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# rows x draws held at once (float64): about 64 MB
CHUNK_CELLS = 8_000_000


def drawn_participants(participants: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(``resamples`` x participants) indices of the participants drawn, with replacement, from
    ``np.unique(participants)``: the one random source of every bootstrap of this package."""
    count = len(np.unique(participants))
    if count == 0:
        return np.zeros((0, 0), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, count, count) for _ in range(resamples)])


def draw_rows(participants: np.ndarray, resamples: int, seed: int) -> list[np.ndarray]:
    """The draws as row indices (every row of each drawn participant, in draw order)."""
    unique, inverse = np.unique(participants, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    return [
        np.concatenate([rows_of[i] for i in drawn])
        for drawn in drawn_participants(participants, resamples, seed)
    ]


def draw_weights(participants: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The same draws as ``draw_rows``, as (draws x rows) weights, in chunks of draws."""
    unique, inverse = np.unique(participants, return_inverse=True)
    drawn = drawn_participants(participants, resamples, seed)
    step = max(1, CHUNK_CELLS // max(1, len(participants)))
    for first in range(0, len(drawn), step):
        counts = np.stack(
            [np.bincount(d, minlength=len(unique)) for d in drawn[first : first + step]]
        )
        yield counts[:, inverse].astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _score_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in ascending score order and the start of each run of equal scores."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, starts


def _class_weight_per_score(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(draws x distinct scores, ascending) weight of patients and of controls at each score."""
    order, starts = _score_groups(scores)
    positive = labels[order]
    w = weights[:, order]
    patients = np.add.reduceat(w * positive, starts, axis=1)
    controls = np.add.reduceat(w * ~positive, starts, axis=1)
    return patients, controls


def weighted_auroc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of each draw (row of ``weights``); NaN where a draw lacks a class."""
    labels = np.asarray(labels).astype(bool)
    patients, controls = _class_weight_per_score(labels, np.asarray(scores, np.float64), weights)
    below = np.cumsum(controls, axis=1) - controls
    pairs = (patients * (below + 0.5 * controls)).sum(axis=1)
    return _ratio(pairs, patients.sum(axis=1) * controls.sum(axis=1))


def weighted_average_precision(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Average precision of each draw; NaN where a draw has no patient."""
    labels = np.asarray(labels).astype(bool)
    patients, controls = _class_weight_per_score(labels, np.asarray(scores, np.float64), weights)
    patients, controls = patients[:, ::-1], controls[:, ::-1]  # from the highest score
    true_pos, false_pos = np.cumsum(patients, axis=1), np.cumsum(controls, axis=1)
    called = true_pos + false_pos
    precision = np.zeros_like(true_pos)
    np.divide(true_pos, called, out=precision, where=called > 0)
    # a sum of shares of 1: rounding must not take it past 1 (scikit-learn gives exactly 1.0)
    return np.minimum(_ratio((patients * precision).sum(axis=1), patients.sum(axis=1)), 1.0)


def weighted_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Every metric of ``ml.evaluation.METRICS`` for each draw (row of ``weights``)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    called = scores >= threshold
    tp, fn = weights @ (called & labels), weights @ (~called & labels)
    fp, tn = weights @ (called & ~labels), weights @ (~called & ~labels)
    total = weights.sum(axis=1)
    precision, sensitivity = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    with np.errstate(invalid="ignore"):
        both = precision + sensitivity
        f1 = np.where(both > 0, 2 * precision * sensitivity / np.where(both > 0, both, 1), np.nan)
    bins = np.minimum((scores * 10).astype(int), 9)
    inside = np.eye(10, dtype=np.float64)[bins]  # rows x bins
    per_bin = weights @ inside
    label_mean = _ratio(weights @ (inside * labels[:, None]), per_bin)
    score_mean = _ratio(weights @ (inside * scores[:, None]), per_bin)
    gap = np.where(per_bin > 0, np.abs(label_mean - score_mean), 0.0)
    return {
        "accuracy": _ratio(tp + tn, total),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "f1": f1,
        "auroc": weighted_auroc(labels, scores, weights),
        "auprc": weighted_average_precision(labels, scores, weights),
        "brier": _ratio(weights @ (scores - labels) ** 2, total),
        "ece": _ratio((per_bin * gap).sum(axis=1), total),
    }
