"""The champion's drift reference is an asset that ``batch_drift`` declares.

A batch inside the champion's training data says so instead of comparing itself with data
that contains it; a batch outside is compared with a reference that excludes it; a new
champion makes every batch's drift out of date (the asset says so, Dagster marks it stale and
the ``stale_batches`` automation requests it), while a reference made again unchanged does
not; the retraining sensor says for which batches drift was computed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from upath import UPath

from spira_assets.assets.monitoring import DRIFT_CHECK, DRIFT_HEADLINE
from spira_assets.automation.sensors import drift_of_new_batches
from spira_assets.definitions import defs
from spira_assets.evaluation.champions import current_champion_in_audit
from spira_assets.evaluation.drift import not_comparable
from spira_assets.partitions import COLLECTION_BATCH
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import (
    BATCH_DRIFT,
    DRIFT_REFERENCE,
    PROMOTIONS,
    UNPARTITIONED,
)
from spira_assets_tests.conftest import copy_data_root, environment

TRAINED, NEW = "demo-001", "demo-002"


@dataclass
class Drift:
    root: Path
    lake: Lake
    instance: dg.DagsterInstance
    champion: str

    def run(self, asset: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
        job = "process_batch" if partition else "train_model"
        keys = dg.AssetSelection.assets(asset).required_multi_asset_neighbors()
        result = defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            partition_key=partition,
            asset_selection=sorted(keys.resolve(defs.resolve_asset_graph())),
        )
        assert result.success, asset
        return result

    def headline(self, partition: str) -> str:
        [event] = [
            e
            for e in self.run("batch_drift", partition).get_asset_materialization_events()
            if e.asset_key == dg.AssetKey("batch_drift")
        ]
        metadata = event.materialization.metadata
        assert next(iter(metadata)) == DRIFT_HEADLINE, list(metadata)  # the first line
        return str(metadata[DRIFT_HEADLINE].value)

    def drift_check_status(self, partition: str) -> str | None:
        key = dg.AssetCheckKey(dg.AssetKey("batch_drift"), DRIFT_CHECK)
        records = self.instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
        for record in records:
            run = self.instance.get_run_by_id(record.run_id)
            if run is not None and run.tags.get("dagster/partition") == partition:
                return str(record.status.value)
        return None


def _copy_batch(lake_root: Path, source: str, target: str) -> None:
    """Every lake part of ``source`` again under ``target`` (a second batch of the same
    recordings: what the reference must not contain)."""
    for part in lake_root.rglob(f"{source}.parquet"):
        frame = pl.read_parquet(part).with_columns(pl.lit(target).alias("batch_id"))
        frame.write_parquet(part.with_name(f"{target}.parquet"))


@pytest.fixture
def drift(tmp_path: Path, champion_root: Path) -> Iterator[Drift]:
    root = copy_data_root(champion_root, tmp_path / "data")
    _copy_batch(root / "lake", TRAINED, NEW)
    lake = Lake(UPath(root / "lake"))
    champion = current_champion_in_audit(lake)
    assert champion is not None
    with environment(SPIRA_DATA_DIR=str(root), MLFLOW_TRACKING_URI=None):
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(COLLECTION_BATCH, [TRAINED, NEW])
        yield Drift(root, lake, instance, champion)


def test_a_batch_in_the_champions_training_data_says_so_and_one_outside_is_compared(
    drift: Drift,
) -> None:
    reference = drift.lake.read_part(DRIFT_REFERENCE, UNPARTITIONED)
    assert set(reference["reference_model"]) == {drift.champion}
    assert set(reference["reference_batch"]) == {TRAINED}  # made by train_model (champion_root)

    inside = drift.headline(TRAINED)
    assert "in champion" in inside and "training data" in inside, inside
    assert drift.lake.read_part(BATCH_DRIFT, TRAINED).is_empty()  # never compared with itself
    # planned, no result: the UI shows it skipped (never passed)
    assert drift.drift_check_status(TRAINED) in {"PLANNED", "SKIPPED"}

    outside = drift.headline(NEW)
    assert outside.startswith(f"{NEW}: within thresholds of champion {drift.champion}"), outside
    assert f"{NEW} is not among them" in outside
    rows = drift.lake.read_part(BATCH_DRIFT, NEW)
    assert not rows.is_empty() and set(rows["reference_model"]) == {drift.champion}
    assert drift.drift_check_status(NEW) == "SUCCEEDED"


def _stale(instance: dg.DagsterInstance, partition: str) -> str:
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.now(UTC), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, graph, view)
    return str(resolver.get_status(dg.AssetKey("batch_drift"), partition).value)


def _requested_drift(result: Any) -> set[str | None]:
    return set(result.get_requested_partitions(dg.AssetKey("batch_drift")))


def test_a_new_champion_makes_drift_out_of_date_and_an_unchanged_reference_does_not(
    drift: Drift,
) -> None:
    drift.run("drift_reference")
    drift.headline(TRAINED), drift.headline(NEW)
    assert _stale(drift.instance, NEW) == StaleStatus.FRESH.value
    first = dg.evaluate_automation_conditions(defs=defs, instance=drift.instance)
    # the reference made again with the same content: nothing to recompute
    drift.run("drift_reference")
    assert _stale(drift.instance, NEW) == StaleStatus.FRESH.value
    same = dg.evaluate_automation_conditions(
        defs=defs, instance=drift.instance, cursor=first.cursor
    )
    assert not _requested_drift(same)

    # a new champion (the same training batches, another model) before the reference follows
    newer = "f" * 16
    shutil.copytree(drift.root / "models" / drift.champion, drift.root / "models" / newer)
    promotion = drift.lake.read_table(PROMOTIONS).sort("decided_at")[-1:]
    drift.lake.write_part(
        PROMOTIONS,
        "later",
        promotion.with_columns(
            pl.lit("later").alias("batch_id"),
            pl.lit(newer).alias("candidate_version"),
            pl.lit(datetime.now(UTC)).alias("decided_at").cast(PROMOTIONS.schema["decided_at"]),
        ),
    )
    said = drift.headline(NEW)
    assert "out of date" in said and newer in said, said
    assert drift.lake.read_part(BATCH_DRIFT, NEW).is_empty()  # not judged on the old reference
    waiting = dg.evaluate_automation_conditions(
        defs=defs, instance=drift.instance, cursor=same.cursor
    )
    assert not _requested_drift(waiting)  # the reference has not followed the champion yet

    drift.run("drift_reference")
    assert _stale(drift.instance, NEW) == StaleStatus.STALE.value
    changed = dg.evaluate_automation_conditions(
        defs=defs, instance=drift.instance, cursor=waiting.cursor
    )
    assert {TRAINED, NEW} <= _requested_drift(changed)
    assert drift.headline(NEW).startswith(f"{NEW}: within thresholds of champion {newer}")


def test_not_comparable_names_each_reason() -> None:
    assert "no champion yet" in str(not_comparable("b", None, None, []))
    assert "out of date" in str(not_comparable("b", "m2", "m1", ["a"]))
    assert "training data" in str(not_comparable("a", "m1", "m1", ["a"]))
    assert not_comparable("b", "m1", "m1", ["a"]) is None


def test_the_sensor_says_none_drifted_only_of_batches_whose_drift_was_computed() -> None:
    reference = pl.DataFrame({"reference_model": ["m2"], "reference_batch": ["a"]})
    drift = pl.DataFrame(
        {
            "batch_id": ["b", "c", "c"],
            "reference_model": ["m2", "m1", "m1"],
            "drifted": [False, True, False],
        }
    )
    drifted, said = drift_of_new_batches(["b", "c", "d"], drift, reference)
    assert drifted == ["c"]
    assert "drift computed for b against champion m2: none drifted" in said
    assert "c is against an earlier champion (out of date)" in said
    assert "drift not computed for d (not computed yet" in said
    _, before = drift_of_new_batches(["b"], drift.clear(), reference.clear())
    assert before == "drift not computed for b (no champion yet)"
    assert "none drifted" not in before
