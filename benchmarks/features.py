"""Landing-to-features benchmark (not a test). Every ratio is against a baseline measured in
this run, on the same files.

    .venv/bin/python benchmarks/features.py [--participants 12] [--batches 10] [--repeats 3]

(a) landing -> features on the demo formats mix, core code as the assets run it: raw_audio
    (decode once on worker processes: hash, statistics, raw-store copy, 16 kHz PCM),
    validated_metadata, audio_16k (copies that PCM) and spectrogram_features (MFCC), Parquet
    parts and shards written; against the naive SPIRA-v1 loop on the same accepted files (per
    file: soundfile decode, torchaudio resample, torchaudio MFCC; no batching, no caching),
    alternated, ``--repeats`` times each, worker pool started cold every time; and the CPU
    seconds each used (all processes, all threads), which bound the ratio 2 cores allow;
(a2) the MFCC step alone, ours against torchaudio's transform called per file, same waveforms;
(b) one epoch over 4 s / 1 s windows read from the feature store, versus the SPIRA-v1 way
    (a Dataset whose __getitem__ decodes the file, resamples and computes the MFCC), same
    windows, same machine;
(c) cost of materializing batch k (whole per-batch graph through Dagster) versus batch 1;
(d) peak memory (max RSS) of materializing a batch of 1x and 4x the participants, each in a
    fresh process, minus a process that only imports the same modules; and the decode workers'
    peak.

The last line reads ``landing_to_features_x_realtime=<N> vs_naive=<R>`` (medians of (a)).
"""

from __future__ import annotations

import argparse
import io
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


def _status_mb(field: str, pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(root: str, batch: str) -> None:
    """Run in a fresh process: import everything (the definitions load without torch and
    scipy, so the libraries the batch's steps use are imported here too, or their import would
    count as growth), reset the kernel's peak-RSS mark, materialize
    one batch, and print the peak RSS reached during the run above the RSS after imports, and
    the largest peak of a decode worker process."""
    import dagster as dg
    import scipy.stats  # noqa: F401  (the drift step's)

    import spira_assets.features.extract  # noqa: F401  (torch: the feature step's)
    from spira_assets.app.runner import materialize_batch
    from spira_assets.storage.layout import DataLayout
    from spira_assets.workers import shutdown_pools, worker_pids

    os.environ["SPIRA_DATA_DIR"] = root
    with tempfile.TemporaryDirectory() as home:
        instance = dg.DagsterInstance.from_config(home)
        before = _status_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        run = materialize_batch(instance, DataLayout.from_location(root), batch)
        assert run.success, run
        peak = _status_mb("VmHWM")
        workers = max((_status_mb("VmHWM", pid) for pid in worker_pids()), default=0.0)
        shutdown_pools()
    print(json.dumps({"after_imports_mb": before, "peak_mb": peak, "worker_peak_mb": workers}))


def measure_child(root: Path, batch: str) -> tuple[float, float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(root), batch],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    values = json.loads(out.stdout.strip().splitlines()[-1])
    return (
        float(values["after_imports_mb"]),
        float(values["peak_mb"]),
        float(values["worker_peak_mb"]),
    )


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_decode(path: str) -> int:
    """Read and decode one file, nothing else (a worker-process task: module level)."""
    import soundfile as sf

    return len(sf.read(io.BytesIO(Path(path).read_bytes()), dtype="float32")[0])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
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
    from upath import UPath

    from spira_assets.app.runner import materialize_batch
    from spira_assets.assets.raw_audio import first_occurrences
    from spira_assets.audio.quality import AudioQualityRules
    from spira_assets.audio.resample import RESAMPLER_VERSION, MonoResampler, from_int16, to_int16
    from spira_assets.audio.store import LandedPcm, Recording, assemble_waveform_shard
    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.environment import pseudonym_key
    from spira_assets.features.config import FeatureConfig, WindowConfig
    from spira_assets.features.dataset import StoredFeatureWindows
    from spira_assets.features.extract import FeatureExtractor, FeatureStats
    from spira_assets.features.windows import cut
    from spira_assets.ingest.batch_source import BatchSource
    from spira_assets.ingest.metadata import validate_metadata
    from spira_assets.ingest.raw_audio import ingest_raw_audio
    from spira_assets.privacy import Pseudonymizer
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.layout import DataLayout
    from spira_assets.storage.raw_store import RawStore
    from spira_assets.storage.shards import ShardWriter, open_shard
    from spira_assets.storage.tables import (
        AUDIO_16K,
        FEATURE_STATS,
        QUARANTINE,
        RAW_AUDIO,
        RAW_AUDIO_16K,
        SPECTROGRAM_FEATURES,
        VALIDATED_METADATA,
    )
    from spira_assets.workers import ordered_map, shutdown_pools, worker_pids

    torch.set_num_threads(os.cpu_count() or 1)
    config, windows = FeatureConfig(), WindowConfig()
    batches = [f"demo-{k:03d}" for k in range(1, args.batches + 1)]
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
        pseudonymizer = Pseudonymizer(pseudonym_key())
        rules = AudioQualityRules()

        def landing_to_features(
            out: Path,
        ) -> tuple[dict[str, float], float, list[UPath], float]:
            """Every batch through the four stages' core code, as the assets call it, into a
            fresh data root: seconds per stage, accepted audio seconds, accepted raw files, and
            the CPU seconds it used (this process's threads and its decode workers', their
            start included)."""
            shutdown_pools()  # every repeat starts its worker processes cold
            cpu_started = time.process_time()
            lake, store = Lake(UPath(out / "lake")), RawStore(UPath(out / "raw"))
            seconds = dict.fromkeys(
                ("raw_audio", "validated_metadata", "audio_16k", "spectrogram_features"), 0.0
            )
            audio_s, files = 0.0, list[UPath]()
            extractor = FeatureExtractor(config)
            for batch in batches:
                source = BatchSource.open(layout, batch)
                redactor = source.redactor(pseudonymizer)
                t0 = time.perf_counter()
                landed = LandedPcm(out / "landed" / f"{batch}@pending.int16")
                raw = ingest_raw_audio(
                    batch, source.directory, store, rules, pseudonymizer, redactor,
                    datetime.now(UTC), elsewhere=first_occurrences(lake, batch), pcm_sink=landed,
                )  # fmt: skip
                landed_path = landed.commit(out / "landed" / f"{batch}@done.int16")
                shas = list(landed.spans)
                lake.write_part(
                    RAW_AUDIO_16K,
                    batch,
                    pl.DataFrame(
                        {
                            "batch_id": [batch] * len(shas),
                            "audio_sha256": shas,
                            "resampler": [RESAMPLER_VERSION] * len(shas),
                            "sample_offset": [landed.spans[s][0] for s in shas],
                            "samples": [landed.spans[s][1] for s in shas],
                            "shard": [str(landed_path)] * len(shas),
                        }
                    ),
                )
                lake.write_part(RAW_AUDIO, batch, raw.table)
                lake.write_part(QUARANTINE, batch, raw.quarantine, sub="raw_audio")
                t1 = time.perf_counter()
                meta = validate_metadata(
                    batch, source.metadata_bytes, raw.table, pseudonymizer, redactor,
                    datetime.now(UTC),
                )  # fmt: skip
                lake.write_part(VALIDATED_METADATA, batch, meta.table)
                lake.write_part(QUARANTINE, batch, meta.quarantine, sub="validated_metadata")
                t2 = time.perf_counter()
                rows = meta.table.sort("audio_sha256")
                recordings = [
                    Recording(sha, UPath(out / uri), (landed_path, *landed.spans[sha]))
                    for sha, uri in rows.select("audio_sha256", "raw_uri").iter_rows()
                ]
                shard = out / "16k" / f"{batch}@x.int16"
                spans, again = assemble_waveform_shard(recordings, shard)
                assert again == 0
                index = rows.select(
                    "batch_id",
                    "row_number",
                    "audio_sha256",
                    "participant",
                    "label",
                    "sex",
                    "age",
                    "device",
                    "utterance",
                    "pseudonym_key_id",
                    "speaker_grouping",
                    "published_split",
                ).with_columns(
                    pl.Series("sample_offset", [o for o, _ in spans], dtype=pl.Int64),
                    pl.Series("samples", [n for _, n in spans], dtype=pl.Int64),
                    pl.Series("duration_s", [n / 16_000 for _, n in spans], dtype=pl.Float64),
                    pl.lit(str(shard)).alias("shard"),
                    pl.lit(RESAMPLER_VERSION).alias("resampler"),
                )
                lake.write_part(AUDIO_16K, batch, index)
                t3 = time.perf_counter()
                samples = open_shard(shard, np.int16)
                stats = FeatureStats(config.n_features)
                placed: list[tuple[int, int]] = []
                with ShardWriter(out / "f" / f"{batch}@x.f32", np.float32, 40) as writer:

                    def sink(
                        i: int,
                        frames: np.ndarray,
                        writer: ShardWriter = writer,
                        placed: list[tuple[int, int]] = placed,
                        stats: FeatureStats = stats,
                    ) -> None:
                        placed.append(writer.append(frames))
                        stats.add(frames)

                    extractor.run(samples, spans, sink)
                    writer.commit()
                lake.write_part(
                    SPECTROGRAM_FEATURES,
                    batch,
                    index.select(
                        "batch_id", "audio_sha256", "participant", "label", "utterance"
                    ).with_columns(
                        pl.lit(config.config_hash()).alias("config_hash"),
                        pl.lit(config.kind).alias("feature_kind"),
                        pl.Series("frame_offset", [o for o, _ in placed], dtype=pl.Int64),
                        pl.Series("frames", [n for _, n in placed], dtype=pl.Int64),
                        pl.lit(0).alias("windows"),
                        pl.lit("x").alias("shard"),
                    ),
                    sub=config.config_hash(),
                )
                lake.write_part(
                    FEATURE_STATS,
                    batch,
                    pl.DataFrame(
                        {
                            "batch_id": [batch] * 40,
                            "config_hash": [config.config_hash()] * 40,
                            "coefficient": list(range(40)),
                            "mean": stats.mean(),
                            "std": stats.std(),
                            "min": stats.low,
                            "max": stats.high,
                            "frames": [stats.frames] * 40,
                        }
                    ),
                    sub=config.config_hash(),
                )
                t4 = time.perf_counter()
                for stage, t in zip(seconds, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    seconds[stage] += t
                audio_s += float(index.get_column("duration_s").sum())
                files += [layout.batch_dir(batch) / p for p in raw_paths(raw.table, meta.table)]
            cpu = time.process_time() - cpu_started + sum(map(process_cpu_s, worker_pids()))
            return seconds, audio_s, files, cpu

        def raw_paths(raw_table: pl.DataFrame, meta_table: pl.DataFrame) -> list[str]:
            """The landing paths of the accepted recordings (the naive loop's input)."""
            kept = set(meta_table.get_column("audio_sha256"))
            return [
                p
                for p, sha in raw_table.select("source_path", "audio_sha256").iter_rows()
                if sha in kept
            ]

        transform = config.build_transform()

        def naive(files: list[UPath], steps: int = 3) -> float:
            """SPIRA-v1: per file, decode, resample, MFCC; nothing batched or cached. ``steps``
            1 or 2 stops after decoding or resampling (the floor under the loop). The whole
            loop's CPU seconds (torch's threads included) go to ``naive_cpu``."""
            t, cpu = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                for path in files:
                    audio, rate = sf.read(io.BytesIO(Path(str(path)).read_bytes()), dtype="float32")
                    if steps < 2:
                        continue
                    if audio.ndim == 2:
                        audio = audio.mean(axis=1)
                    wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16_000)
                    if steps > 2:
                        transform(wave)
            if steps > 2:
                naive_cpu.append(time.process_time() - cpu)
            return time.perf_counter() - t

        def decode_on_workers(files: list[UPath]) -> float:
            """Only decoding, on the same 2 worker processes as raw_audio (cold): the floor of
            anything that must decode every file on this machine."""
            shutdown_pools()
            t = time.perf_counter()
            for _ in ordered_map(bare_decode, [str(p) for p in files], 2):
                pass
            return time.perf_counter() - t

        ours_runs: list[tuple[dict[str, float], float]] = []
        ours_cpu: list[float] = []
        naive_cpu: list[float] = []
        naive_runs: list[float] = []
        floors: dict[str, list[float]] = {
            "naive loop: decode only": [],
            "naive loop: decode + resample": [],
            "decode only, on 2 worker processes": [],
        }
        audio_s, files = 0.0, list[UPath]()
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory(dir=tmp) as out:
                seconds, audio_s, files, cpu = landing_to_features(Path(out))
            ours_cpu.append(cpu)
            ours_runs.append((seconds, sum(seconds.values())))
            naive_runs.append(naive(files))
            floors["naive loop: decode only"].append(naive(files, 1))
            floors["naive loop: decode + resample"].append(naive(files, 2))
            floors["decode only, on 2 worker processes"].append(decode_on_workers(files))
            print(f"repeat {repeat + 1}: ours {ours_runs[-1][1]:.2f}s, naive {naive_runs[-1]:.2f}s")
        totals = [total for _, total in ours_runs]
        ours_x = [audio_s / t for t in totals]
        naive_x = [audio_s / t for t in naive_runs]
        ratios = [n / o for n, o in zip(naive_runs, totals, strict=True)]
        print(
            f"\n(a) landing -> features: {len(batches)} batches, {len(files)} recordings, "
            f"{audio_s / 60:.1f} min of audio; median (min-max) of {args.repeats} repeats"
        )
        print("| path | seconds | x realtime |")
        print("|---|---|---|")
        for stage in ours_runs[0][0]:
            per = [run[stage] for run, _ in ours_runs]
            print(f"| ours: {stage} | {spread(per)} | {audio_s / statistics.median(per):.0f} |")
        print(f"| **ours: landing -> features** | {spread(totals)} | {spread(ours_x)} |")
        print(
            f"| naive SPIRA-v1 per-file loop (baseline) | {spread(naive_runs)} | "
            f"{spread(naive_x)} |"
        )
        for name, runs in floors.items():
            print(f"| {name} | {spread(runs)} | {spread([audio_s / t for t in runs])} |")
        print(f"ratio naive / ours per repeat: {', '.join(f'{r:.2f}' for r in ratios)}")
        # What 2 cores allow: ours cannot take less wall time than its CPU seconds shared
        # perfectly over the cores, so naive wall / (ours CPU / cores) bounds vs_naive.
        cores = os.cpu_count() or 1
        ceiling = statistics.median(naive_runs) / (statistics.median(ours_cpu) / cores)
        print(
            f"CPU seconds, all processes: ours {spread(ours_cpu)}, naive loop {spread(naive_cpu)}"
            f"; with ours' work shared perfectly over {cores} cores, vs_naive could reach "
            f"at most {ceiling:.2f}"
        )

        # (a2) the MFCC step alone on the same 16 kHz waveforms: ours vs torchaudio per file.
        first_batch = files[: len(files) // len(batches)]
        resampler = MonoResampler()
        waves = [
            torch.from_numpy(from_int16(to_int16(resampler.decode(Path(str(p)).read_bytes()))))
            for p in first_batch
        ]
        wave_s = sum(len(w) for w in waves) / 16_000
        chunk_sizes = (100, 200, 400, 800, 2000, 24_000)
        mfcc_ref: list[float] = []
        mfcc_ours: dict[int, list[float]] = {size: [] for size in chunk_sizes}
        with torch.inference_mode():
            for _ in range(args.repeats):
                t = time.perf_counter()
                for wave in waves:
                    transform(wave)
                mfcc_ref.append(time.perf_counter() - t)
                for size in chunk_sizes:
                    t = time.perf_counter()
                    FeatureExtractor(config, chunk_frames=size).batch(waves)
                    mfcc_ours[size].append(time.perf_counter() - t)
        print(f"\n(a2) MFCC only, {len(waves)} recordings ({wave_s / 60:.1f} min) of batch 1")
        print("| path | seconds | x realtime |")
        print("|---|---|---|")
        print(
            f"| torchaudio MFCC per file (baseline) | {spread(mfcc_ref)} | "
            f"{wave_s / statistics.median(mfcc_ref):.0f} |"
        )
        default = FeatureExtractor(config).chunk_frames
        for size, runs in mfcc_ours.items():
            chosen = " (default)" if size == default else ""
            print(
                f"| ours, chunks of {size} frames{chosen} | {spread(runs)} | "
                f"{wave_s / statistics.median(runs):.0f} |"
            )

        # (c) batch k through Dagster, also populating the feature store for (b).
        os.environ["SPIRA_DATA_DIR"] = str(root)
        costs = []
        with tempfile.TemporaryDirectory() as home:
            instance = dg.DagsterInstance.from_config(home)
            for batch in batches:
                t = time.perf_counter()
                run = materialize_batch(instance, layout, batch)
                costs.append(time.perf_counter() - t)
                assert run.success, run

        # (b) epoch over stored windows vs the SPIRA-v1 way, same windows of batch 1.
        index = Lake(layout.lake).read_part(
            SPECTROGRAM_FEATURES, "demo-001", sub=config.config_hash()
        )
        meta_1 = Lake(layout.lake).read_part(VALIDATED_METADATA, "demo-001")
        stored = StoredFeatureWindows(index, Path(str(layout.root)), config, windows)
        raw_of = dict(meta_1.select("audio_sha256", "raw_uri").iter_rows())
        raw_files = [layout.root / raw_of[s] for s in index.get_column("audio_sha256")]
        length = windows.frames(windows.window_s, config)

        class SpiraV1Windows(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
            """SPIRA v1: decode, resample and compute the MFCC inside __getitem__."""

            def __len__(self) -> int:
                return len(stored)

            def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
                item = stored.items[i]
                start = item.start - int(index.get_column("frame_offset")[item.recording])
                audio, rate = sf.read(str(raw_files[item.recording]), dtype="float32")
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

        per_batch_audio = [
            float(Lake(layout.lake).read_part(AUDIO_16K, b).get_column("duration_s").sum())
            for b in batches
        ]
        print("\n(c) materializing batch k (raw_audio -> spectrogram_features, in-process run)")
        print("| k | seconds | x realtime | ratio to batch 1 |")
        print("|---|---|---|---|")
        for k, (cost, seconds_k) in enumerate(zip(costs, per_batch_audio, strict=True), 1):
            print(f"| {k} | {cost:.2f} | {seconds_k / cost:.0f} | {cost / costs[0]:.2f} |")
        later = costs[1:] or costs
        print(
            f"median k>1 / 1 = {statistics.median(later) / costs[0]:.2f}, "
            f"max = {max(later) / costs[0]:.2f}"
        )

        # (d) peak memory, fresh processes.
        base1, one, workers1 = measure_child(small, "demo-001")
        base4, four, workers4 = measure_child(big, "demo-001")
        print("\n(d) peak RSS while materializing one batch, fresh process each")
        print(
            "| batch size | RSS after imports MB | peak during run MB | growth MB "
            "| worker peak MB |"
        )
        print("|---|---|---|---|---|")
        print(
            f"| 1x ({args.participants} participants) | {base1:.0f} | {one:.0f} | "
            f"{one - base1:.0f} | {workers1:.0f} |"
        )
        print(
            f"| 4x ({4 * args.participants} participants) | {base4:.0f} | {four:.0f} | "
            f"{four - base4:.0f} | {workers4:.0f} |"
        )
        print(f"ratio of growth 4x / 1x: {(four - base4) / max(one - base1, 1):.2f}")
        print(
            f"landing_to_features_x_realtime={statistics.median(ours_x):.0f} "
            f"vs_naive={statistics.median(ratios):.2f}"
        )


if __name__ == "__main__":
    main()
