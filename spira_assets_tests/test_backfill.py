"""A backfill of many batches as one run: the per-batch assets that allow it (``audio_16k``,
``spectrogram_features``, ``batch_drift``: no blocking check that should stop one batch only)
carry ``BackfillPolicy.single_run()`` and materialize a whole range of partitions in one run,
with the exact CLI a user types."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from spira_assets.assets.ranges import combine
from spira_assets.layout import DataLayout
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import AUDIO_16K, FEATURE_STATS, SPECTROGRAM_FEATURES
from spira_assets_tests.conftest import copy_data_root

pytestmark = pytest.mark.slow
# spectrogram_features and feature_stats are one step: a selection names both
RANGE_ASSETS = ("audio_16k", "spectrogram_features", "feature_stats", "batch_drift")


def test_a_range_of_batches_materializes_in_one_run(
    materialized_root: Path, tmp_path: Path
) -> None:
    root = copy_data_root(materialized_root, tmp_path / "data")
    lake = Lake(DataLayout.from_location(root).lake)
    before = {spec.name: lake.read_table(spec).height for spec in (AUDIO_16K, SPECTROGRAM_FEATURES)}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(COLLECTION_BATCH, ["demo-001", "demo-002"])
    # the range's steps in the run's own process: what is tested is one run over both
    # partitions, not the executor (a forkserver and four step processes cost 20 s here)
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPIRA_DATA_DIR": str(root),
           "SPIRA_DEPLOYMENT": "single-process"}  # fmt: skip
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
               "-m", "spira_assets.definitions", "--select", ",".join(RANGE_ASSETS),
               "--partition-range", "demo-001...demo-002"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_start"] == "demo-001"
        assert run.tags["dagster/asset_partition_range_end"] == "demo-002"
        for asset in RANGE_ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {
                "demo-001",
                "demo-002",
            }, asset
    after = {spec.name: lake.read_table(spec).height for spec in (AUDIO_16K, SPECTROGRAM_FEATURES)}
    assert after == before  # rewritten batch by batch: nothing lost, nothing doubled
    assert sorted(set(lake.read_table(FEATURE_STATS).get_column("batch_id"))) == [
        "demo-001",
        "demo-002",
    ]


def test_combined_result_sums_counts_and_names_failed_batches() -> None:
    def result(rows: int, passed: bool) -> dg.MaterializeResult:
        figure = dg.MetadataValue.md("![plot](data:...)")
        check = dg.AssetCheckResult(
            check_name="c", passed=passed, severity=dg.AssetCheckSeverity.WARN
        )
        return dg.MaterializeResult(
            metadata={"dagster/row_count": rows, "shard": f"x@{rows}", "figure": figure},
            check_results=[check],
            data_version=dg.DataVersion(f"content-{rows}"),
        )

    combined = combine({"b1": result(3, True), "b2": result(4, False), "b3": result(5, False)})
    assert combined.metadata is not None and combined.metadata["dagster/row_count"] == 12
    assert combined.metadata["batches"] == 3
    assert "x@4" in str(combined.metadata["per_batch"].value)  # type: ignore[union-attr]
    # each batch's data version is kept in its row, and the run's version digests them all
    assert "content-4" in str(combined.metadata["per_batch"].value)  # type: ignore[union-attr]
    assert combined.data_version is not None
    other = combine({"b1": result(3, True), "b2": result(4, False), "b3": result(6, False)})
    assert other.data_version != combined.data_version
    (check,) = combined.check_results or []
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["failed_batches"].value == ["b2", "b3"]  # type: ignore[union-attr]
