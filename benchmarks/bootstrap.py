"""Bootstrap benchmark (not a test): every evaluation metric with its participant-bootstrap CI.

    .venv/bin/python benchmarks/bootstrap.py [--resamples 1000] [--people 24] [--per-person 3]

Baseline, measured in the same run on the same frame and the same draws: scikit-learn called
per draw (``all_metrics`` on each draw's rows, what ``metric_table`` did before
``evaluation/bootstrap.py``). Ours: ``metric_table`` (scikit-learn point estimates, all draws as
weighted sums). Also the paired AUROC difference of the gate's comparisons. Last line:
``metric_table_s=<ours> per_draw_s=<baseline> speedup=<x> paired_s=<y>``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from spira_assets.evaluation.metrics import (
    _participant_draws,
    all_metrics,
    metric_table,
    paired_difference,
)
from spira_assets.ml.metrics import auroc


def best_of(repeats: int, work) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--people", type=int, default=24)
    parser.add_argument("--per-person", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = args.people * args.per_person
    person = np.arange(rows) % args.people
    labels = (person % 2).astype(int)
    scores = np.clip(labels * 0.3 + rng.normal(0.4, 0.2, rows), 0, 1)
    frame = pl.DataFrame(
        {"participant": [f"p{p}" for p in person], "recording": [f"r{i}" for i in range(rows)],
         "label": labels, "score": scores}
    )  # fmt: skip
    other = frame.with_columns(pl.col("score") * 0.9)
    draws = _participant_draws(frame, args.resamples, 0)
    baseline = best_of(1, lambda: [all_metrics(labels[r], scores[r], 0.5) for r in draws])
    ours = best_of(3, lambda: metric_table(frame, 0.5, args.resamples))
    paired_baseline = best_of(
        1, lambda: [auroc(labels[r], scores[r]) - auroc(labels[r], scores[r] * 0.9) for r in draws]
    )
    paired = best_of(3, lambda: paired_difference(frame, other, args.resamples))
    print(f"{rows} recordings of {args.people} people, {args.resamples} draws")
    print(f"every metric: scikit-learn per draw {baseline:.3f} s, weighted {ours:.3f} s")
    print(f"paired AUROC: scikit-learn per draw {paired_baseline:.3f} s, weighted {paired:.3f} s")
    print(
        f"metric_table_s={ours:.4f} per_draw_s={baseline:.3f} speedup={baseline / ours:.0f} "
        f"paired_s={paired:.4f} paired_speedup={paired_baseline / paired:.0f}"
    )


if __name__ == "__main__":
    main()
