"""What a user must read before acting on a model's decision: its operating point, what its
calibration did (expected calibration error and Brier score before and after, with
participant-bootstrap intervals), and how much its validation AUROC varied over seeds. Used by
the evaluation report, the model card and the assets' metadata (no Dagster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from spira_assets.evaluation.config import MIN_DEFINED_DRAWS
from spira_assets.evaluation.metrics import bootstrap, brier, expected_calibration_error
from spira_assets.ml.calibration import CALIBRATION_FILE, load_calibration

CALIBRATION_METRICS = {"ece": expected_calibration_error, "brier": brier}


def calibration_effect(
    raw: pl.DataFrame,
    calibrated: pl.DataFrame,
    resamples: int,
    seed: int = 0,
    min_defined: float = MIN_DEFINED_DRAWS,
) -> pl.DataFrame:
    """Expected calibration error and Brier score of the clean test recordings' raw and
    calibrated probabilities, each with its participant-bootstrap 95% interval (the same draws
    for both: one seed)."""
    rows = []
    for name, frame in (("raw", raw), ("calibrated", calibrated)):
        for metric, function in CALIBRATION_METRICS.items():
            estimate = bootstrap(frame, function, resamples, seed, min_defined=min_defined)
            rows.append(
                {
                    "probability": name,
                    "metric": metric,
                    "value": estimate.value,
                    "ci_low": estimate.low if estimate.has_interval else None,
                    "ci_high": estimate.high if estimate.has_interval else None,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "probability": pl.String,
            "metric": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )


def operating_point(directory: Path) -> dict[str, Any]:
    """The model's recorded operating point (``threshold.json``), with its statement."""
    recorded: dict[str, Any] = json.loads((Path(directory) / "threshold.json").read_text())
    recorded.setdefault(
        "statement", f"decision at probability >= {float(recorded['threshold']):.3f}"
    )
    return recorded


def seed_spread(summary: dict[str, Any]) -> str:
    """``validation AUROC over 3 seeds: 0.933 +/- 0.095 (kept: seed 43, 1.000)``."""
    seeds = len(summary.get("epochs_run", {})) or 1
    mean, std, best = (
        summary.get("val_auroc_mean"),
        summary.get("val_auroc_std"),
        summary.get("val_auroc"),
    )
    if mean is None:
        return f"validation AUROC over {seeds} seed(s): undefined (one class in validation)"
    kept = f"{best:.3f}" if best is not None else "undefined"
    return (
        f"validation AUROC over {seeds} seed(s): {mean:.3f} +/- {std or 0.0:.3f} (kept: seed "
        f"{summary.get('best_seed')}, {kept}, the lowest validation loss)"
    )


def trust_markdown(directory: Path, effect: pl.DataFrame | None) -> str:
    """The report's section on the operating point, calibration and seed spread."""
    point = operating_point(directory)
    calibration = load_calibration(directory)
    summary = json.loads((Path(directory) / "summary.json").read_text())
    lines = [
        "## Operating point, calibration, stability\n",
        f"- **Operating point**: {point['statement']} ({point.get('chosen_on', '')}).",
    ]
    for condition, rates in (point.get("by_condition") or {}).items():
        lines.append(
            f"  - validation, {condition}: sensitivity {rates['sensitivity']:.3f}, "
            f"specificity {rates['specificity']:.3f} ({int(rates['recordings'])} recordings)"
        )
    if calibration.method == "platt":
        lines.append(
            f"- **Calibration**: Platt scaling fitted on the {calibration.fitted_on} "
            f"(`{CALIBRATION_FILE}`: p = sigmoid({calibration.slope:.3f} x logit(raw) "
            f"{calibration.intercept:+.3f})); every scorer applies it, and the participant "
            "decision is the mean of a person's calibrated probabilities at the threshold."
        )
    else:
        lines.append(f"- **Calibration**: none ({calibration.note or 'raw mean probability'}).")
    lines.append(f"- **Seed spread**: {seed_spread(summary)}.")
    text = "\n".join(lines) + "\n\n"
    if effect is not None and not effect.is_empty():
        shown = effect.select(
            "probability",
            "metric",
            pl.format(
                "{} [{}, {}]",
                pl.col("value").round(3),
                pl.col("ci_low").round(3),
                pl.col("ci_high").round(3),
            ).alias("value [95% CI]"),
        )
        from spira_assets.evaluation.report import table

        text += (
            "Calibration on the clean test recordings, before (raw) and after (calibrated):\n\n"
            + table(shown)
            + "\n![reliability](reliability.png)\n\n"
        )
    return text
