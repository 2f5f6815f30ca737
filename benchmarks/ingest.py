"""Ingest benchmark (not a test): how fast raw_audio + validated_metadata run, compared with
baselines measured in the same run on the same files.

    .venv/bin/python benchmarks/ingest.py [--batches 6] [--participants 12]

Reports
  (a) ingest throughput in x realtime, against a bare soundfile decode of the same files
      (the least any ingest must do), and the speed-up of 2 decode worker processes over 1
      (in-process); raw_audio also resamples the accepted audio to 16 kHz from the same decode;
  (b) the cost of materializing batch k through Dagster versus batch 1, k = 1..N: the work
      must scale with the new batch, not with everything already ingested.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import soundfile as sf

os.environ.setdefault(
    "SPIRA_PSEUDONYM_KEY", "7301ed516a9bfe63f2f9f281dc3de485c3a70aeb2036e65f1ad153b97ec7f2e4"
)


def bare_decode_seconds(files: list[Path]) -> float:
    started = time.perf_counter()
    for path in files:
        with contextlib.suppress(sf.LibsndfileError, RuntimeError):
            sf.read(io.BytesIO(path.read_bytes()), dtype="float32")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import dagster as dg

    from spira_assets.app.runner import materialize_batch
    from spira_assets.audio.quality import AudioQualityRules
    from spira_assets.audio.store import LandedPcm
    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.environment import pseudonym_key
    from spira_assets.ingest.batch_source import BatchSource
    from spira_assets.ingest.metadata import validate_metadata
    from spira_assets.ingest.raw_audio import ingest_raw_audio
    from spira_assets.privacy import Pseudonymizer
    from spira_assets.storage.layout import DataLayout
    from spira_assets.storage.raw_store import RawStore
    from spira_assets.workers import shutdown_pools

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        t0 = time.perf_counter()
        generate_corpus(
            DemoSpec(root / "landing", args.batches, args.participants, seed=1, defect_rate=0.05)
        )
        generated = time.perf_counter() - t0
        layout = DataLayout.from_location(root)
        os.environ["SPIRA_DATA_DIR"] = str(root)
        pseudonymizer = Pseudonymizer(pseudonym_key())
        first = BatchSource.open(layout, "demo-001")
        files = sorted(Path(str(first.directory / "audio")).iterdir())

        def core(workers: int) -> tuple[float, float]:
            store = RawStore(layout.root / f"raw-bench-{workers}-{time.monotonic_ns()}")
            started = time.perf_counter()
            shutdown_pools()  # each measurement starts its worker processes cold
            landed = LandedPcm(Path(str(store.root)) / "demo-001@pending.int16")
            result = ingest_raw_audio(
                "demo-001",
                first.directory,
                store,
                AudioQualityRules(),
                pseudonymizer,
                first.redactor(pseudonymizer),
                datetime.now(UTC),
                workers=workers,
                pcm_sink=landed,
            )
            landed.commit(Path(str(store.root)) / "demo-001@done.int16")
            validate_metadata(
                "demo-001",
                first.metadata_bytes,
                result.table,
                pseudonymizer,
                first.redactor(pseudonymizer),
                datetime.now(UTC),
            )
            return time.perf_counter() - started, result.total_duration_s

        bare = min(bare_decode_seconds(files) for _ in range(args.repeats))
        one = min(core(1)[0] for _ in range(args.repeats))
        two, audio_s = min(core(2) for _ in range(args.repeats))
        print(
            f"corpus: {args.batches} batches x {args.participants} participants "
            f"({len(files)} files, {audio_s / 60:.1f} min of accepted audio per batch), "
            f"generated in {generated:.1f}s"
        )
        print("\n(a) one batch, core stages (decode, measure, judge, hash, copy, 16 kHz; validate)")
        print("| what | seconds | x realtime | ratio to bare decode |")
        print("|---|---|---|---|")
        print(f"| bare soundfile decode (baseline) | {bare:.2f} | {audio_s / bare:.0f} | 1.00 |")
        print(f"| ingest, in-process | {one:.2f} | {audio_s / one:.0f} | {one / bare:.2f} |")
        print(
            f"| ingest, 2 worker processes (cold start) | {two:.2f} | {audio_s / two:.0f} | "
            f"{two / bare:.2f} |"
        )
        print(f"\nspeed-up of 2 processes over 1: {one / two:.2f}x")

        with tempfile.TemporaryDirectory() as home:
            (Path(home) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            instance = dg.DagsterInstance.from_config(home)
            costs = []
            for k in range(1, args.batches + 1):
                started = time.perf_counter()
                run = materialize_batch(instance, layout, f"demo-{k:03d}")
                costs.append(time.perf_counter() - started)
                assert run.success or run.failed_checks, run
        print("\n(b) materializing batch k through Dagster (in-process, both assets + checks)")
        print("| k | seconds | ratio to batch 1 |")
        print("|---|---|---|")
        for k, cost in enumerate(costs, 1):
            print(f"| {k} | {cost:.2f} | {cost / costs[0]:.2f} |")
        later = costs[1:] or costs
        print(
            f"\nmedian batch k>1 / batch 1: {statistics.median(later) / costs[0]:.2f} "
            f"(max {max(later) / costs[0]:.2f})"
        )


if __name__ == "__main__":
    main()
