"""Training benchmark (not a test): throughput and time spent waiting for data, CPU.

    .venv/bin/python benchmarks/training.py [--participants 12] [--steps 20]

Feeds the same SpiraConv training step (batch 30, noise insertion, MFCC, forward, backward,
Adam) from two data paths, measured in the same run:
  - ours: 4 s windows sliced from the memory-mapped 16 kHz store, noise and MFCC on the device;
  - SPIRA-v1 style: a Dataset whose __getitem__ decodes the file, resamples and computes the
    MFCC of the window (no noise), through a DataLoader.
Reports windows/s and the share of step time spent waiting for the next batch on the host
(v1: decoding and MFCC inside the loader; ours: slicing the memory map), computing noise + MFCC
(ours, on the device), and in the model step. On a CUDA
machine pass --device cuda to get the device-busy share (not measured here: no GPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault(
    "SPIRA_PSEUDONYM_KEY", "7301ed516a9bfe63f2f9f281dc3de485c3a70aeb2036e65f1ad153b97ec7f2e4"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import dagster as dg
    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio

    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.features.augment import AugmentConfig, NoiseBank
    from spira_assets.features.config import FeatureConfig
    from spira_assets.layout import DataLayout
    from spira_assets.ml.data import build_windows
    from spira_assets.ml.model import SpiraConv
    from spira_assets.ml.train import feature_pipeline
    from spira_assets.runner import materialize_batch, materialize_shared
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.shards import open_shard
    from spira_assets.storage.tables import AUDIO_16K, HOSPITAL_NOISE, VALIDATED_METADATA

    device = torch.device(args.device)
    config = FeatureConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        generate_corpus(
            DemoSpec(root / "landing", 1, args.participants, seed=5, defect_rate=0.0, noise_files=1)
        )
        os.environ["SPIRA_DATA_DIR"] = str(root)
        layout = DataLayout.from_location(root)
        instance = dg.DagsterInstance.ephemeral()
        assert materialize_shared(instance).ok
        assert materialize_batch(instance, layout, "demo-001").ok
        lake = Lake(layout.lake)
        recordings = lake.read_table(AUDIO_16K)
        windows = build_windows(recordings, root)
        noise = lake.read_table(HOSPITAL_NOISE)
        bank = NoiseBank.from_int16(
            open_shard(root / noise.get_column("shard")[0], np.int16), device
        )
        pipeline = feature_pipeline(config, bank, AugmentConfig(), 400, device)

        def run(next_batch: object, make_features: object, label: str) -> None:
            torch.manual_seed(0)
            model = SpiraConv().to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            loss_fn = torch.nn.BCEWithLogitsLoss()
            waiting = featuring = busy = 0.0
            count = 0
            for step in range(args.steps + 2):
                t0 = time.perf_counter()
                batch = next_batch()  # type: ignore[operator]
                tf = time.perf_counter()
                feats, targets = make_features(*batch)  # type: ignore[operator]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t1 = time.perf_counter()
                loss = loss_fn(model(feats), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                if step >= 2:  # warm-up steps excluded
                    waiting += tf - t0
                    featuring += t1 - tf
                    busy += t2 - t1
                    count += feats.shape[0]
            total = waiting + featuring + busy
            print(
                f"| {label} | {count / total:.1f} | {waiting / total:.1%} | "
                f"{featuring / total:.1%} | {busy / total:.1%} |"
            )

        rng = np.random.default_rng(0)
        generator = torch.Generator().manual_seed(0)

        def ours() -> tuple[torch.Tensor, torch.Tensor]:
            rows = rng.integers(0, len(windows), 30)
            waves = windows.waves(rows).to(device)
            return waves, torch.from_numpy(windows.labels[rows]).to(device)

        def noisy_features(waves: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return pipeline(waves, labels, generator=generator)

        def ready(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return feats, labels

        raw = dict(lake.read_table(VALIDATED_METADATA).select("audio_sha256", "raw_uri").rows())
        files = [root / raw[s] for s in recordings.get_column("audio_sha256")]
        offsets = recordings.get_column("sample_offset").to_numpy()
        transform = config.build_transform()

        class V1(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
            def __len__(self) -> int:
                return len(windows)

            def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
                recording = int(windows.recording[i])
                audio, rate = sf.read(str(files[recording]), dtype="float32")
                if audio.ndim == 2:
                    audio = audio.mean(axis=1)
                wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16_000)
                start = int(windows.start[i] - offsets[recording])
                piece = torch.zeros(windows.window_samples)
                chunk = wave[start : start + windows.window_samples]
                piece[: chunk.shape[0]] = chunk
                features = transform(piece).T[:400]
                return features, torch.tensor(float(windows.labels[i]))

        loader = iter(
            torch.utils.data.DataLoader(
                V1(),
                batch_size=30,
                sampler=torch.utils.data.RandomSampler(
                    V1(),
                    replacement=True,
                    num_samples=30 * (args.steps + 2),
                    generator=torch.Generator().manual_seed(0),
                ),
            )
        )

        def v1() -> tuple[torch.Tensor, torch.Tensor]:
            feats, labels = next(loader)
            return feats.to(device), labels.to(device)

        print(
            f"{len(windows)} windows, {args.steps} steps of 30 on {device}, "
            f"{torch.get_num_threads()} threads"
        )
        print("| data path | windows/s | waiting for data | noise + MFCC | model step |")
        print("|---|---|---|---|---|")
        run(v1, ready, "SPIRA-v1 style: decode + resample + MFCC per item (baseline)")
        run(ours, noisy_features, "waveform store, noise + MFCC on the device")


if __name__ == "__main__":
    main()
