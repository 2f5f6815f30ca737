"""Drift of a day's predictions from the champion's training data, with ``batch_drift``'s
statistics and thresholds (``evaluation/drift.py``) against the same reference
(``drift_reference``):

- scores: the share of positive decisions against the training data's class balance (PSI and
  a chi-square test), reported but never flagged: a hospital's prevalence is not the training
  set's, so a difference here is expected and no reason to retrain (live performance, with
  outcomes, is what judges the answers);
- input: recording duration (two-sample KS against its critical value) and each feature
  coefficient's mean over the day (shift in pooled reference SDs), from the input summary
  every prediction carries. A new microphone on a ward shows here before any outcome arrives.

Days under ``min_rows`` scored recordings are reported, never flagged, as small batches are.
"""

from __future__ import annotations

import polars as pl

from spira_assets.evaluation.drift import (
    ALPHA,
    DriftThresholds,
    categorical_drift,
    feature_drift,
    ks_drift,
)
from spira_assets.monitoring.live import day_input_frame

COLUMNS = {
    "kind": pl.String(),
    "feature": pl.String(),
    "statistic": pl.String(),
    "value": pl.Float64(),
    "threshold": pl.Float64(),
    "detail": pl.String(),
    "drifted": pl.Boolean(),
}


def prediction_drift(
    reference: pl.DataFrame,
    reference_features: pl.DataFrame,
    predictions: pl.DataFrame,
    thresholds: DriftThresholds,
) -> pl.DataFrame:
    """Rows kind, feature, statistic, value, threshold, detail, drifted (``batch_drift``'s)."""
    scored, day_means = day_input_frame(predictions)
    judgeable = scored.height >= thresholds.min_rows
    rows: list[dict[str, object]] = []
    decisions = scored.get_column("decision").cast(pl.Int64).alias("label")
    value, _, p_value = categorical_drift(reference.get_column("label"), decisions)
    share = float(decisions.mean()) if decisions.len() else float("nan")  # type: ignore[arg-type]
    base = float(reference.get_column("label").mean()) if reference.height else float("nan")  # type: ignore[arg-type]
    probabilities = scored.get_column("probability").drop_nulls().to_numpy()
    mean_probability = float(probabilities.mean()) if probabilities.size else float("nan")
    rows.append(
        {
            "kind": "scores",
            "feature": "decision",
            "statistic": "psi",
            "value": value,
            "threshold": thresholds.psi,
            "detail": f"positive decisions {share:.2f} vs training class balance {base:.2f}; "
            f"chi-square p={p_value:.2g}; mean probability {mean_probability:.3f}",
            "drifted": False,  # reported only (see the module's docstring)
        }
    )
    statistic, p_value, critical = ks_drift(
        reference.get_column("duration_s"), scored.get_column("duration_s")
    )
    rows.append(
        {
            "kind": "input",
            "feature": "duration_s",
            "statistic": "ks_d",
            "value": statistic,
            "threshold": critical,
            "detail": f"KS p={p_value:.2g}",
            "drifted": bool(judgeable and statistic >= critical and p_value < ALPHA),
        }
    )
    frame = pl.DataFrame(rows, schema=COLUMNS)
    if reference_features.height and day_means.height:
        features = feature_drift(reference_features, day_means, thresholds, judgeable)
        frame = pl.concat([frame, features.select(list(COLUMNS))])
    return frame
