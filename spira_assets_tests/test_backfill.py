"""A backfill of many batches as one run: the per-batch assets that allow it (``audio_16k``,
``spectrogram_features``, ``batch_drift``: no blocking check that should stop one batch only)
carry ``BackfillPolicy.single_run()`` and materialize a whole range of partitions in one run,
with the exact CLI a user types."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus

from spira_assets.assets.ranges import combine
from spira_assets.definitions import defs
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import AUDIO_16K, FEATURE_STATS, SPECTROGRAM_FEATURES
from spira_assets_tests.conftest import copy_data_root
from spira_assets_tests.test_gate_journeys import block

pytestmark = pytest.mark.slow
# spectrogram_features and feature_stats are one step: a selection names both
RANGE_ASSETS = ("audio_16k", "spectrogram_features", "feature_stats", "batch_drift")


def stale_status(instance: dg.DagsterInstance, asset: str, batch: str) -> StaleStatus:
    """The status the UI shows (see test_staleness.py for why through this resolver)."""
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.now(UTC), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance, graph, view).get_status(dg.AssetKey(asset), batch)


def dagster_home(tmp_path: Path) -> Path:
    """A fresh Dagster home that knows both batches."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(COLLECTION_BATCH, ["demo-001", "demo-002"])
    return home


def materialize_range(
    root: Path, home: Path, select: tuple[str, ...] = RANGE_ASSETS
) -> subprocess.CompletedProcess[str]:
    """``dagster asset materialize --partition-range demo-001...demo-002``, as a user types it."""
    # the range's steps in the run's own process: what is tested is one run over both
    # partitions, not the executor (a forkserver and four step processes cost 20 s here)
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPIRA_DATA_DIR": str(root),
           "SPIRA_DEPLOYMENT": "single-process"}  # fmt: skip
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
               "-m", "spira_assets.definitions", "--select", ",".join(select),
               "--partition-range", "demo-001...demo-002"]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)


def test_a_range_of_batches_materializes_in_one_run(
    materialized_root: Path, tmp_path: Path
) -> None:
    root = copy_data_root(materialized_root, tmp_path / "data")
    lake = Lake(DataLayout.from_location(root).lake)
    before = {spec.name: lake.read_table(spec).height for spec in (AUDIO_16K, SPECTROGRAM_FEATURES)}
    home = dagster_home(tmp_path)
    done = materialize_range(root, home)
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


def test_a_blocked_batch_fails_only_itself_in_a_range(
    materialized_root: Path, tmp_path: Path
) -> None:
    """Each range asset materializes the open batch of the range and fails naming the blocked
    one. A failed step stops the steps downstream of it in the same run (Dagster's rule), so
    each asset is run here as the first of its run."""
    root = copy_data_root(materialized_root, tmp_path / "data")
    block(Lake(DataLayout.from_location(root).lake), "demo-002")  # the fault
    home = dagster_home(tmp_path)
    steps = {
        "audio_16k": ("audio_16k",),
        "spectrogram_features": ("spectrogram_features", "feature_stats"),  # one step, two outputs
        "batch_drift": ("batch_drift",),
    }
    for step, select in steps.items():
        done = materialize_range(root, home, select)
        assert done.returncode != 0  # the run reports the blocked batch as failed
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = instance.get_runs(limit=1)[0]
            assert run.status == dg.DagsterRunStatus.FAILURE
            for asset in select:  # the open batch of the range is materialized, and fresh
                assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {"demo-001"}
                assert stale_status(instance, asset, "demo-001") == StaleStatus.FRESH
            (failure,) = [
                event
                for event in (e.dagster_event for e in instance.all_logs(run.run_id))
                if event is not None and event.event_type_value == "STEP_FAILURE"
            ]
            assert failure.step_key == step
            message = str(failure.step_failure_data.error)
        assert "batch demo-002 is blocked by validated_metadata:both_classes_present" in message
        assert "the range's other batches were materialized: ['demo-001']" in message


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
