"""Feature benchmark (not a test). Every ratio is against a baseline measured in this run.

    .venv/bin/python benchmarks/features.py [--participants 12] [--batches 10]

(a) decode + resample + MFCC + write throughput (x realtime) on the demo formats, core code;
(b) one epoch over 4 s / 1 s windows read from the feature store, versus the SPIRA-v1 way
    (a Dataset whose __getitem__ decodes the file, resamples and computes the MFCC), same
    windows, same machine;
(c) cost of materializing batch k (whole per-batch graph through Dagster) versus batch 1;
(d) peak memory (max RSS) of materializing a batch of 1x and 4x the participants, each in a
    fresh process, minus a process that only imports the same modules.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault(
    "SPIRA_PSEUDONYM_KEY", "7301ed516a9bfe63f2f9f281dc3de485c3a70aeb2036e65f1ad153b97ec7f2e4"
)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(root: str, batch: str) -> None:
    """Run in a fresh process: import everything, reset the kernel's peak-RSS mark, materialize
    one batch, and print the peak RSS reached during the run above the RSS after imports."""
    import dagster as dg

    from spira_assets.layout import DataLayout
    from spira_assets.runner import materialize_batch

    os.environ["SPIRA_DATA_DIR"] = root
    with tempfile.TemporaryDirectory() as home:
        instance = dg.DagsterInstance.from_config(home)
        before = _status_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        run = materialize_batch(instance, DataLayout.from_location(root), batch)
        assert run.success, run
        peak = _status_mb("VmHWM")
    print(json.dumps({"after_imports_mb": before, "peak_mb": peak}))


def measure_child(root: Path, batch: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(root), batch],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    values = json.loads(out.stdout.strip().splitlines()[-1])
    return float(values["after_imports_mb"]), float(values["peak_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child_memory(args.child[0], args.child[1])
        return

    import dagster as dg
    import numpy as np
    import polars as pl
    import soundfile as sf
    import torch
    import torchaudio

    from spira_assets.audio.quality import AudioQualityRules
    from spira_assets.audio.resample import MonoResampler
    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.features.config import FeatureConfig, WindowConfig
    from spira_assets.features.dataset import StoredFeatureWindows
    from spira_assets.features.extract import FeatureExtractor
    from spira_assets.features.waveforms import write_waveform_shard
    from spira_assets.features.windows import cut
    from spira_assets.ingest.batch_source import BatchSource
    from spira_assets.ingest.metadata import validate_metadata
    from spira_assets.ingest.raw_audio import ingest_raw_audio
    from spira_assets.layout import DataLayout
    from spira_assets.privacy import Pseudonymizer, load_pseudonym_key
    from spira_assets.runner import materialize_batch
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.raw_store import RawStore
    from spira_assets.storage.shards import ShardWriter, open_shard
    from spira_assets.storage.tables import SPECTROGRAM_FEATURES

    torch.set_num_threads(os.cpu_count() or 1)
    config, windows = FeatureConfig(), WindowConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        started = time.perf_counter()
        generate_corpus(
            DemoSpec(
                root / "landing",
                args.batches,
                args.participants,
                seed=3,
                defect_rate=0.0,
                noise_files=1,
            )
        )
        big = Path(tmp) / "big"
        generate_corpus(
            DemoSpec(
                big / "landing", 1, 4 * args.participants, seed=4, defect_rate=0.0, noise_files=1
            )
        )
        small = Path(tmp) / "small"
        generate_corpus(
            DemoSpec(
                small / "landing", 1, args.participants, seed=4, defect_rate=0.0, noise_files=1
            )
        )
        print(f"corpora generated in {time.perf_counter() - started:.0f}s")
        layout = DataLayout.from_location(root)
        pseudonymizer = Pseudonymizer(load_pseudonym_key())

        # (a) core pipeline on batch 1: ingest, then decode+resample+shard, then MFCC+shard.
        source = BatchSource.open(layout, "demo-001")
        redactor = source.redactor(pseudonymizer)
        raw = ingest_raw_audio(
            "demo-001",
            source.directory,
            RawStore(layout.raw_store),
            AudioQualityRules(),
            pseudonymizer,
            redactor,
            datetime.now(UTC),
        )
        meta = validate_metadata(
            "demo-001", source.metadata_bytes, raw.table, pseudonymizer, redactor, datetime.now(UTC)
        )
        paths = [layout.root / uri for uri in meta.table.get_column("raw_uri")]
        audio_s = float(meta.table.get_column("duration_s").sum())
        t0 = time.perf_counter()
        spans = write_waveform_shard(paths, Path(tmp) / "a.int16", MonoResampler())
        t1 = time.perf_counter()
        samples = open_shard(Path(tmp) / "a.int16", np.int16)
        with ShardWriter(Path(tmp) / "a.f32", np.float32, 40) as writer:
            FeatureExtractor(config).run(samples, spans, lambda i, f: writer.append(f))
            writer.commit()
        t2 = time.perf_counter()
        decode_s, mfcc_s = t1 - t0, t2 - t1
        print(f"\n(a) batch 1: {len(paths)} recordings, {audio_s / 60:.1f} min of audio")
        print("| step | seconds | x realtime |")
        print("|---|---|---|")
        print(
            f"| decode + resample to 16 kHz + write int16 shard | {decode_s:.2f} | "
            f"{audio_s / decode_s:.0f} |"
        )
        print(f"| MFCC (batched) + write float32 shard | {mfcc_s:.2f} | {audio_s / mfcc_s:.0f} |")
        print(f"| both | {decode_s + mfcc_s:.2f} | {audio_s / (decode_s + mfcc_s):.0f} |")

        # (c) batch k through Dagster, also populating the feature store for (b).
        os.environ["SPIRA_DATA_DIR"] = str(root)
        costs = []
        with tempfile.TemporaryDirectory() as home:
            instance = dg.DagsterInstance.from_config(home)
            for k in range(1, args.batches + 1):
                t = time.perf_counter()
                run = materialize_batch(instance, layout, f"demo-{k:03d}")
                costs.append(time.perf_counter() - t)
                assert run.success, run

        # (b) epoch over stored windows vs the SPIRA-v1 way, same windows of batch 1.
        index = Lake(layout.lake).read_part(
            SPECTROGRAM_FEATURES, "demo-001", sub=config.config_hash()
        )
        stored = StoredFeatureWindows(index, Path(str(layout.root)), config, windows)
        raw_of = dict(meta.table.select("audio_sha256", "raw_uri").iter_rows())
        files = [layout.root / raw_of[s] for s in index.get_column("audio_sha256")]
        transform = config.build_transform()
        length = windows.frames(windows.window_s, config)

        class SpiraV1Windows(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
            """SPIRA v1: decode, resample and compute the MFCC inside __getitem__."""

            def __len__(self) -> int:
                return len(stored)

            def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
                item = stored.items[i]
                start = item.start - int(index.get_column("frame_offset")[item.recording])
                audio, rate = sf.read(str(files[item.recording]), dtype="float32")
                if audio.ndim == 2:
                    audio = audio.mean(axis=1)
                wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16_000)
                mfcc = transform(wave).T.numpy()
                return torch.from_numpy(cut(mfcc, start, length)), item.label

        def epoch(dataset: torch.utils.data.Dataset) -> float:  # type: ignore[type-arg]
            loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=False)
            t = time.perf_counter()
            for _batch in loader:
                pass
            return time.perf_counter() - t

        ours = statistics.median(epoch(stored) for _ in range(3))
        v1 = epoch(SpiraV1Windows())
        print(f"\n(b) one epoch over {len(stored)} windows (4 s, 1 s step) of batch 1, batch 32")
        print("| data path | seconds | windows/s | ratio |")
        print("|---|---|---|---|")
        print(
            f"| SPIRA-v1: decode + resample + MFCC in __getitem__ (baseline) | {v1:.2f} | "
            f"{len(stored) / v1:.0f} | 1.0 |"
        )
        print(
            f"| memory-mapped feature store | {ours:.3f} | {len(stored) / ours:.0f} | "
            f"{v1 / ours:.0f}x faster |"
        )

        print("\n(c) materializing batch k (raw_audio -> spectrogram_features, in-process run)")
        print("| k | seconds | ratio to batch 1 |")
        print("|---|---|---|")
        for k, cost in enumerate(costs, 1):
            print(f"| {k} | {cost:.2f} | {cost / costs[0]:.2f} |")
        later = costs[1:] or costs
        print(
            f"median k>1 / 1 = {statistics.median(later) / costs[0]:.2f}, "
            f"max = {max(later) / costs[0]:.2f}"
        )

        # (d) peak memory, fresh processes.
        base1, one = measure_child(small, "demo-001")
        base4, four = measure_child(big, "demo-001")
        print("\n(d) peak RSS while materializing one batch, fresh process each")
        print("| batch size | RSS after imports MB | peak during run MB | growth MB |")
        print("|---|---|---|---|")
        print(
            f"| 1x ({args.participants} participants) | {base1:.0f} | {one:.0f} | "
            f"{one - base1:.0f} |"
        )
        print(
            f"| 4x ({4 * args.participants} participants) | {base4:.0f} | {four:.0f} | "
            f"{four - base4:.0f} |"
        )
        print(f"ratio of growth 4x / 1x: {(four - base4) / max(one - base1, 1):.2f}")
        _ = pl


if __name__ == "__main__":
    main()
