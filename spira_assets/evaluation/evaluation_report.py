"""The evaluation report of a model version, composed (no Dagster): what was tested and how,
the operating point and calibration section, SPIRA's published per-seed test, metrics with
their intervals, subgroups and figures. ``evaluation_report`` writes it beside its figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from spira_assets.evaluation.report import subgroup_summary, table, with_ci
from spira_assets.ingest.gates import LeftOut


def blocked_sentence(left_out: LeftOut) -> str:
    """The report's sentence on recordings left out because their batch is blocked now."""
    if not left_out:
        return ""
    return (
        "Left out, because their batch is blocked now (a blocking ingest check failed after "
        f"the model was trained): {left_out.describe()}. "
    )


@dataclass(frozen=True)
class TestSetAccount:
    """Where the model's recorded test split went: scored, gone from the store, left out with
    a blocked batch, or without a window under the model's window rule."""

    recorded: int  # test recordings recorded with the model
    available: int  # of those, still in the store and in open batches
    left_out: LeftOut
    without_window: int
    scored_recordings: int
    scored_participants: int

    @property
    def blocked(self) -> int:
        return sum(self.left_out.recordings.values())

    @property
    def gone(self) -> int:
        return self.recorded - self.available - self.blocked


def evaluation_markdown(
    version: str,
    profile: str,
    account: TestSetAccount,
    noise_note: str,
    threshold: float,
    chosen_on: str,
    draws: int,
    min_defined: float,
    speaker: str,
    trust: str,
    per_seed: pl.DataFrame,
    metrics: pl.DataFrame,
    subgroups: pl.DataFrame,
    figures: list[str],
) -> str:
    """The report's Markdown. ``figures``: the "<condition>/<level>" keys of the figures
    written beside it (``<condition>_<level>.png``); ``trust``: the operating point,
    calibration and seed-spread section (``trust_report.trust_markdown``)."""
    return (
        f"# Evaluation of model {version}\n\n"
        f"Training protocol: **{profile}**. Test set: the model's own recorded test split, "
        f"{account.scored_recordings} recordings of {account.scored_participants} participants "
        f"({account.recorded} recorded; {account.gone} no longer in the store; "
        f"{account.blocked} of batches blocked now, left out; "
        f"{account.without_window} without a window under the model's window rule), none of "
        f"them in its training or validation data (checked). Clean, and {noise_note}. "
        f"{blocked_sentence(account.left_out)}Decision threshold {threshold:.3f} "
        f"({chosen_on}); the published noisy test decides at 0.5, as SPIRA does. 95% CIs "
        f"resample participants ({draws} draws); a CI defined in fewer than "
        f"{min_defined:.0%} of the draws is marked undefined, with the share. "
        f"Speaker independence: {speaker}.\n\n"
        + trust
        + "The comparison with the champion and with every past champion (paired differences on "
        "participants unseen by both) is in the model card written by the promotion gate.\n\n"
        "## SPIRA's published test, per seed\n\nAccuracy per recording at 0.5 (mean of window "
        "probabilities), clean and with SPIRA's noisy-test protocol (1 noise slice on controls, "
        "none on patients, seed 42 x index), for every kept seed and their mean, as Casanova et "
        "al. (2021) report them.\n\n"
        + table(per_seed)
        + "\n## Metrics\n\n"
        + table(with_ci(metrics.filter(pl.col("role") == "candidate")))
        + "\n## Subgroups (clean, per recording)\n\n"
        + table(subgroup_summary(subgroups))
        + "\n## Figures\n\n"
        + "".join(f"![{k}]({k.replace('/', '_')}.png)\n\n" for k in figures)
    )


def write_figures(
    frames: dict[str, pl.DataFrame], threshold: float, reports: Path
) -> dict[str, bytes]:
    """One figure per condition of the per-recording scores, written to the report folder
    (``<condition>_recording.png``): the PNGs by "<condition>/recording"."""
    from spira_assets.plots import evaluation_figure

    reports.mkdir(parents=True, exist_ok=True)
    figures = {}
    for key, frame in frames.items():
        if key.endswith("/recording"):
            png = evaluation_figure(
                frame.get_column("label").to_numpy(),
                frame.get_column("score").to_numpy(),
                threshold,
                key,
            )
            (reports / (key.replace("/", "_") + ".png")).write_bytes(png)
            figures[key] = png
    return figures
