"""Model stability benchmark (not a test): the demo profile under several pseudonym keys.

    .venv/bin/python benchmarks/model_stability.py [--keys 5] [--seeds 42,43,46] [--epochs 5]

A pseudonym key decides who is in which split, so each key is another split of the same demo
corpus. For each key this runs ``spira demo`` (the whole graph: ingest, features, split,
training of every seed, evaluation, gate) in its own data root and Dagster home, on one corpus
generated once (``spira demo``'s defaults: 3 batches x 24 participants, corpus seed 7), and
prints, per key:
  - the test AUROC, clean and with the model's hospital noise (platform noisy), per recording;
  - the noisy specificity at the model's stated operating point;
  - the spread (standard deviation) of the best validation AUROC over the seeds;
  - the operating point and the gate's verdict.
Last line: ``min_test_auroc=<x> max_seed_std=<y> min_noisy_specificity=<z>`` (targets on the
demo corpus: >= 0.95, <= 0.05, >= 0.80; docs/PERFORMANCE.md "Model stability").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def key_for(index: int) -> str:
    """A deployment-style secret per split (64 hex digits), fixed so runs compare."""
    return hashlib.sha256(f"spira model stability key {index}".encode()).hexdigest()


def run_key(
    index: int, corpus: Path, work: Path, seeds: str, epochs: int, extra: list[str]
) -> dict[str, Any]:
    root, home = work / f"key{index}" / "data", work / f"key{index}" / "home"
    shutil.rmtree(work / f"key{index}", ignore_errors=True)
    shutil.copytree(corpus, root / "landing")
    home.mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "SPIRA_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "SPIRA_PSEUDONYM_KEY": key_for(index),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    subprocess.run([sys.executable, "-m", "spira_assets.app.instance"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        [str(bin_dir / "spira"), "demo", "--seeds", seeds, "--epochs", str(epochs), *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    (work / f"key{index}" / "demo.log").write_text(done.stdout + done.stderr)
    return {"seconds": seconds, **read_results(root)}


def read_results(root: Path) -> dict[str, Any]:
    import numpy as np
    import polars as pl
    from upath import UPath

    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import EVALUATION_METRICS, MODEL_VERSIONS, PROMOTIONS

    lake = Lake(UPath(root / "lake"))
    models = lake.read_table(MODEL_VERSIONS)
    if models.is_empty():
        return {"error": "no model trained (see demo.log)"}
    version = str(models.sort("trained_at").get_column("model_version")[-1])
    summary = json.loads((root / "models" / version / "summary.json").read_text())
    point = json.loads((root / "models" / version / "threshold.json").read_text())
    best_per_seed = [
        max((h[3] for h in history if h[3] == h[3]), default=float("nan"))
        for history in summary["histories"].values()
    ]
    metrics = lake.read_part(EVALUATION_METRICS, version).filter(
        (pl.col("role") == "candidate") & (pl.col("level") == "recording")
    )

    def metric(condition: str, name: str) -> float:
        value = metrics.filter((pl.col("condition") == condition) & (pl.col("metric") == name))
        return float(value.get_column("value")[0]) if value.height else float("nan")

    decisions = lake.read_table(PROMOTIONS)
    passed = bool(decisions.get_column("passed")[-1]) if decisions.height else None
    return {
        "version": version,
        "test_auroc_clean": metric("clean", "auroc"),
        "test_auroc_noisy": metric("noisy", "auroc"),
        "noisy_specificity": metric("noisy", "specificity"),
        "noisy_sensitivity": metric("noisy", "sensitivity"),
        "clean_sensitivity": metric("clean", "sensitivity"),
        "clean_specificity": metric("clean", "specificity"),
        "seed_val_auroc": best_per_seed,
        "seed_std": float(np.std(best_per_seed)),
        "threshold": point["threshold"],
        "gate_passed": passed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--first-key", type=int, default=0)
    parser.add_argument("--seeds", default="42,43,46")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="kept when given")
    parser.add_argument("--demo-arg", action="append", default=[], help="passed to spira demo")
    args = parser.parse_args()

    import torch

    from spira_assets.demo.corpus import DemoSpec, generate_corpus

    work = args.work or Path(tempfile.mkdtemp(prefix="spira-stability-"))
    corpus = work / "corpus"
    if not corpus.exists():
        generate_corpus(DemoSpec(corpus, 3, 24, 7, 1.0, 0.05))
    print(
        f"demo corpus {corpus} (3 batches x 24 participants, seed 7); seeds {args.seeds}, "
        f"up to {args.epochs} epochs; torch threads {torch.get_num_threads()}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    for index in range(args.first_key, args.first_key + args.keys):
        result = run_key(index, corpus, work, args.seeds, args.epochs, args.demo_arg)
        rows.append(result)
        if "error" in result:
            print(f"key {index}: {result['error']}", flush=True)
            continue
        seeds = " ".join(f"{v:.3f}" for v in result["seed_val_auroc"])
        print(
            f"key {index}: test AUROC clean {result['test_auroc_clean']:.3f} noisy "
            f"{result['test_auroc_noisy']:.3f}; at threshold {result['threshold']:.3f}: clean "
            f"sens {result['clean_sensitivity']:.3f} spec {result['clean_specificity']:.3f}, "
            f"noisy sens {result['noisy_sensitivity']:.3f} spec "
            f"{result['noisy_specificity']:.3f}; seed val AUROC {seeds} (std "
            f"{result['seed_std']:.3f}); gate {'passed' if result['gate_passed'] else 'failed'}"
            f"; {result['seconds']:.0f} s",
            flush=True,
        )
    good = [r for r in rows if "error" not in r]
    if len(good) < len(rows):
        print(f"{len(rows) - len(good)} key(s) trained no model", flush=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"min_test_auroc={min(min(r['test_auroc_clean'], r['test_auroc_noisy']) for r in good):.3f}"
        f" max_seed_std={max(r['seed_std'] for r in good):.3f}"
        f" min_noisy_specificity={min(r['noisy_specificity'] for r in good):.3f}"
    )


if __name__ == "__main__":
    main()
