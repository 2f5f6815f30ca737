"""Every read is a declared dependency: each step of the graph is materialized alone, with
what it reads recorded by asset (``reads.py``), and what it read of another asset must be
among the step's declared dependencies. A planted asset that reads ``audio_16k`` without
declaring it is caught."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from spira_assets.definitions import defs
from spira_assets.resources import StorageResource
from spira_assets.storage.tables import AUDIO_16K
from spira_assets_tests.conftest import (
    LENIENT_GATE,
    SMALL_TRAINING,
    TEST_KEY,
    copy_data_root,
    environment,
)
from spira_assets_tests.reads import asset_of, recording

BATCH = "demo-001"
# one step at a time, in an order where each finds its inputs (batch_drift after a champion
# exists, so it reads the champion's training batches)
STEPS = (
    ("prepare_noise", "hospital_noise", None),
    ("process_batch", "raw_audio", BATCH),
    ("process_batch", "validated_metadata", BATCH),
    ("process_batch", "quarantine", BATCH),
    ("process_batch", "batch_checks", BATCH),
    ("process_batch", "audio_16k", BATCH),
    ("process_batch", "spectrogram_features", BATCH),
    ("train_model", "dataset_split", None),
    ("train_model", "spira_model", None),
    ("train_model", "evaluation_report", None),
    ("train_model", "champion", None),
    ("process_batch", "batch_drift", BATCH),
)


def step_keys(graph: dg.AssetGraph, asset: str) -> set[dg.AssetKey]:
    """Every output of the step that materializes ``asset``."""
    return set(dg.AssetSelection.assets(asset).required_multi_asset_neighbors().resolve(graph))


def undeclared(graph: dg.AssetGraph, keys: set[dg.AssetKey], read: set[str]) -> set[str]:
    declared = {p.to_user_string() for k in keys for p in graph.get(k).parent_keys}
    own = {k.to_user_string() for k in keys}
    return read - declared - own


def reads_of(root: Path, paths: set[Path]) -> set[str]:
    assets = {asset_of(root, p) for p in paths}
    unknown = sorted(a for a in assets if a and a.startswith("?"))
    assert not unknown, f"reads of data no asset stands for: {unknown}"
    return {a for a in assets if a}


def test_every_step_reads_only_what_it_declares(tmp_path: Path, evaluation_root: Path) -> None:
    root = copy_data_root(evaluation_root, tmp_path / "data")
    graph = defs.resolve_asset_graph()
    config = {
        "resources": {
            "training": {"config": {**SMALL_TRAINING, "max_epochs": 1}},
            "evaluation": {"config": LENIENT_GATE},
        }
    }
    os.environ.setdefault("SPIRA_PSEUDONYM_KEY", TEST_KEY)
    found: dict[str, set[str]] = {}
    with environment(SPIRA_DATA_DIR=str(root), MLFLOW_TRACKING_URI=None):
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("collection_batch", [BATCH])
        for job_name, asset, partition in STEPS:
            keys = step_keys(graph, asset)
            job = defs.resolve_job_def(job_name)
            with recording() as paths:
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=partition,
                    asset_selection=sorted(keys, key=lambda k: k.to_user_string()),
                    run_config=config if job_name == "train_model" else {},
                )
            assert result.success, f"{asset} failed to materialize"
            read = reads_of(root, paths)
            found[asset] = read
            assert not undeclared(graph, keys, read), (asset, undeclared(graph, keys, read))
    # the recorder sees what the steps are known to read, so an empty set proves nothing
    assert "landing_batch" in found["raw_audio"]
    assert {"audio_16k", "spectrogram_features", "hospital_noise"} <= found["spira_model"]
    assert {"promotions", "spira_model", "feature_stats"} <= found["batch_drift"]


@dg.asset
def sneaky_counts(storage: StorageResource) -> dg.MaterializeResult:
    """Reads audio_16k without declaring it: what the test exists to catch."""
    return dg.MaterializeResult(metadata={"rows": storage.lake().read_table(AUDIO_16K).height})


def test_an_undeclared_read_is_caught(tmp_path: Path, evaluation_root: Path) -> None:
    root = copy_data_root(evaluation_root, tmp_path / "data")
    planted = dg.Definitions(
        assets=[sneaky_counts, *(defs.assets or [])],
        resources={**(defs.resources or {}), "storage": StorageResource(data_dir=str(root))},
    )
    graph = planted.resolve_asset_graph()
    with recording() as paths:
        assert dg.materialize(
            [sneaky_counts], resources={"storage": StorageResource(data_dir=str(root))}
        ).success
    keys = {dg.AssetKey("sneaky_counts")}
    assert undeclared(graph, keys, reads_of(root, paths)) == {"audio_16k"}
