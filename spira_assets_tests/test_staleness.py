"""Dagster's own versioning: a change of a quality rule's code version marks every ingested
batch stale (as the UI computes it, from the instance), the ``stale_batches`` automation
requests exactly those batches, and materializing them clears it. A first evaluation
requests nothing (no unrequested run on first start)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

# the resolver the UI's GraphQL layer uses for "stale" badges, built as Dagster's own test
# utility builds it; Dagster exports no public API for a stale status, and the test must see
# what the UI shows
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus

from spira_assets.app.runner import materialize_batch, materialize_shared
from spira_assets.automation.jobs import BATCH_ASSETS
from spira_assets.definitions import defs
from spira_assets_tests.conftest import TEST_KEY, data_root_with, environment

BATCHES = ("demo-001", "demo-002")
INGEST = {dg.AssetKey("raw_audio"), dg.AssetKey("raw_audio_16k")}


def bumped_rules() -> dg.Definitions:
    """The code location after a change of the quality rules' code version."""

    def bump(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in INGEST:
            return spec
        return spec.replace_attributes(code_version=f"{spec.code_version}-rules-changed")

    assets = [
        a.map_asset_specs(bump) if isinstance(a, dg.AssetsDefinition) else a
        for a in defs.assets or []
    ]
    return dg.Definitions(
        assets=assets, jobs=defs.jobs, sensors=defs.sensors, resources=defs.resources
    )


def statuses(definitions: dg.Definitions, instance: dg.DagsterInstance, asset: str) -> set[str]:
    graph = definitions.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.now(UTC), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, graph, view)
    return {resolver.get_status(dg.AssetKey(asset), b).value for b in BATCHES}


@pytest.fixture
def ingested(tmp_path: Path, clean_corpus: Path) -> Iterator[dg.DagsterInstance]:
    layout = data_root_with(tmp_path, clean_corpus)
    os.environ.setdefault("SPIRA_PSEUDONYM_KEY", TEST_KEY)
    with environment(SPIRA_DATA_DIR=str(layout.root)):
        instance = dg.DagsterInstance.ephemeral()
        assert materialize_shared(instance).ok
        for batch in BATCHES:
            assert materialize_batch(instance, layout, batch).ok
        yield instance


def test_a_quality_rule_change_makes_every_ingested_batch_stale_until_rematerialized(
    ingested: dg.DagsterInstance,
) -> None:
    instance = ingested
    assert statuses(defs, instance, "raw_audio") == {StaleStatus.FRESH.value}
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0, "a first evaluation must not start runs"

    changed = bumped_rules()
    assert statuses(changed, instance, "raw_audio") == {StaleStatus.STALE.value}
    # downstream is not stale yet: raw_audio's data versions are content digests, so what
    # follows goes stale only if re-ingesting under the new rules changes what was accepted
    assert statuses(changed, instance, "spectrogram_features") == {StaleStatus.FRESH.value}
    tick = dg.evaluate_automation_conditions(defs=changed, instance=instance, cursor=first.cursor)
    assert tick.get_requested_partitions(dg.AssetKey("raw_audio")) == set(BATCHES)
    # what follows is requested with it (Dagster runs it after raw_audio in the same run)
    for asset in ("validated_metadata", "audio_16k", "spectrogram_features", "quarantine"):
        assert tick.get_requested_partitions(dg.AssetKey(asset)) == set(BATCHES), asset
    assert tick.get_requested_partitions(dg.AssetKey("hospital_noise")) == set()

    job = changed.resolve_job_def("process_batch")
    for batch in BATCHES:
        result = job.execute_in_process(
            partition_key=batch,
            instance=instance,
            asset_selection=[dg.AssetKey(a) for a in BATCH_ASSETS],
        )
        assert result.success
    for asset in ("raw_audio", "validated_metadata", "audio_16k", "spectrogram_features"):
        assert statuses(changed, instance, asset) == {StaleStatus.FRESH.value}, asset
    after = dg.evaluate_automation_conditions(defs=changed, instance=instance, cursor=tick.cursor)
    assert after.total_requested == 0


def test_an_unchanged_code_location_leaves_batches_fresh(ingested: dg.DagsterInstance) -> None:
    """The planted-fault pair of the test above: without the change nothing is stale, so the
    stale status really comes from the code version."""
    assert statuses(defs, ingested, "raw_audio") == {StaleStatus.FRESH.value}
    assert statuses(defs, ingested, "batch_drift") == {StaleStatus.FRESH.value}
