"""Calibrated probabilities and a stated operating point (no torch, no Dagster).

A recording's raw score is the mean of its windows' sigmoid outputs. It ranks recordings well
but is not a probability a clinician can read: a dropout-heavy network trained for a few epochs
is typically over- or under-confident. Two things are fitted on the **validation** split of
the model's own training run (never on test people) and stored with the model:

- ``Calibration``: Platt scaling, ``p = sigmoid(a * logit(raw) + b)``, fitted by scikit-learn's
  logistic regression on the logit of the clean validation scores. It is monotone (``a > 0``
  is enforced: a map that would reverse the ranking is refused and the identity kept), so it
  never changes AUROC; it changes what the number means. The L2 penalty of scikit-learn's
  default keeps ``a`` finite when validation happens to be separable.
- ``OperatingPoint``: the decision threshold on the calibrated probability, chosen for a target
  sensitivity (screening: 0.90 by default): the highest threshold whose validation sensitivity
  reaches the target, which is the one with the best specificity at that sensitivity. With the
  model's hospital noise, the target must be reached on clean *and* on noisy validation
  recordings (the lower of the two thresholds), so a threshold that only works on one kind of
  audio is not chosen.

Every scorer (evaluation, ``spira predict``, the served model, reproduction) reads both from the
model folder through :func:`load_calibration`; a model saved before calibration existed (or a
profile without it, such as SPIRA's published one) gets the identity map.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

CALIBRATION_FILE = "calibration.json"
CalibrationMethod = Literal["platt", "none"]
EPSILON = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(slope * logit(raw) + intercept)``; the identity for ``method='none'``."""

    method: CalibrationMethod = "none"
    slope: float = 1.0
    intercept: float = 0.0
    fitted_on: str = ""
    note: str = ""

    def apply(self, raw: np.ndarray | float) -> np.ndarray:
        values = np.asarray(raw, dtype=np.float64)
        if self.method == "none":
            return values
        out = 1.0 / (1.0 + np.exp(-(self.slope * logit(values) + self.intercept)))
        return np.where(np.isfinite(values), out, np.nan)

    def one(self, raw: float) -> float:
        return float(self.apply(np.array([raw]))[0])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fit_platt(labels: np.ndarray, raw: np.ndarray, fitted_on: str) -> Calibration:
    """Platt scaling fitted on validation recordings (scikit-learn ``LogisticRegression`` on
    the logit of the raw scores). The identity, with the reason, when validation cannot fit
    one: a single class, fewer than 4 recordings, or a fitted slope that is not positive."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels).astype(int)
    raw = np.asarray(raw, dtype=np.float64)
    keep = np.isfinite(raw)
    labels, raw = labels[keep], raw[keep]
    if len(raw) < 4 or labels.min(initial=1) == labels.max(initial=0):
        return Calibration(
            "none", fitted_on=fitted_on, note="not fitted: validation needs both classes"
        )
    model = LogisticRegression(C=1.0)
    model.fit(logit(raw).reshape(-1, 1), labels)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    if not (math.isfinite(slope) and slope > 0 and math.isfinite(intercept)):
        return Calibration(
            "none",
            fitted_on=fitted_on,
            note=f"not fitted: the slope {slope:.3g} would not keep the ranking",
        )
    return Calibration("platt", slope, intercept, fitted_on)


# sensitivity_margin: the highest threshold reaching the target sensitivity on validation,
# moved halfway down to the next control's score (sensitivity: without the move, as models
# trained before 2026-12-05 recorded it)
ThresholdRule = Literal["sensitivity_margin", "sensitivity", "youden", "fixed"]
TARGET_RULES = ("sensitivity_margin", "sensitivity")


@dataclass(frozen=True)
class OperatingPoint:
    """The decision threshold on the calibrated probability, how it was chosen, and what it
    gave on validation (``sensitivity``/``specificity``: the worse of the conditions;
    ``by_condition``: clean and, when the model has hospital noise, noisy)."""

    threshold: float
    rule: ThresholdRule
    target_sensitivity: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    by_condition: dict[str, dict[str, float]] = field(default_factory=dict)
    chosen_on: str = ""

    def statement(self) -> str:
        """One sentence a clinician can read."""
        if self.rule == "fixed":
            return f"decision at probability >= {self.threshold:.3f} ({self.chosen_on})"
        gave = (
            f"; on validation it gave sensitivity {self.sensitivity:.2f} and specificity "
            f"{self.specificity:.2f}"
            if self.sensitivity is not None and self.specificity is not None
            else ""
        )
        target = (
            f" for a target sensitivity of {self.target_sensitivity:.2f}"
            if self.rule in TARGET_RULES and self.target_sensitivity is not None
            else ""
        )
        return f"decision at calibrated probability >= {self.threshold:.3f}{target}{gave}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "statement": self.statement()}


def rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    labels = np.asarray(labels).astype(bool)
    decided = np.asarray(scores) >= threshold
    positives, negatives = int(labels.sum()), int((~labels).sum())
    return {
        "sensitivity": float((decided & labels).sum() / positives) if positives else math.nan,
        "specificity": float((~decided & ~labels).sum() / negatives) if negatives else math.nan,
        "recordings": float(len(labels)),
    }


def sensitivity_threshold(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity on (``labels``, ``scores``) reaches ``target``:
    among thresholds meeting the target, the one with the best specificity. 0.5 without both
    classes."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.all() or not labels.any():
        return 0.5
    patients = np.sort(scores[labels])[::-1]  # descending
    needed = max(1, math.ceil(target * len(patients) - 1e-9))
    return float(patients[needed - 1])


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold maximizing sensitivity + specificity - 1 over scikit-learn's ROC
    curve (ties: the highest threshold); 0.5 without both classes."""
    from sklearn.metrics import roc_curve  # not at import: resources import this module

    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, np.asarray(scores, dtype=np.float64))
    finite = np.isfinite(thresholds)
    best = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    return float(thresholds[best])


def with_margin(threshold: float, conditions: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """``threshold`` moved halfway down to the highest control score below it (in any
    condition): no control changes side, so validation specificity is the same, and patients
    whose score is a little lower than on validation (the test's, a ward's) are still called.
    On a small validation split that separates the classes, the highest threshold sits on the
    lowest patient's score, and new patients fell under it (docs/MODELS.md)."""
    below = [
        scores[(~labels.astype(bool)) & (scores < threshold)]
        for labels, scores in conditions.values()
    ]
    highest = max((float(b.max()) for b in below if b.size), default=None)
    return threshold if highest is None else (threshold + highest) / 2


def choose_operating_point(
    rule: ThresholdRule,
    conditions: dict[str, tuple[np.ndarray, np.ndarray]],
    target_sensitivity: float,
    fixed_threshold: float,
) -> OperatingPoint:
    """The operating point from calibrated validation scores per condition (``clean``, and
    ``noisy`` when the model has hospital noise): ``labels, scores`` each."""
    labels = np.concatenate([lab for lab, _ in conditions.values()])
    scores = np.concatenate([s for _, s in conditions.values()])  # pooled, for Youden's J
    names = " and ".join(conditions)
    if rule == "fixed":
        threshold = fixed_threshold
        chosen_on = "fixed by the training protocol (SPIRA rounds the mean probability: 0.5)"
    elif rule == "youden":
        threshold = youden_threshold(labels, scores)
        chosen_on = f"validation recordings ({names}), Youden's J, when the model was trained"
    else:
        # the target in every condition: hospital noise can move patients' scores either way
        # (on the demo it raises them, so a pooled choice missed the target on clean audio)
        threshold = min(
            sensitivity_threshold(lab, s, target_sensitivity) for lab, s in conditions.values()
        )
        chosen_on = (
            f"validation recordings ({names}), the highest threshold reaching sensitivity "
            f"{target_sensitivity:.2f} in each, when the model was trained"
        )
        if rule == "sensitivity_margin":
            threshold = with_margin(threshold, conditions)
            chosen_on += ", moved halfway down to the next control's score"
    each = {name: rates(lab, s, threshold) for name, (lab, s) in conditions.items()}
    return OperatingPoint(
        threshold,
        rule,
        target_sensitivity if rule in TARGET_RULES else None,
        _worst([r["sensitivity"] for r in each.values()]),
        _worst([r["specificity"] for r in each.values()]),
        each,
        chosen_on,
    )


def _worst(values: list[float]) -> float | None:
    defined = [v for v in values if math.isfinite(v)]
    return min(defined) if defined else None


def load_calibration(directory: Path) -> Calibration:
    """The model's calibration map; the identity for a model saved without one."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.exists():
        return Calibration("none", note="the model was saved without a calibration map")
    return Calibration(**json.loads(path.read_text()))
