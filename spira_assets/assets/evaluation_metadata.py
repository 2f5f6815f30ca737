"""What ``evaluation_report`` shows in the UI: its metadata (headline, links to the model and
its report, test figures, metric, subgroup and per-seed tables, figures) and the operating
point, calibration and seed-spread section, as report text and metadata."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from spira_assets.assets.headlines import (
    HEADLINE,
    KEY_METRICS,
    headline,
    key_columns_first,
    model_links,
)
from spira_assets.assets.links import report_url
from spira_assets.assets.presentation import PLOT, image, plot_evaluation, table_metadata
from spira_assets.evaluation.evaluation_report import TestSetAccount
from spira_assets.evaluation.report import pivot_metrics, subgroup_summary
from spira_assets.resources import EvaluationSettings, MlflowTracking

if TYPE_CHECKING:
    from spira_assets.evaluation.assessment import Assessment
    from spira_assets.ml.scoring import ModelUnderTest


def report_metadata(
    candidate: "ModelUnderTest",
    mlflow_tracking: MlflowTracking,
    metrics: pl.DataFrame,
    subgroups: pl.DataFrame,
    assessed: "Assessment",
    account: TestSetAccount,
    report: tuple[Path, Path],
    figures: dict[str, bytes],
    trust_metadata: dict[str, Any],
) -> dict[str, Any]:
    """What the UI shows of an evaluation: the headline, links to the model and its report,
    the clean (and noisy) test figures, the metric, subgroup and per-seed tables, the trust
    section's entries and the figures."""
    from spira_assets.evaluation.assessment import PUBLISHED

    version, (md, html) = candidate.version, report
    value = {
        (r["condition"], r["metric"]): r["value"]
        for r in metrics.filter(
            (pl.col("level") == "recording") & (pl.col("role") == "candidate")
        ).iter_rows(named=True)
    }
    metadata: dict[str, Any] = {
        HEADLINE: headline(version, metrics),
        "model_version": version,
        **model_links(
            mlflow_tracking.resolved_uri(),
            str(candidate.lineage["mlflow_run_id"]),
            mlflow_tracking.registered_model,
            str(
                json.loads((candidate.directory / "summary.json").read_text()).get(
                    "registered_version", ""
                )
            ),
        ),
        "threshold": round(candidate.threshold, 4),
        "test_recordings": account.scored_recordings,
        "test_participants": account.scored_participants,
        "speaker_independence": candidate.lineage.get("speaker_independence", "guaranteed"),
        "test_auroc_clean": round(value[("clean", "auroc")], 4),
        "test_accuracy_clean": round(value[("clean", "accuracy")], 4),
        "test_sensitivity_clean": round(value[("clean", "sensitivity")], 4),
        "report": report_url(version, html.name),
        "report_file": dg.MetadataValue.path(str(html)),
        "report_markdown": dg.MetadataValue.path(str(md)),
        "metrics": table_metadata(
            key_columns_first(
                pivot_metrics(metrics.filter(pl.col("role") == "candidate")),
                ("condition", "level", *KEY_METRICS),
            )
        ),
        "subgroups": table_metadata(subgroup_summary(subgroups)),
        "profile": candidate.train_config.profile,
        "published_test_per_seed": table_metadata(assessed.per_seed),
        **trust_metadata,
        "recordings_without_window": assessed.excluded,
        "blocked_batches_left_out": dg.MetadataValue.json(account.left_out.recordings),
    }
    if ("noisy", "auroc") in value:
        metadata["test_auroc_noisy"] = round(value[("noisy", "auroc")], 4)
        metadata["test_accuracy_noisy"] = round(value[("noisy", "accuracy")], 4)
    if (PUBLISHED, "accuracy") in value:
        metadata["test_accuracy_published_noisy"] = round(value[(PUBLISHED, "accuracy")], 4)
    for key, png in figures.items():
        metadata[plot_evaluation(key.split("/")[0])] = image(png, key)
    return metadata


def trust_section(
    candidate: Any, assessed: Any, evaluation: EvaluationSettings, reports: Path
) -> tuple[str, dict[str, Any]]:
    """The operating point, calibration (ECE and Brier before and after, with intervals; the
    reliability diagram, written to ``reports``) and seed spread: report text and metadata."""
    from spira_assets.evaluation.trust_report import (
        calibration_effect,
        operating_point,
        seed_spread,
        trust_markdown,
    )
    from spira_assets.plots import reliability_figure

    clean = assessed.frames["clean/recording"]
    effect = calibration_effect(
        assessed.raw_clean,
        clean,
        evaluation.bootstrap_resamples,
        min_defined=evaluation.min_defined_draws,
    )
    reliability = reliability_figure(
        clean.get_column("label").to_numpy(),
        assessed.raw_clean.get_column("score").to_numpy(),
        clean.get_column("score").to_numpy(),
    )
    (reports / "reliability.png").write_bytes(reliability)
    summary = json.loads((candidate.directory / "summary.json").read_text())
    return trust_markdown(candidate.directory, effect), {
        "operating_point": operating_point(candidate.directory)["statement"],
        "seed_spread": seed_spread(summary),
        "calibration": table_metadata(effect),
        PLOT + "reliability (raw and calibrated, clean test)": image(reliability, "reliability"),
    }
