"""Figures of the monitoring assets, as PNG bytes (no Dagster)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from spira_assets.plots import _png

SHOWN = ("sensitivity", "specificity", "auroc", "ece")


def live_figure(history: pl.DataFrame, floor: float) -> bytes:
    """Weekly live metrics with their 95% intervals, the model's test figure dashed beside
    them and the sensitivity floor dotted (``history``: LIVE_PERFORMANCE rows of every week)."""
    fig, axes = plt.subplots(1, len(SHOWN), figsize=(3.2 * len(SHOWN), 3.0), sharex=True)
    weeks = sorted(set(history.get_column("batch_id").to_list()))
    for ax, metric in zip(axes, SHOWN, strict=True):
        rows = history.filter(pl.col("metric") == metric)
        for version in sorted(set(rows.get_column("model_version").to_list())):
            mine = rows.filter(pl.col("model_version") == version).sort("batch_id")
            x = [weeks.index(w) for w in mine.get_column("batch_id").to_list()]
            value = mine.get_column("value").fill_null(np.nan).to_numpy()
            low = mine.get_column("ci_low").fill_null(np.nan).to_numpy()
            high = mine.get_column("ci_high").fill_null(np.nan).to_numpy()
            # a percentile interval need not contain the point estimate (a skewed bootstrap,
            # or a rounding apart on a degenerate one): no bar on that side, not a crash
            errors = np.maximum(np.nan_to_num(np.vstack([value - low, high - value]), nan=0.0), 0)
            line = ax.errorbar(x, value, yerr=errors, marker="o", capsize=3, label=version[:8])
            test = mine.get_column("test_value").drop_nulls()
            if test.len():
                ax.axhline(float(test[-1]), ls="--", color=line[0].get_color(), lw=1)
        if metric == "sensitivity":
            ax.axhline(floor, ls=":", color="#c44e52", lw=1.2, label="floor")
        ax.set(title=metric, ylim=(0, 1.02 if metric != "ece" else None))
        ax.set_xticks(range(len(weeks)), [w[5:] for w in weeks], rotation=45, fontsize=7)
    axes[0].legend(fontsize=7, title="live (test dashed)", title_fontsize=7)
    return _png(fig)


def score_histogram(predictions: pl.DataFrame, threshold: float | None) -> bytes:
    """The day's calibrated probabilities, by decision, with the threshold."""
    fig, ax = plt.subplots(figsize=(5, 3.0))
    scored = predictions.filter(pl.col("probability").is_not_null())
    for decision, name, color in (
        (0, "no insufficiency", "#4c72b0"),
        (1, "insufficiency", "#dd8452"),
    ):
        values = scored.filter(pl.col("decision") == decision).get_column("probability").to_list()
        if values:
            ax.hist(values, bins=[i / 20 for i in range(21)], color=color, alpha=0.8, label=name)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label="threshold")
    ax.set(title="probabilities of the day", xlabel="calibrated probability", ylabel="files")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png(fig)
