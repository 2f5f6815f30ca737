"""The model card a gate decision leaves beside the evaluation report (Markdown; no Dagster)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from spira_assets.evaluation.gate import GateConfig, GateDecision
from spira_assets.evaluation.report import LIMITATIONS, subgroup_summary, table, with_ci

if TYPE_CHECKING:
    from spira_assets.evaluation.comparison import Comparison


def _difference(c: Comparison) -> str:
    if c.error is not None or not math.isfinite(c.difference):
        return "n/a"
    if not (math.isfinite(c.ci_low) and math.isfinite(c.ci_high)):
        return f"{c.difference:+.3f} [CI undefined]"
    return f"{c.difference:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"


def comparison_table(comparisons: list[Comparison]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "reference": [f"{c.role} {c.reference_version}" for c in comparisons],
            "participants unseen by both": [c.participants for c in comparisons],
            "patients / controls": [f"{c.patients} / {c.controls}" for c in comparisons],
            "bootstrap draws defined": [
                f"{c.draws_defined:.0%}" if math.isfinite(c.draws_defined) else "n/a"
                for c in comparisons
            ],
            "candidate AUROC": [c.candidate_auroc for c in comparisons],
            "reference AUROC": [c.reference_auroc for c in comparisons],
            "difference [95% CI]": [_difference(c) for c in comparisons],
            "from splits": [c.from_splits or (c.error or "") for c in comparisons],
        },
        schema_overrides={"candidate AUROC": pl.Float64, "reference AUROC": pl.Float64},
    )


def criteria_table(decision: GateDecision) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "criterion": [c.name for c in decision.criteria],
            "value": [c.value for c in decision.criteria],
            "threshold": [c.threshold for c in decision.criteria],
            "passed": [c.passed for c in decision.criteria],
        },
        schema_overrides={"value": pl.Float64},
    )


def model_card(
    version: str,
    lineage: dict[str, Any],
    metrics: pl.DataFrame,
    subgroups: pl.DataFrame,
    composition: pl.DataFrame,
    by_batch: pl.DataFrame,
    decision: GateDecision,
    comparisons: list[Comparison],
    champion: str,
    gate: GateConfig,
    trust: str = "",
) -> str:
    """``trust``: the operating point, calibration and seed-spread section
    (``trust_report.trust_markdown``)."""
    threshold = metrics.get_column("threshold")[0]
    verdict = "PASSED" if decision.passed else "FAILED"
    speaker = lineage.get("speaker_independence", "guaranteed")
    return (
        f"# Model card: SpiraConv {version}\n\n"
        "## Intended use\n\nPre-screening support for respiratory insufficiency (SpO2 < 92 %) "
        "from short Brazilian-Portuguese voice recordings (consent phrase, sustained vowel, "
        "nursery rhyme, sentence), to prioritise a pulse-oximetry measurement. It outputs a "
        f"calibrated probability; the decision threshold is {threshold:.3f} (its operating point "
        "below).\n\n"
        "## Out of scope\n\nDiagnosis; replacing oximetry; other languages or utterances; "
        "children; estimating SpO2; respiratory insufficiency of causes absent from training "
        "data; any use on audio from the synthetic demo generator presented as clinical "
        "evidence.\n\n"
        f"## Data\n\nSpeaker independence between splits: **{speaker}**.\n\n"
        "Participants by split and class (patients = 1), as recorded with the model:\n\n"
        + table(composition)
        + "\nRecordings by batch and split:\n\n"
        + table(by_batch)
        + "\n## Metrics (own test participants, 95% CI by participant bootstrap)\n\n"
        + table(with_ci(metrics.filter(pl.col("role") == "candidate")))
        + ("\n" + trust if trust else "")
        + "\n## Subgroups (clean test recordings)\n\n"
        + table(subgroup_summary(subgroups))
        + "\n## Comparison with the champion and every past champion\n\n"
        "Clean AUROC on the recordings whose participants (and audio) neither model saw in "
        "training or validation; the difference is candidate minus reference, its 95% interval "
        "a paired participant bootstrap (both models on the same draws). Non-inferiority needs "
        f"the lower bound above -{gate.non_inferiority_margin}, judged only on at least "
        f"{gate.min_unseen_per_class} patients and {gate.min_unseen_per_class} controls unseen "
        f"by both and a bootstrap defined in at least {gate.min_defined_draws:.0%} of its "
        "draws.\n\n"
        + (table(comparison_table(comparisons)) if comparisons else "_no champion yet_\n")
        + "\n## Limitations\n\n"
        + LIMITATIONS
        + "\n\n## Lineage\n\n"
        + table(
            pl.DataFrame(
                {
                    "input": [
                        "batches (shard of each)",
                        "noise",
                        "feature config",
                        "code version",
                        "seeds",
                        "best seed",
                        "device",
                        "MLflow run",
                    ],
                    "value": [
                        json.dumps(lineage["batches"]),
                        json.dumps(lineage["noise"]),
                        lineage["feature_config_hash"],
                        lineage["code_version"],
                        json.dumps(lineage["seeds"]),
                        str(lineage["best_seed"]),
                        lineage["device"],
                        lineage["mlflow_run_id"],
                    ],
                }
            )
        )
        + f"\n## Promotion gate\n\n**{verdict}** against champion {champion}.\n\n"
        + table(criteria_table(decision))
        + "\n"
        + "".join(f"- {r}\n" for r in decision.reasons or ["every floor and comparison met"])
    )


def figures_and_links(reports: Path, links: dict[str, str]) -> str:
    """The card's last section: the evaluation's figures (already in the model's report folder,
    so relative paths work in the HTML and the Markdown) and links to where the model lives."""
    figures = sorted(p.name for p in reports.glob("*.png"))
    shown = "".join(f"![{name.removesuffix('.png')}]({name})\n\n" for name in figures)
    listed = "".join(f"- [{label}]({url})\n" for label, url in links.items())
    return "\n## Figures\n\n" + (shown or "No figure was written.\n\n") + "## Links\n\n" + listed


CARD_REPORT_LINKS = {
    "evaluation report": "evaluation.html",
    "every report (champion marked)": "../index.html",
}


def compose_model_card(
    version: str,
    lineage: dict[str, Any],
    metrics: pl.DataFrame,
    subgroups: pl.DataFrame,
    recordings: pl.DataFrame,
    decision: GateDecision,
    comparisons: list[Comparison],
    champion: str,
    gate: GateConfig,
    trust: str,
    reports: Path,
    links: dict[str, str],
) -> str:
    """The whole card of a gated model: ``model_card`` with the data composition of
    ``recordings`` (every recording with the model's own ``split``), then its figures and links
    (the evaluation report, the reports index, and ``links``: where the model lives)."""
    composition = (
        recordings.group_by("split", "label")
        .agg(
            pl.col("participant").n_unique().alias("participants"),
            pl.len().alias("recordings"),
        )
        .sort("split", "label")
    )
    by_batch = recordings.group_by("batch_id", "split").len("recordings").sort("batch_id", "split")
    card = model_card(
        version,
        lineage,
        metrics,
        subgroups,
        composition,
        by_batch,
        decision,
        comparisons,
        champion,
        gate,
        trust,
    )
    return card + figures_and_links(reports, CARD_REPORT_LINKS | links)
