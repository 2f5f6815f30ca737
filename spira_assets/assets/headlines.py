"""The first line of an asset's metadata: what a user came to the page for, in words.

``evaluation_report`` and ``champion`` lead with AUROC, sensitivity and specificity and their
95 % intervals, per recording and per participant; ``champion`` then says what the gate did and
why, including that non-inferiority did not apply to a first champion. Tables shown in the UI
put the columns people read first (the UI cuts wide tables at the right edge).

The headline and the verdict are Markdown, one figure or clause per short line: the UI runs a
text value's line breaks together, and on an asset's Overview tab (whose metadata column is
about 500 px wide beside the definition panel) a wide table below widens the value column past
the panel, so a long line was cut mid-figure at 1600 px.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from spira_assets.assets.links import mlflow_links

if TYPE_CHECKING:
    from spira_assets.evaluation.comparison import Comparison
    from spira_assets.evaluation.gate import GateConfig, GateDecision

HEADLINE = "headline"
GATE_VERDICT = "gate_verdict"
KEY_METRICS = ("auroc", "sensitivity", "specificity")
NAMES = {"auroc": "AUROC", "sensitivity": "sensitivity", "specificity": "specificity"}
LEVELS = ("recording", "participant")


def _figure(value: float | None, low: float | None, high: float | None) -> str:
    if value is None or value != value:
        return "undefined"
    if low is None or high is None or low != low or high != high:
        return f"{value:.3f} (95% CI undefined)"
    return f"{value:.3f} (95% CI {low:.3f}-{high:.3f})"


def metric_lines(metrics: pl.DataFrame, condition: str = "clean") -> list[str]:
    """['per recording: AUROC 0.998 (95% CI 0.990-1.000)', 'per recording: sensitivity ...',
    ..., 'per participant: ...'] from the candidate's rows of ``evaluation_metrics``; a level
    the table does not have is left out."""
    rows = metrics.filter((pl.col("role") == "candidate") & (pl.col("condition") == condition))
    lines = []
    for level in LEVELS:
        found = {
            m: (v, lo, hi)
            for m, v, lo, hi in rows.filter(pl.col("level") == level)
            .select("metric", "value", "ci_low", "ci_high")
            .iter_rows()
        }
        lines += [
            f"per {level}: {NAMES[m]} {_figure(*found[m])}" for m in KEY_METRICS if m in found
        ]
    return lines


LINE_CHARS = 60  # what the Overview tab's value column shows of a line at 1600 px, with room


def short_lines(*paragraphs: str, width: int = LINE_CHARS) -> dg.MarkdownMetadataValue:
    """Markdown showing each paragraph's clauses (split at '; ') on lines of at most ``width``
    characters, the text itself unchanged (Markdown's special characters escaped)."""
    lines = [
        wrapped
        for paragraph in paragraphs
        for clause in paragraph.split("; ")
        for wrapped in textwrap.wrap(clause, width, break_long_words=False) or [""]
    ]
    return dg.MetadataValue.md("  \n".join(_literal(line) for line in lines))


def _literal(line: str) -> str:
    """``line`` as Markdown that shows it as written: no emphasis, link or list item."""
    escaped = re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", line)
    escaped = re.sub(r"^(\d+)\.", r"\1\\.", escaped)  # not an ordered list's item
    return re.sub(r"^([-+])", r"\\\1", escaped)  # nor a bullet


def headline(
    title: str, metrics: pl.DataFrame, condition: str = "clean"
) -> dg.MarkdownMetadataValue:
    """'PROMOTED 1a2b3c4d5e6f7a8b, clean test' then one line per key figure (``metric_lines``)."""
    return short_lines(f"{title}, {condition} test", *metric_lines(metrics, condition))


def gate_verdict(
    version: str,
    decision: GateDecision,
    comparisons: Sequence[Comparison],
    champion_before: str | None,
    gate: GateConfig,
) -> str:
    """The gate's decision in words: promoted or refused, why, and what non-inferiority was
    judged against (or that it did not apply: no model had held the title)."""
    if not comparisons and champion_before is None:
        against = "first champion: non-inferiority did not apply (no earlier champion to compare)"
    else:
        head = next((c for c in comparisons if c.role == "champion"), None)
        against = f"compared with {len(comparisons)} model(s) that held the title"
        if head is not None and not head.error and math.isfinite(head.difference):
            interval = (
                f"95% CI {head.ci_low:+.3f} to {head.ci_high:+.3f}"
                if math.isfinite(head.ci_low) and math.isfinite(head.ci_high)
                else "95% CI undefined"
            )
            against += (
                f"; AUROC difference vs champion {head.reference_version}: "
                f"{head.difference:+.3f} ({interval}, margin -{gate.non_inferiority_margin:.2f})"
            )
    if champion_before == version and decision.passed:
        return f"kept: {version} is already the champion and meets every criterion again; {against}"
    if decision.passed:
        return f"PROMOTED: {version} meets every criterion; {against}"
    return f"REFUSED: {'; '.join(decision.reasons)}; {against}"


def key_columns_first(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """The columns in ``keys`` (those present) first, the others after in their order."""
    first = [k for k in keys if k in frame.columns]
    return frame.select(*first, *(c for c in frame.columns if c not in first))


def model_links(
    tracking_uri: str, run_id: str, registered_model: str, registered: str | None
) -> dict[str, Any]:
    """Links to the model's MLflow run, experiment and registered version; none when the
    tracking store no longer knows the run (the page still shows everything else)."""
    from mlflow.tracking import MlflowClient

    try:
        experiment_id = str(MlflowClient(tracking_uri).get_run(run_id).info.experiment_id)
    except Exception:  # a replaced or unreachable store: no link rather than a failed step
        return {}
    return mlflow_links(tracking_uri, experiment_id, run_id, registered_model, registered or None)


ECHO_RULE = "audio_rejected"  # validated_metadata's rule for a row whose file was rejected


def rejection_summary(rows: pl.DataFrame, metadata_stage: str) -> tuple[str, int]:
    """('5 file(s) and 1 metadata row(s); 4 more row(s) only point at a rejected file', 6):
    a metadata row rejected because its audio file was is an echo of that file's rejection,
    not a rejection of its own."""
    echo = pl.col("rule") == ECHO_RULE
    files = rows.filter(pl.col("stage") != metadata_stage).height
    own_rows = rows.filter((pl.col("stage") == metadata_stage) & ~echo).height
    echoes = rows.filter((pl.col("stage") == metadata_stage) & echo).height
    text = f"{files} file(s) and {own_rows} metadata row(s)" + (
        f"; {echoes} more row(s) only point at a rejected file ({ECHO_RULE})" if echoes else ""
    )
    return text, files + own_rows
