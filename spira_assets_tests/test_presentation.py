"""What the UI shows: metric tables pivoted for comparison, headline numbers before detail."""

from __future__ import annotations

import dagster as dg
import polars as pl

from spira_assets.assets.presentation import PLOT_TRAINING, headline_first, table_metadata
from spira_assets.evaluation.report import pivot_metrics


def test_metrics_are_pivoted_one_row_per_condition_and_level() -> None:
    long = pl.DataFrame(
        {
            "condition": ["clean", "clean", "noisy", "noisy", "clean"],
            "level": ["recording", "recording", "recording", "recording", "participant"],
            "metric": ["auroc", "accuracy", "auroc", "accuracy", "auroc"],
            "value": [0.91234, 0.8, 0.7, 0.65, 0.95],
            "ci_low": [0.85, 0.7, 0.6, 0.5, 0.9],
            "ci_high": [0.97, 0.9, 0.8, 0.75, 1.0],
        }
    )
    wide = pivot_metrics(long)
    assert wide.columns == ["condition", "level", "auroc", "accuracy"]  # metrics in given order
    assert wide.height == 3
    clean = wide.filter((pl.col("condition") == "clean") & (pl.col("level") == "recording"))
    assert clean.row(0) == ("clean", "recording", "0.912 [0.85, 0.97]", "0.8 [0.7, 0.9]")
    participant = wide.filter(pl.col("level") == "participant")
    assert participant["accuracy"].to_list() == [None]  # not computed, not invented
    assert pivot_metrics(long.clear()).columns == ["condition", "level"]


def test_headline_numbers_come_before_links_tables_plots_and_paths() -> None:
    table = table_metadata(pl.DataFrame({"a": [1]}))
    shown = headline_first(
        {
            "report_file": dg.MetadataValue.path("/x/report.html"),
            PLOT_TRAINING: dg.MetadataValue.md("![x](data:image/png;base64,AA==)"),
            "metrics": table,
            "report": dg.MetadataValue.url("http://127.0.0.1:8001/v/report.html"),
            "test_auroc_clean": 0.9,
            "model_version": "abc",
        }
    )
    assert list(shown) == [
        "test_auroc_clean", "model_version", "report", "metrics", PLOT_TRAINING, "report_file",
    ]  # fmt: skip
