"""Every read is a declared dependency, per batch: each step of the graph is materialized
alone, with what it reads recorded by asset and partition (``reads.py``). What a step reads of
another asset must be among its declared dependencies, and what a per-batch step reads of
another per-batch asset must be in the partitions its partition mapping gives it (its own
batch). The steps cover every materializable asset of the graph (compared with it, so a new
asset cannot be left out). A planted asset that reads ``audio_16k`` without declaring it, and
one that declares it but reads another batch's part, are caught."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from upath import UPath

from spira_assets.definitions import defs
from spira_assets.ml.split import SplitConfig
from spira_assets.ml.sweep import SweepPlan, SweepStore
from spira_assets.ml.tracking import default_tracking_uri, ensure_experiment
from spira_assets.monitoring.prediction_log import (
    LOG_FOLDER,
    PredictionLog,
    PredictionRecord,
    new_prediction_id,
)
from spira_assets.partitions import SWEEP_TRIAL, collection_batch
from spira_assets.resources import StorageResource, TrainingSettings
from spira_assets.storage.tables import AUDIO_16K
from spira_assets_tests.conftest import (
    LENIENT_GATE,
    SMALL_TRAINING,
    TEST_KEY,
    copy_data_root,
    environment,
)
from spira_assets_tests.reads import asset_of, partition_of, recording

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
    ("train_model", "drift_reference", None),
    ("process_batch", "batch_drift", BATCH),
    ("sweep_trials", "sweep_trial", "<trial>"),
    ("daily_predictions", "predictions", "<day>"),
    ("record_outcomes", "outcomes", None),
    ("weekly_live_performance", "live_performance", "<week>"),
    ("daily_predictions", "prediction_drift", "<day>"),
)
TODAY = datetime.now(UTC).date()
DAY, WEEK = TODAY.isoformat(), (TODAY - timedelta(days=TODAY.weekday())).isoformat()


def plant_prediction_and_outcome(root: Path) -> None:
    """One logged prediction and its outcome file, so the monitoring steps read both."""
    now = datetime.now(UTC)
    record = PredictionRecord(new_prediction_id(now), now, "cli", "v", "a" * 64, None, 0.7, 0.7,
                              1, 0.5, 3, None, 4.0, -20.0, -3.0, [0.0] * 40)  # fmt: skip
    PredictionLog(UPath(root) / LOG_FOLDER).append(record)
    outcomes = root / "landing" / "outcomes"
    outcomes.mkdir(parents=True)
    (outcomes / "ward.csv").write_text(
        f"prediction_id,spo2,measured_at\n{record.prediction_id},88,{now.isoformat()}\n"
    )


def step_keys(graph: dg.AssetGraph, asset: str) -> set[dg.AssetKey]:
    """Every output of the step that materializes ``asset``."""
    return set(dg.AssetSelection.assets(asset).required_multi_asset_neighbors().resolve(graph))


Read = tuple[str, str | None]  # (asset, batch the data belongs to, if one)


def undeclared(
    graph: dg.AssetGraph, keys: set[dg.AssetKey], read: set[Read], partition: str | None = None
) -> set[str]:
    """What the step read and does not declare: an asset it has no edge from, or, for a
    per-batch step, another batch of a per-batch asset its mapping gives only its own batch."""
    own = {k.to_user_string() for k in keys}
    edges = {(p.to_user_string(), k) for k in keys for p in graph.get(k).parent_keys}
    declared = {name for name, _ in edges}
    found = {asset for asset, _ in read if asset not in declared | own}
    for asset, batch in read:
        if asset in own or batch is None or partition is None:
            continue
        for name, child in edges:
            parent = dg.AssetKey.from_user_string(name)
            if name != asset or graph.get(parent).partitions_def != collection_batch:
                continue
            mapping = graph.get_partition_mapping(child, parent)
            if isinstance(mapping, dg.IdentityPartitionMapping) and batch != partition:
                found.add(f"{asset}[{batch}]")
    return found


def reads_of(root: Path, paths: set[Path]) -> set[Read]:
    assets = {(asset_of(root, p), partition_of(root, p)) for p in paths}
    unknown = sorted(a for a, _ in assets if a and a.startswith("?"))
    assert not unknown, f"reads of data no asset stands for: {unknown}"
    return {(a, b) for a, b in assets if a}


def plan_one_trial(root: Path) -> str:
    """A one-trial sweep plan, as ``spira sweep`` writes it before submitting the trial."""
    from mlflow.tracking import MlflowClient

    uri = default_tracking_uri(root)
    experiment = ensure_experiment(uri, "spira-sweeps", root / "mlartifacts")
    parent = MlflowClient(uri).create_run(experiment).info.run_id
    settings = TrainingSettings(**SMALL_TRAINING)  # type: ignore[arg-type]
    sweep = SweepPlan(
        "sweep-reads",
        replace(settings.train_config(), max_epochs=1),
        {"learning_rate": [1e-3]},
        [42],
        experiment,
        parent,
        SplitConfig(**SMALL_TRAINING["split"]),  # type: ignore[arg-type]
    )
    SweepStore(UPath(root)).save_plan(sweep)
    return sweep.trial_keys()[0]


def test_the_steps_cover_every_materializable_asset() -> None:
    graph = defs.resolve_asset_graph()
    covered = {k for _, asset, _ in STEPS for k in step_keys(graph, asset)}
    assert covered == set(graph.materializable_asset_keys)


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
        trial = plan_one_trial(root)
        plant_prediction_and_outcome(root)
        instance.add_dynamic_partitions(SWEEP_TRIAL, [trial])
        for job_name, asset, partition in STEPS:
            partition = {"<trial>": trial, "<day>": DAY, "<week>": WEEK}.get(
                partition or "", partition
            )
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
            found[asset] = {name for name, _ in read}
            batch = partition if partition == BATCH else None
            assert not undeclared(graph, keys, read, batch), (asset, undeclared(graph, keys, read))
            if batch is not None:  # a per-batch step's reads are known by their batch
                assert any(b == BATCH for _, b in read), (asset, read)
    # the recorder sees what the steps are known to read, so an empty set proves nothing
    assert "landing_batch" in found["raw_audio"]
    assert {"audio_16k", "spectrogram_features", "hospital_noise"} <= found["spira_model"]
    assert {"audio_16k", "spectrogram_features", "dataset_split"} <= found["sweep_trial"]
    assert {"promotions", "spira_model", "audio_16k"} <= found["drift_reference"]
    # demo-001 is in the champion's training data: batch_drift reads which, and says so
    assert {"promotions", "drift_reference"} <= found["batch_drift"]
    assert "prediction_log" in found["predictions"]
    assert {"landing_outcomes", "prediction_log"} <= found["outcomes"]
    assert {"predictions", "outcomes"} <= found["live_performance"]
    assert {"predictions", "drift_reference", "promotions"} <= found["prediction_drift"]


@dg.asset
def sneaky_counts(storage: StorageResource) -> dg.MaterializeResult:
    """Reads audio_16k without declaring it: what the test exists to catch."""
    return dg.MaterializeResult(metadata={"rows": storage.lake().read_table(AUDIO_16K).height})


def _planted(root: Path, asset: dg.AssetsDefinition) -> dg.AssetGraph:
    planted = dg.Definitions(
        assets=[asset, *(defs.assets or [])],
        resources={**(defs.resources or {}), "storage": StorageResource(data_dir=str(root))},
    )
    return planted.resolve_asset_graph()


def test_an_undeclared_read_is_caught(tmp_path: Path, evaluation_root: Path) -> None:
    root = copy_data_root(evaluation_root, tmp_path / "data")
    graph = _planted(root, sneaky_counts)
    with recording() as paths:
        assert dg.materialize(
            [sneaky_counts], resources={"storage": StorageResource(data_dir=str(root))}
        ).success
    keys = {dg.AssetKey("sneaky_counts")}
    assert undeclared(graph, keys, reads_of(root, paths)) == {"audio_16k"}


@dg.asset(partitions_def=collection_batch, deps=["audio_16k"])
def next_door_counts(context, storage: StorageResource) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
    """Declares audio_16k, then reads another batch's part too: what the per-batch record
    exists to catch (the declared edge maps each batch to its own batch only)."""
    lake = storage.lake()
    rows = sum(lake.read_part(AUDIO_16K, b).height for b in (context.partition_key, "demo-002"))
    return dg.MaterializeResult(metadata={"rows": rows})


def test_a_read_of_another_batch_is_caught(tmp_path: Path, evaluation_root: Path) -> None:
    root = copy_data_root(evaluation_root, tmp_path / "data")
    part = root / "lake" / "audio_16k" / f"{BATCH}.parquet"
    shutil.copy(part, part.with_name("demo-002.parquet"))  # a second batch's part
    graph = _planted(root, next_door_counts)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("collection_batch", [BATCH, "demo-002"])
    with recording() as paths:
        assert dg.materialize(
            [next_door_counts],
            instance=instance,
            partition_key=BATCH,
            resources={"storage": StorageResource(data_dir=str(root))},
        ).success
    keys = {dg.AssetKey("next_door_counts")}
    read = reads_of(root, paths)
    assert ("audio_16k", "demo-002") in read and ("audio_16k", BATCH) in read
    assert undeclared(graph, keys, read, BATCH) == {"audio_16k[demo-002]"}
    assert undeclared(graph, keys, read - {("audio_16k", "demo-002")}, BATCH) == set()
