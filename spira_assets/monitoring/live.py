"""Live performance: the week's predictions joined with their clinical outcomes, per model
version, with the evaluation's own metrics and participant-bootstrap intervals
(``evaluation/metrics.py``, scikit-learn underneath), and the input drift of a day's predictions
against the champion's training data with ``batch_drift``'s statistics (``evaluation/drift.py``).

The unit is the recording: one outcome is about one recording, and a recording scored twice by
one model version (through the CLI and the REST server) has one score, so it counts once. The
bootstrap resamples people: predictions that carry a pseudonym are grouped by it, the others
stand alone (by their audio hash), since nothing says they share a speaker.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from spira_assets.monitoring.config import MonitoringConfig
from spira_assets.monitoring.tables import LIVE_PERFORMANCE

LIVE_METRICS = ("sensitivity", "specificity", "auroc", "ece", "accuracy", "brier")


def week_days(week_start: date) -> list[str]:
    return [(week_start + timedelta(days=i)).isoformat() for i in range(7)]


def scored_with_outcomes(predictions: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """One row per (model version, recording) with an outcome: participant, label, score
    (the calibrated probability), threshold."""
    scored = (
        predictions.filter(pl.col("probability").is_not_null() & pl.col("error").is_null())
        .sort("scored_at")
        .unique(subset=["model_version", "audio_sha256"], keep="last", maintain_order=True)
    )
    return scored.join(
        outcomes.select("audio_sha256", "label", "spo2"), on="audio_sha256", how="inner"
    ).select(
        "model_version",
        "audio_sha256",
        pl.coalesce("participant", pl.lit("A-") + pl.col("audio_sha256").str.slice(0, 16)).alias(
            "participant"
        ),
        "label",
        pl.col("probability").alias("score"),
        "threshold",
        "spo2",
    )


def live_performance(
    week: str,
    joined: pl.DataFrame,
    test_figures: dict[str, dict[str, float]],
    config: MonitoringConfig,
) -> pl.DataFrame:
    """Rows of ``LIVE_PERFORMANCE`` for every model version that scored recordings with
    outcomes this week (``test_figures``: version -> metric -> its test value)."""
    from spira_assets.evaluation.metrics import metric_table

    parts = []
    for version in sorted(set(joined.get_column("model_version").to_list())):
        rows = joined.filter(pl.col("model_version") == version)
        threshold = float(rows.get_column("threshold")[0])
        table = metric_table(rows, threshold, config.bootstrap_resamples, seed=0)
        positives = int(rows.get_column("label").sum())
        sensitivity = table.filter(pl.col("metric") == "sensitivity")["value"][0]
        judged = positives >= config.min_positive_outcomes
        below = bool(judged and sensitivity is not None and sensitivity < config.sensitivity_floor)
        figures = test_figures.get(version, {})
        parts.append(
            table.filter(pl.col("metric").is_in(LIVE_METRICS)).with_columns(
                pl.lit(week).alias("batch_id"),
                pl.lit(version).alias("model_version"),
                pl.col("metric").replace_strict(figures, default=None).alias("test_value"),
                pl.lit(rows.height).alias("recordings"),
                pl.lit(rows.get_column("participant").n_unique()).alias("participants"),
                pl.lit(positives).alias("positives"),
                pl.lit(rows.height - positives).alias("negatives"),
                pl.lit(threshold).alias("threshold"),
                pl.lit(judged).alias("judged"),
                pl.lit(below).alias("below_floor"),
            )
        )
    if not parts:
        return LIVE_PERFORMANCE.empty()
    return LIVE_PERFORMANCE.conform(pl.concat(parts, how="diagonal_relaxed"))


def sensitivity_verdict(rows: pl.DataFrame, config: MonitoringConfig) -> tuple[bool | None, str]:
    """(passed, description) of the live check over one week's rows: None when no version
    has enough positive outcomes to judge (the description says how many it had)."""
    sensitivity = rows.filter(pl.col("metric") == "sensitivity")
    if sensitivity.is_empty():
        return None, "too few outcomes: no prediction of this week has an outcome yet"
    said, verdicts = [], []
    for r in sensitivity.iter_rows(named=True):
        ci = (
            f" (95% CI {r['ci_low']:.2f}-{r['ci_high']:.2f})"
            if r["ci_low"] is not None and r["ci_high"] is not None
            else ""
        )
        value = "undefined" if r["value"] is None or np.isnan(r["value"]) else f"{r['value']:.2f}"
        if not r["judged"]:
            said.append(
                f"model {r['model_version']}: too few outcomes to judge, {r['positives']} "
                f"positive of {config.min_positive_outcomes} needed (sensitivity {value} "
                f"on {r['recordings']} recordings)"
            )
            continue
        verdicts.append(not r["below_floor"])
        side = "below" if r["below_floor"] else "at or above"
        said.append(
            f"model {r['model_version']}: live sensitivity {value}{ci} {side} the floor "
            f"{config.sensitivity_floor:.2f} ({r['positives']} positive, {r['negatives']} "
            "negative outcomes)"
        )
    return (all(verdicts) if verdicts else None), "; ".join(said)


def day_input_frame(predictions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The day's scored predictions as drift's inputs: recordings (duration_s) and the
    per-coefficient mean over them (``feature_stats``'s shape: coefficient, mean)."""
    scored = predictions.filter(pl.col("feature_means").is_not_null())
    if scored.is_empty():
        return scored, pl.DataFrame(schema={"coefficient": pl.Int64, "mean": pl.Float64})
    means = np.asarray(scored.get_column("feature_means").to_list(), dtype=np.float64)
    return scored, pl.DataFrame(
        {"coefficient": np.arange(means.shape[1], dtype=np.int64), "mean": means.mean(axis=0)}
    )
