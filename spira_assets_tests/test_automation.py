"""Continuous training: the instance configuration, the drift check on a drifted batch, the
retraining sensor's triggers (new batches, drift, never twice for the same situation) and the
nightly reconcile."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from upath import UPath

from spira_assets.app.instance import INSTANCE_YAML, ensure_dagster_home
from spira_assets.app.runner import materialize_batch
from spira_assets.assets.monitoring import DRIFT_CHECK
from spira_assets.assets.predictions import MonitoringSettings
from spira_assets.automation.schedules import batches_to_reconcile, nightly_reconcile
from spira_assets.automation.sensors import retraining_sensor
from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.resources import RetrainingPolicy, StorageResource
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import BATCH_DRIFT, FEATURE_STATS, MODEL_VERSIONS
from spira_assets_tests.conftest import copy_data_root


def test_instance_yaml_configures_queue_pool_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == INSTANCE_YAML
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        settings = instance.get_concurrency_config()
        assert settings.run_queue_config is not None
        assert settings.run_queue_config.max_concurrent_runs == 4
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # type: ignore[attr-defined]
        assert settings.pool_config.default_pool_limit == 1
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")  # a user's own file
    ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"


def _sensor(instance: dg.DagsterInstance, root: Path, **policy: object) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "storage": StorageResource(data_dir=str(root)),
            "retraining": RetrainingPolicy(**policy),  # type: ignore[arg-type]
            "monitoring": MonitoringSettings(),
        },
    )
    result = retraining_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _fake_batch(lake: Lake, source: str, batch_id: str) -> None:
    """Feature statistics for a batch that looks processed (copied from a real batch)."""
    stats = lake.read_table(FEATURE_STATS).filter(pl.col("batch_id") == source)
    config = stats["config_hash"][0]
    lake.write_part(
        FEATURE_STATS, batch_id, stats.with_columns(pl.lit(batch_id).alias("batch_id")), config
    )


def test_retraining_sensor_triggers_on_new_batches_and_on_drift(
    tmp_path: Path, champion_root: Path
) -> None:
    root = copy_data_root(champion_root, tmp_path / "data")
    lake = Lake(UPath(root / "lake"))
    version = lake.read_table(MODEL_VERSIONS)["model_version"][0]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(COLLECTION_BATCH, ["demo-001"])
    first = _sensor(instance, root, min_new_batches=1)  # no model yet: the first one
    assert first.run_requests and first.run_requests[0].tags["spira/trigger"] == "new_batches"
    # once a model has been trained on it, the batch is no longer new
    instance.report_runless_asset_event(
        dg.AssetMaterialization("spira_model", metadata={"model_version": version})
    )
    assert not _sensor(instance, root).run_requests

    _fake_batch(lake, "demo-001", "demo-002")
    instance.add_dynamic_partitions(COLLECTION_BATCH, ["demo-002"])
    assert not _sensor(instance, root, min_new_batches=2).run_requests  # 1 of 2
    _fake_batch(lake, "demo-001", "demo-003")
    instance.add_dynamic_partitions(COLLECTION_BATCH, ["demo-003"])
    two = _sensor(instance, root, min_new_batches=2, max_retries=3)
    [request] = two.run_requests or []
    assert request.tags["spira/trigger"] == "new_batches"
    assert request.tags["dagster/max_retries"] == "3"
    again = _sensor(instance, root, min_new_batches=2).run_requests or []
    assert again[0].run_key == request.run_key  # the same situation: deduplicated by Dagster

    assert not _sensor(instance, root, min_new_batches=5).run_requests
    drifted = pl.DataFrame(
        {
            "batch_id": ["demo-002"],
            "reference_model": [version],
            "kind": ["metadata"],
            "feature": ["age"],
            "statistic": ["ks_d"],
            "value": [0.9],
            "threshold": [0.3],
            "drifted": [True],
            "detail": [""],
        }
    )
    lake.write_part(BATCH_DRIFT, "demo-002", drifted)
    on_drift = _sensor(instance, root, min_new_batches=5).run_requests or []
    assert on_drift[0].tags["spira/trigger"] == "drift"
    assert "demo-002" in on_drift[0].tags["spira/reason"]
    assert on_drift[0].run_key != request.run_key
    assert not _sensor(instance, root, min_new_batches=5, retrain_on_drift=False).run_requests


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_drifted_batch_fails_its_check_and_a_normal_one_passes(
    tmp_path: Path, champion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_data_root(champion_root, tmp_path / "data")
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = DemoSpec(
        tmp_path / "new", batches=1, participants=12, seed=31, defect_rate=0.0, noise_files=1
    )
    generate_corpus(spec, workers=1)
    shutil.copytree(tmp_path / "new" / "demo-001", root / "landing" / "normal-001")
    generate_corpus(
        DemoSpec(
            tmp_path / "drift",
            1,
            12,
            32,
            defect_rate=0.0,
            noise_files=1,
            age_shift=35,
            devices=("ios-app",),  # one device (WAV: quick to write and read)
        ),
        workers=1,
    )
    shutil.copytree(tmp_path / "drift" / "demo-001", root / "landing" / "drift-001")
    layout = DataLayout.from_location(str(root))
    instance = dg.DagsterInstance.ephemeral()
    checks, warned = {}, {}
    key = dg.AssetCheckKey(dg.AssetKey("batch_drift"), DRIFT_CHECK)
    for batch_id in ("normal-001", "drift-001"):
        outcome = materialize_batch(instance, layout, batch_id)
        assert outcome.ok, outcome  # drift is a warning, not a failed batch
        warned[batch_id] = outcome.warned_checks
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        checks[batch_id] = str(record.status)
    drift = Lake(UPath(root / "lake")).read_table(BATCH_DRIFT)
    flagged = drift.filter(pl.col("drifted"))
    assert set(flagged["batch_id"]) == {"drift-001"}, flagged
    assert {"age", "device"} <= set(flagged["feature"]), flagged
    assert checks["normal-001"].endswith("SUCCEEDED") and not warned["normal-001"]
    assert checks["drift-001"].endswith("FAILED")
    assert warned["drift-001"] == (f"batch_drift:{DRIFT_CHECK}",)
    # the drift reaches the retraining sensor even below the batch-count threshold
    request = _sensor(instance, root, min_new_batches=10).run_requests or []
    assert request and request[0].tags["spira/trigger"] == "drift"
    assert "drift-001" in request[0].tags["spira/reason"]


def test_nightly_reconcile_requests_missing_and_stale_batches(
    tmp_path: Path, materialized_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_data_root(materialized_root, tmp_path / "data")
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance = dg.DagsterInstance.from_config(str(home))  # schedules need a persistent one
    storage = StorageResource(data_dir=str(root))
    batches = sorted(p.name for p in (root / "landing").iterdir() if (p / "_READY").exists())
    instance.add_dynamic_partitions(COLLECTION_BATCH, batches)
    assert set(batches_to_reconcile(instance, storage)) == set(batches)  # nothing materialized
    # A context used as a context manager: its ``instance`` enters a DagsterInstance, which sets
    # Dagster's process-wide current defs-state storage until the context exits.
    with dg.build_schedule_context(
        instance=instance,
        resources={"storage": storage},
        scheduled_execution_time=datetime(2026, 11, 23, 2, tzinfo=UTC),
    ) as context:
        requests = nightly_reconcile(context)
    assert isinstance(requests, list)
    assert sorted(r.partition_key for r in requests) == batches
    layout = DataLayout.from_location(str(root))
    for batch_id in batches:
        assert materialize_batch(instance, layout, batch_id).ok
    assert batches_to_reconcile(instance, storage) == {}
    ready = root / "landing" / batches[0] / "_READY"
    later = ready.stat().st_mtime + 3600
    os.utime(ready, (later, later))  # the batch was delivered again
    assert batches_to_reconcile(instance, storage) == {
        batches[0]: "raw_audio older than the landing folder"
    }


def test_a_schedule_context_left_open_is_reported(tmp_path: Path) -> None:
    """The planted fault behind a CI failure: ``context.instance`` entered and never exited."""
    from spira_assets_tests.hygiene import current_defs_state_storage, leaked_defs_state_storage

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    before = current_defs_state_storage()
    context = dg.build_schedule_context(instance=dg.DagsterInstance.from_config(str(home)))
    assert context.instance is not None  # enters a second instance from the ref
    assert leaked_defs_state_storage(before) is not None
    assert leaked_defs_state_storage(before) is None  # reset: later tests are unaffected
    with dg.build_schedule_context(instance=dg.DagsterInstance.from_config(str(home))) as closed:
        assert closed.instance is not None
    assert leaked_defs_state_storage(before) is None
