"""The code location loads, validates with Dagster's CLI, and its graph is what we reviewed:
assets, edges with their partition mappings, automation conditions, pools, checks, jobs.

Set UPDATE_SNAPSHOTS=1 to rewrite the snapshot after an intended change of the graph.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from spira_assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
ROOT = Path(__file__).resolve().parents[1]


def graph_snapshot() -> dict[str, object]:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            # which partitions of each parent a partition reads (where either side has them)
            "partition_mappings": {
                parent.to_user_string(): type(graph.get_partition_mapping(key, parent)).__name__
                for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string())
                if partitions or graph.get(parent).partitions_def
            },
            "automation": (condition.get_label() or condition.name) if condition else None,
            "pools": sorted(node.pools or ()),
            "group": node.group_name,
            "partitions": getattr(partitions, "name", None) if partitions else None,
            "kinds": sorted(node.kinds),
            "code_version": node.code_version,
            "checks": sorted(
                f"{c.name}{' (blocking)' if graph.get(c).blocking else ''}" for c in node.check_keys
            ),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_asset_graph_matches_the_reviewed_snapshot() -> None:
    current = graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_every_asset_is_partitioned_by_collection_batch_or_depends_on_all() -> None:
    for key, node in graph_snapshot()["assets"].items():  # type: ignore[attr-defined]
        # sweep trials are the one other partitioning: one partition per trial
        assert node["partitions"] in ("collection_batch", None, "sweep_trial"), key
        assert key == "sweep_trial" or node["partitions"] != "sweep_trial", key


def test_dagster_cli_validates_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_definitions_object_is_a_single_dagster_definitions() -> None:
    assert isinstance(defs, dg.Definitions)


MISSION_CHAIN = (
    "landing_batch",
    "raw_audio",
    "validated_metadata",
    "audio_16k",
    "spectrogram_features",
    "spira_model",
    "evaluation_report",
    "champion",
)


def test_the_mission_chain_is_a_path_of_the_graph() -> None:
    graph = defs.resolve_asset_graph()
    for parent, child in itertools.pairwise(MISSION_CHAIN):
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(child)).parent_keys}
        assert parent in parents, f"{child} does not declare {parent}"


def test_every_warehouse_table_is_an_asset_with_its_columns() -> None:
    from spira_assets.storage.tables import ALL_TABLES

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    missing = sorted(spec.name for spec in ALL_TABLES if spec.name not in keys)
    assert not missing, f"tables with no asset: {missing}"
    for spec in ALL_TABLES:
        schema = graph.get(dg.AssetKey(spec.name)).metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == list(spec.schema), spec.name


def test_every_materializable_asset_has_a_code_version() -> None:
    graph = defs.resolve_asset_graph()
    unversioned = sorted(
        k.to_user_string() for k in graph.materializable_asset_keys if not graph.get(k).code_version
    )
    assert not unversioned, f"assets without a code_version: {unversioned}"


# Loaded by the steps that compute, never by loading the code location: the webserver, the
# daemon's sensors, every `dagster` and `spira` command and each run's process start without
# them (2.7 s and 250 MB instead of 8 s and 1 GB on 2 cores, docs/PERFORMANCE.md).
HEAVY_LIBRARIES = ("torch", "torchaudio", "mlflow", "sklearn", "scipy")


def heavy_libraries_loaded_by(*modules: str) -> list[str]:
    """The heavy libraries a fresh interpreter holds after importing ``modules``."""
    script = (
        "import importlib, json, sys; [importlib.import_module(m) for m in sys.argv[1:]]; "
        f"print(json.dumps([m for m in {list(HEAVY_LIBRARIES)!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_code_location_loads_without_torch_mlflow_or_scikit_learn() -> None:
    assert heavy_libraries_loaded_by("spira_assets.definitions") == []
    # so does the `dagster dev` test's location (its code server and each run worker load it)
    assert heavy_libraries_loaded_by("spira_assets_tests.e2e_definitions") == []
    # the check sees an import when there is one: modules that compute do load them
    assert heavy_libraries_loaded_by("spira_assets.features.extract") == ["torch", "torchaudio"]
    assert set(heavy_libraries_loaded_by("spira_assets.evaluation.assessment")) >= {
        "torch",
        "sklearn",
    }


def test_each_jobs_forkserver_preloads_what_its_steps_import() -> None:
    """The forkserver skips a preload module it cannot import without a word, so a misspelt or
    too-short list would quietly make every step import torch again."""
    from spira_assets.deployment import BATCH_PRELOAD, TRAINING_PRELOAD

    assert set(heavy_libraries_loaded_by(*BATCH_PRELOAD)) >= {"torch", "torchaudio", "scipy"}
    assert set(heavy_libraries_loaded_by(*TRAINING_PRELOAD)) >= {"torch", "sklearn", "mlflow"}
