"""Executor benchmark (not a test): what one process per step costs, and what preloading saves.

    .venv/bin/python benchmarks/executors.py [--batches 3] [--participants 3]

The same small batches are materialized (whole per-batch graph: 5 steps) three ways, each on a
fresh data root and a fresh SQLite instance, in this one run:

- ``in_process``: every step in the calling process (``spira materialize`` default), the
  baseline;
- ``spawn``: Dagster's multiprocess executor with its default start method: each step is a
  new Python process that imports dagster, torch, polars and our code again;
- ``forkserver``: the executor ``SPIRA_DEPLOYMENT=local`` uses (``spira_assets/deployment.py``):
  each step is forked from a server that preloaded ``spira_assets.definitions``.

Prints seconds per batch and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg

os.environ.setdefault(
    "SPIRA_PSEUDONYM_KEY", "7301ed516a9bfe63f2f9f281dc3de485c3a70aeb2036e65f1ad153b97ec7f2e4"
)

START_METHODS = {
    "spawn": {"spawn": {}},
    "forkserver": {"forkserver": {"preload_modules": ["spira_assets.definitions"]}},
}


def _job(start_method: str) -> dg.JobDefinition:
    from spira_assets.automation.jobs import BATCH_ASSETS
    from spira_assets.definitions import RESOURCES, defs
    from spira_assets.partitions import collection_batch

    executor = dg.multiprocess_executor.configured(
        {"max_concurrent": 2, "start_method": START_METHODS[start_method]}, name=start_method
    )
    job = dg.define_asset_job(
        "process_batch_bench",
        selection=dg.AssetSelection.assets(*BATCH_ASSETS),
        partitions_def=collection_batch,
        executor_def=executor,
    )
    assets = list(defs.assets or [])
    return dg.Definitions(assets=assets, jobs=[job], resources=RESOURCES).resolve_job_def(
        "process_batch_bench"
    )


def spawn_job() -> dg.JobDefinition:
    return _job("spawn")


def forkserver_job() -> dg.JobDefinition:
    return _job("forkserver")


def run_mode(mode: str, landing: Path, batches: list[str], work: Path) -> float:
    from spira_assets.app.runner import materialize_batch, register_batch
    from spira_assets.storage.layout import DataLayout

    root = work / mode / "data"
    shutil.copytree(landing, root / "landing")
    os.environ["SPIRA_DATA_DIR"] = str(root)
    layout = DataLayout.from_location(root)
    with tempfile.TemporaryDirectory() as home:
        instance = dg.DagsterInstance.from_config(home)
        started = time.perf_counter()
        for batch in batches:
            if mode == "in_process":
                assert materialize_batch(instance, layout, batch).ok
                continue
            register_batch(instance, batch)
            build = spawn_job if mode == "spawn" else forkserver_job
            result = dg.execute_job(
                dg.reconstructable(build), instance=instance, tags={"dagster/partition": batch}
            )
            assert result.success, mode
        return (time.perf_counter() - started) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--participants", type=int, default=3)
    args = parser.parse_args()

    from spira_assets.demo.corpus import DemoSpec, batch_ids, generate_corpus

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        landing = work / "landing"
        spec = DemoSpec(landing, args.batches, args.participants, seed=3, defect_rate=0.0)
        generate_corpus(spec, workers=2)
        batches = batch_ids(args.batches)
        files = sum(1 for p in landing.rglob("*.wav"))
        print(f"{args.batches} batches of {args.participants} participants ({files} WAV files)")
        baseline = None
        for mode in ("in_process", "spawn", "forkserver"):
            seconds = run_mode(mode, landing, batches, work)
            baseline = baseline or seconds
            print(
                f"{mode:>11}: {seconds:6.1f} s per batch  ({seconds / baseline:4.2f}x in_process)"
            )


if __name__ == "__main__":
    main()
