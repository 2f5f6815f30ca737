"""Classification metrics used during training (evaluation adds more in its own module).

scikit-learn computes the ranking metrics: a well-kept, reviewed implementation instead of ours."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``, ties counted half); nan
    when one class is missing."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    return float(((np.asarray(scores) >= threshold) == np.asarray(labels).astype(bool)).mean())


def mean_by_group(groups: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` per group id (a recording's score is the mean of its windows)."""
    unique, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse)
    return unique, sums / counts


def defined_or_none(value: float) -> float | None:
    """``value``, or None where it is NaN (an AUROC of one class): JSON, Parquet and MLflow
    then hold "undefined" instead of a NaN that compares unequal to itself."""
    return None if np.isnan(value) else float(value)


def spread_of_defined(values: np.ndarray) -> tuple[float | None, float | None, int]:
    """Mean and population standard deviation of the defined (non-NaN) values, and how many
    were undefined; (None, None, n) when none is defined, instead of numpy's all-NaN warning."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return None, None, int(values.size)
    return float(defined.mean()), float(defined.std()), int(values.size - defined.size)
