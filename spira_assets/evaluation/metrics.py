"""Evaluation metrics for a binary screening model, with participant-level bootstrap CIs.

Scores are aggregated window -> recording (mean) -> participant (mean), as SPIRA scores a file
by the mean over its windows. Confidence intervals resample *participants* (with all their
recordings), because recordings of one person are not independent. The decision threshold is
chosen on validation data (Youden's J) and then applied unchanged to the test set.

A draw can leave a statistic undefined (an AUROC of a draw without patients). The percentiles
of the defined draws alone would be an interval over lucky draws, narrower than the truth; so
an interval is given only when at least ``MIN_DEFINED_DRAWS`` (95 %) of the draws are defined,
and is otherwise undefined (NaN bounds), with the share it had (``Estimate.defined``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss

from spira_assets.evaluation.bootstrap import (
    draw_rows,
    draw_weights,
    weighted_auroc,
    weighted_metrics,
)
from spira_assets.evaluation.config import EVALUATION, MIN_DEFINED_DRAWS
from spira_assets.ml.calibration import Calibration
from spira_assets.ml.metrics import auroc

METRICS = (
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "auroc",
    "auprc",
    "brier",
    "ece",
)


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (scikit-learn); nan without positives."""
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return float("nan")
    return float(average_precision_score(labels, np.asarray(scores, dtype=np.float64)))


def brier(labels: np.ndarray, scores: np.ndarray) -> float:
    """Brier score (scikit-learn)."""
    return float(
        brier_score_loss(np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64))
    )


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean score| over equal-width score bins, weighted by bin size."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(labels[inside].mean() - scores[inside].mean())
    return float(error)


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & labels).sum())
    tn = int((~predicted & ~labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    precision, sensitivity = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = (
        2 * precision * sensitivity / (precision + sensitivity)
        if precision + sensitivity > 0
        else float("nan")
    )
    return {
        "accuracy": ratio(tp + tn, len(labels)),
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "f1": f1,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def all_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    return {
        **threshold_metrics(labels, scores, threshold),
        "auroc": auroc(labels, scores),
        "auprc": auprc(labels, scores),
        "brier": brier(labels, scores),
        "ece": expected_calibration_error(labels, scores),
    }


def aggregate(
    windows: pl.DataFrame, level: str, calibration: Calibration | None = None
) -> pl.DataFrame:
    """Mean window score per ``recording`` or per ``participant``. A recording's score is the
    mean of its windows mapped through ``calibration`` (the model's calibration map; None: the
    raw mean, as SPIRA's published test reads it); a participant's is the mean of its
    recordings' scores, and its decision is that mean against the threshold: one decision per
    person. ``windows`` has columns participant, recording, label, score and any subgroup
    columns (taken from the first window)."""
    extra = [c for c in windows.columns if c not in ("participant", "recording", "label", "score")]
    recordings = windows.group_by("recording", maintain_order=True).agg(
        pl.col("participant").first(),
        pl.col("label").first(),
        pl.col("score").mean(),
        *[pl.col(c).first() for c in extra],
    )
    if calibration is not None and calibration.method != "none":
        calibrated = calibration.apply(recordings.get_column("score").to_numpy())
        recordings = recordings.with_columns(pl.Series("score", calibrated))
    if level == "recording":
        return recordings
    if level != "participant":
        raise ValueError("level is recording or participant")
    return recordings.group_by("participant", maintain_order=True).agg(
        pl.col("label").max(), pl.col("score").mean(), *[pl.col(c).first() for c in extra]
    )


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float  # NaN: undefined (too few defined draws)
    high: float
    defined: float = float("nan")  # share of bootstrap draws whose statistic was defined

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


def _participant_draws(frame: pl.DataFrame, resamples: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``resamples`` bootstrap samples of participants (with replacement), each
    keeping every row of the drawn participants (``evaluation/bootstrap.py``)."""
    return draw_rows(frame.get_column("participant").to_numpy(), resamples, seed)


def _interval(
    value: float, draws: list[float], level: float, min_defined: float = MIN_DEFINED_DRAWS
) -> Estimate:
    """Percentile interval of the draws; undefined (NaN bounds) when fewer than
    ``min_defined`` of them are finite: never the percentiles of the lucky draws alone."""
    finite = [d for d in draws if np.isfinite(d)]
    defined = len(finite) / len(draws) if draws else 0.0
    if not finite or defined < min_defined:
        return Estimate(value, float("nan"), float("nan"), defined)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Estimate(value, float(low), float(high), defined)


def bootstrap(
    frame: pl.DataFrame,
    metric: Callable[[np.ndarray, np.ndarray], float],
    resamples: int = EVALUATION.bootstrap_resamples,
    seed: int = 0,
    level: float = 0.95,
    min_defined: float = MIN_DEFINED_DRAWS,
) -> Estimate:
    """Percentile CI of ``metric(labels, scores)`` resampling participants with replacement
    (each draw keeps all rows of the drawn participants)."""
    labels = frame.get_column("label").to_numpy()
    scores = frame.get_column("score").to_numpy()
    draws = [metric(labels[r], scores[r]) for r in _participant_draws(frame, resamples, seed)]
    return _interval(metric(labels, scores), draws, level, min_defined)


def bootstrap_metrics(
    frame: pl.DataFrame,
    threshold: float,
    resamples: int = EVALUATION.bootstrap_resamples,
    seed: int = 0,
    level: float = 0.95,
    min_defined: float = MIN_DEFINED_DRAWS,
) -> dict[str, Estimate]:
    """Every metric with its participant-bootstrap CI, all computed on the same draws: the
    point estimates by scikit-learn, the draws as weighted sums, all draws at once
    (``evaluation/bootstrap.py``)."""
    labels = frame.get_column("label").to_numpy()
    scores = frame.get_column("score").to_numpy()
    point = all_metrics(labels, scores, threshold)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}
    for weights in draw_weights(frame.get_column("participant").to_numpy(), resamples, seed):
        for name, values in weighted_metrics(labels, scores, threshold, weights).items():
            draws[name].append(values)
    return {
        name: _interval(float(point[name]), _joined(draws[name]), level, min_defined)
        for name in METRICS
    }


def _joined(chunks: list[np.ndarray]) -> list[float]:
    return np.concatenate(chunks).tolist() if chunks else []


def metric_table(
    frame: pl.DataFrame,
    threshold: float,
    resamples: int = EVALUATION.bootstrap_resamples,
    seed: int = 0,
    min_defined: float = MIN_DEFINED_DRAWS,
) -> pl.DataFrame:
    """Every metric with its bootstrap 95% CI, one row per metric; ``draws_defined`` is the
    share of draws that defined it, and the bounds are null (undefined) below
    ``min_defined``."""
    estimates = bootstrap_metrics(frame, threshold, resamples, seed, min_defined=min_defined)
    rows = [
        (name, e.value, e.low if e.has_interval else None, e.high if e.has_interval else None,
         e.defined)
        for name, e in estimates.items()
    ]  # fmt: skip
    return pl.DataFrame(
        rows,
        schema={
            "metric": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "draws_defined": pl.Float64,
        },
        orient="row",
    )


@dataclass(frozen=True)
class PairedDifference:
    candidate: float
    reference: float
    difference: Estimate  # candidate - reference
    participants: int
    recordings: int
    patients: int = 0
    controls: int = 0


def _people_per_class(frame: pl.DataFrame) -> tuple[int, int]:
    """(patients, controls): participants by label (a participant's label is its max)."""
    people = frame.group_by("participant").agg(pl.col("label").max())
    patients = people.filter(pl.col("label") == 1).height
    return patients, people.height - patients


def paired_difference(
    candidate: pl.DataFrame,
    reference: pl.DataFrame,
    resamples: int = EVALUATION.bootstrap_resamples,
    seed: int = 0,
    level: float = 0.95,
    min_defined: float = MIN_DEFINED_DRAWS,
) -> PairedDifference:
    """AUROC of the candidate minus the reference's on the same recordings, with a
    participant-bootstrap CI in which both models see exactly the same draws (the pairing
    removes the variance of who happened to be sampled). Frames are per recording:
    participant, recording, label, score."""
    joined = candidate.select("participant", "recording", "label", "score").join(
        reference.select("recording", pl.col("score").alias("reference")),
        on="recording",
        how="inner",
    )
    if joined.height != candidate.height or joined.height != reference.height:
        raise ValueError("paired comparison needs both models scored on the same recordings")
    labels = joined.get_column("label").to_numpy()
    ours = joined.get_column("score").to_numpy()
    theirs = joined.get_column("reference").to_numpy()
    draws = [
        weighted_auroc(labels, ours, weights) - weighted_auroc(labels, theirs, weights)
        for weights in draw_weights(joined.get_column("participant").to_numpy(), resamples, seed)
    ]
    a, b = auroc(labels, ours), auroc(labels, theirs)
    return PairedDifference(
        a,
        b,
        _interval(a - b, _joined(draws), level, min_defined),
        joined.get_column("participant").n_unique(),
        joined.height,
        *_people_per_class(joined),
    )


def subgroup_table(
    frame: pl.DataFrame,
    columns: Sequence[str],
    threshold: float,
    min_participants: int = EVALUATION.min_subgroup_participants,
    min_per_class: int = EVALUATION.min_subgroup_per_class,
) -> pl.DataFrame:
    """Metrics per value of each subgroup column, with counts; a subgroup with fewer than
    ``min_participants`` participants or ``min_per_class`` of either class is marked
    ``judgeable = false`` (its figures are shown, but too uncertain to act on)."""
    rows = []
    for column in columns:
        for value in sorted(frame.get_column(column).unique().to_list(), key=str):
            part = frame.filter(pl.col(column) == value)
            labels = part.get_column("label").to_numpy()
            scores = part.get_column("score").to_numpy()
            people = part.get_column("participant").n_unique()
            positives = int(part.filter(pl.col("label") == 1).get_column("participant").n_unique())
            negatives = people - positives
            m = all_metrics(labels, scores, threshold)
            rows.append(
                {
                    "subgroup": column,
                    "value": str(value),
                    "participants": people,
                    "positives": positives,
                    "negatives": negatives,
                    "rows": part.height,
                    "judgeable": people >= min_participants
                    and min(positives, negatives) >= min_per_class,
                    **{k: float(m[k]) for k in METRICS},
                }
            )
    return pl.DataFrame(rows)
