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
