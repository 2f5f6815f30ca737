"""``spira demo`` on a fresh machine, run once per test session and shared by the tests that
need one (the CLI's accounting, two machines giving the same metrics): each demo is most of a
minute on 2 cores. Tests that use it are put on one pytest-xdist worker (``DEMO_GROUP``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from click.testing import CliRunner
from upath import UPath

from spira_assets.cli import main
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import DATASET_SPLIT, EVALUATION_METRICS

DEMO_GROUP = "fresh-demo"
# one batch of 16 people with a tenth of the files defective, two seeds (the best one kept),
# two epochs each: the whole graph, not a long fit
DEMO_ARGS = ("--batches", "1", "--participants", "16", "--defect-rate", "0.1",
             "--seeds", "42,43", "--epochs", "2")  # fmt: skip


@dataclass(frozen=True)
class FreshDemo:
    exit_code: int
    output: str
    data: Path
    split: pl.DataFrame  # audio_sha256, participant, split (sorted), read right after the demo
    metrics: pl.DataFrame  # evaluation_metrics (sorted), read right after the demo


def run_fresh_demo(machine: Path) -> FreshDemo:
    """``spira demo`` as on a machine of its own (``machine``: its config home, Dagster home
    and data root). The caller sets the environment (no pseudonym key: the demo's own)."""
    data = machine / "data"
    result = CliRunner().invoke(
        main, ["demo", "--data-dir", str(data), *DEMO_ARGS], catch_exceptions=False
    )
    lake = Lake(UPath(data / "lake"))
    split = lake.read_table(DATASET_SPLIT).select("audio_sha256", "participant", "split")
    metrics = lake.read_table(EVALUATION_METRICS).select(
        "model_version", "condition", "level", "metric", "value", "ci_low", "ci_high"
    )
    return FreshDemo(
        result.exit_code,
        result.output,
        data,
        split.sort("audio_sha256"),
        metrics.sort(pl.all()),
    )
