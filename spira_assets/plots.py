"""Small matplotlib figures for asset metadata, returned as PNG bytes (no Dagster here)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.ticker import MaxNLocator


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def raw_audio_overview(table: pl.DataFrame) -> bytes:
    """Duration and loudness of accepted files, and rejections by rule."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    accepted = table.filter(pl.col("accepted"))
    axes[0].hist(accepted.get_column("duration_s").to_list() or [0], bins=20, color="#4c72b0")
    axes[0].set(title="Accepted: duration", xlabel="seconds", ylabel="files")
    axes[1].hist(accepted.get_column("rms_dbfs").to_list() or [0], bins=20, color="#55a868")
    axes[1].set(title="Accepted: RMS level", xlabel="dBFS")
    rules = table.filter(~pl.col("accepted")).group_by("rejection_rule").len().sort("len")
    names = [str(r) for r in rules.get_column("rejection_rule").to_list()]
    axes[2].barh(names or ["(none)"], rules.get_column("len").to_list() or [0], color="#c44e52")
    axes[2].set(title="Quarantined files by rule", xlabel="files")
    return _png(fig)


def class_balance(table: pl.DataFrame) -> bytes:
    """Accepted recordings per utterance and class."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    counts = table.group_by("utterance", "label").len()
    utterances = sorted(set(counts.get_column("utterance").to_list()))
    width = 0.38
    for offset, (label, name, color) in enumerate(
        ((0, "control (0)", "#4c72b0"), (1, "patient (1)", "#dd8452"))
    ):
        values = [
            int(
                counts.filter((pl.col("utterance") == u) & (pl.col("label") == label))
                .get_column("len")
                .sum()
            )
            for u in utterances
        ]
        ax.bar(
            [i + (offset - 0.5) * width for i in range(len(utterances))],
            values,
            width,
            label=name,
            color=color,
        )
    ax.set_xticks(range(len(utterances)), utterances)
    ax.set(title="Accepted recordings by utterance and class", ylabel="recordings")
    ax.legend()
    return _png(fig)


def feature_examples(
    examples: dict[str, tuple[str, np.ndarray]], title: str, hop_s: float
) -> bytes:
    """One feature 'image' (coefficients x time) per class, side by side, titled with its
    recording id. Each coefficient is standardized over the shown frames (z-score): raw MFCCs
    are dominated by c0 (the energy), which would leave every other row one colour."""
    fig, axes = plt.subplots(1, max(1, len(examples)), figsize=(11, 3.4), squeeze=False)
    for ax, (name, (recording, frames)) in zip(axes[0], examples.items(), strict=False):
        mean = frames.mean(axis=0, keepdims=True)
        std = frames.std(axis=0, keepdims=True)
        z = (frames - mean) / np.where(std > 0, std, 1.0)
        shown = ax.imshow(
            z.T,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-3.0,
            vmax=3.0,
            extent=(0.0, frames.shape[0] * hop_s, 0.0, float(frames.shape[1])),
        )
        ax.set(title=f"{name}: {recording}", xlabel="seconds", ylabel=f"{title} coefficient")
        fig.colorbar(shown, ax=ax, label="z-score per coefficient")
    return _png(fig)


def training_curves(
    histories: dict[int, list[tuple[int, float, float, float]]],
    best: tuple[int, int] | None = None,
) -> bytes:
    """Per seed: (epoch, train loss, validation loss, validation AUROC); ``best`` is the
    (seed, epoch) whose weights were kept, marked on both panels."""
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(11, 3.4))
    for seed, rows in histories.items():
        epochs = [r[0] for r in rows]
        line = loss_ax.plot(epochs, [r[1] for r in rows], "--", label=f"train (seed {seed})")[0]
        loss_ax.plot(
            epochs,
            [r[2] for r in rows],
            "-",
            color=line.get_color(),
            label=f"validation (seed {seed})",
        )
        auc_ax.plot(epochs, [r[3] for r in rows], "-", color=line.get_color(), label=f"seed {seed}")
        if best is not None and best[0] == seed:
            kept = [r for r in rows if r[0] == best[1]]
            if kept:
                label = f"kept: seed {seed}, epoch {best[1]}"
                loss_ax.plot(best[1], kept[0][2], "*", color="black", markersize=12, label=label)
                auc_ax.plot(best[1], kept[0][3], "*", color="black", markersize=12, label=label)
                for ax in (loss_ax, auc_ax):
                    ax.axvline(best[1], color="black", linewidth=0.8, linestyle=":")
    for ax in (loss_ax, auc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set(title="BCE loss", xlabel="epoch")
    auc_ax.set(title="validation AUROC (per recording)", xlabel="epoch", ylim=(0.0, 1.02))
    loss_ax.legend(fontsize=7)
    auc_ax.legend(fontsize=7)
    return _png(fig)


def evaluation_figure(
    labels: np.ndarray, scores: np.ndarray, threshold: float, title: str
) -> bytes:
    """ROC curve, calibration curve and confusion matrix of recording-level scores."""
    from sklearn.metrics import roc_curve  # scikit-learn loads with the evaluation, not the UI

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    fig, (roc, cal, conf) = plt.subplots(1, 3, figsize=(12, 3.6))
    if labels.all() or not labels.any():
        fpr, tpr = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    else:
        fpr, tpr, _ = roc_curve(labels, scores)
    roc.plot(fpr, tpr, color="#4c72b0")
    roc.plot([0, 1], [0, 1], ":", color="grey")
    roc.set(title=f"ROC ({title})", xlabel="1 - specificity", ylabel="sensitivity")
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(scores, edges) - 1, 0, 9)
    centres = [scores[which == b].mean() for b in range(10) if (which == b).any()]
    observed = [labels[which == b].mean() for b in range(10) if (which == b).any()]
    cal.plot([0, 1], [0, 1], ":", color="grey")
    cal.plot(centres, observed, "o-", color="#dd8452")
    cal.set(title="calibration", xlabel="mean predicted", ylabel="observed share of patients")
    predicted = scores >= threshold
    matrix = np.array(
        [
            [(~predicted & ~labels).sum(), (predicted & ~labels).sum()],
            [(~predicted & labels).sum(), (predicted & labels).sum()],
        ]
    )
    conf.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    for (i, j), value in np.ndenumerate(matrix):
        dark = value > matrix.max() / 2  # white on the dark half of the colour map
        conf.text(
            j, i, str(value), ha="center", va="center", fontsize=13, fontweight="bold",
            color="white" if dark else "black",
        )  # fmt: skip
    conf.set_xticks([0, 1], ["control", "patient"])
    conf.set_yticks([0, 1], ["control", "patient"])
    conf.set(title=f"confusion at {threshold:.2f}", xlabel="predicted", ylabel="true")
    return _png(fig)


def drift_figure(drift: pl.DataFrame) -> bytes:
    """Each drift statistic as a share of its threshold (1.0 = the line); drifted in red."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1, 3]})
    for ax, kind in zip(axes, ("metadata", "features"), strict=True):
        part = drift.filter(pl.col("kind") == kind)
        ratio = (part["value"] / part["threshold"]).fill_nan(0).fill_null(0).to_numpy()
        colors = ["#c44e52" if d else "#4c72b0" for d in part["drifted"].to_list()]
        labels = [f.replace("coefficient_", "c") for f in part["feature"].to_list()]
        ax.bar(range(len(ratio)), ratio, color=colors)
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_xticks(range(len(ratio)), labels, rotation=90 if kind == "features" else 30)
        ax.set(title=f"{kind}: statistic / threshold", ylabel="ratio")
    return _png(fig)


def reliability_figure(labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray) -> bytes:
    """Reliability diagram of the same recordings' raw and calibrated probabilities: observed
    share of patients per bin of predicted probability (the diagonal is perfect calibration);
    marker size grows with the bin's count."""
    labels = np.asarray(labels, dtype=np.float64)
    fig, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], ":", color="grey")
    edges = np.linspace(0, 1, 11)
    for name, scores, color in (("raw", raw, "#8c8c8c"), ("calibrated", calibrated, "#4c72b0")):
        scores = np.asarray(scores, dtype=np.float64)
        which = np.clip(np.digitize(scores, edges) - 1, 0, 9)
        bins = [b for b in range(10) if (which == b).any()]
        axis.plot(
            [scores[which == b].mean() for b in bins],
            [labels[which == b].mean() for b in bins],
            "o-",
            color=color,
            label=name,
        )
        axis.scatter(
            [scores[which == b].mean() for b in bins],
            [labels[which == b].mean() for b in bins],
            s=[12 + 4 * int((which == b).sum()) for b in bins],
            color=color,
            alpha=0.4,
        )
    axis.set(
        title="reliability (clean test recordings)",
        xlabel="predicted probability",
        ylabel="observed share of patients",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend(loc="upper left")
    return _png(fig)
