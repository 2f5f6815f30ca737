"""Training benchmark (not a test): throughput and time spent waiting for data, CPU.

    .venv/bin/python benchmarks/training.py [--participants 12] [--steps 20]

Feeds the same SpiraConv training step (noise insertion, MFCC, forward, backward, Adam) from
three data paths, measured in the same run:
  - SPIRA-v1 style (baseline): a Dataset whose __getitem__ decodes the file, resamples and
    computes the MFCC of a window (no noise), through a DataLoader, batches of 30 windows;
  - ours, platform profile: batches of 8 recordings from the memory-mapped 16 kHz store, noise
    into each whole recording, one MFCC per recording, windows cut from its frames;
  - ours, spira-acl2021 profile: batches of 5 recordings, noise into each whole recording, one
    MFCC per window slice (as published).
Reports windows/s and the share of step time spent waiting for the next batch on the host
(v1: decoding and MFCC inside the loader; ours: slicing the memory map), computing noise + MFCC
(ours, on the device), and in the model step. On a CUDA
machine pass --device cuda to get the device-busy share (not measured here: no GPU).
"""

from __future__ import annotations

import argparse
import os
import random
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
    from spira_assets.features.augment import NoiseBank
    from spira_assets.features.config import FeatureConfig
    from spira_assets.features.windows import sample_window_starts
    from spira_assets.layout import DataLayout
    from spira_assets.ml.data import build_recordings
    from spira_assets.ml.model import SpiraConv
    from spira_assets.ml.protocol import PLATFORM, PROFILES, SPIRA_ACL2021
    from spira_assets.ml.train import Noise, recording_windows
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
        store = build_recordings(recordings, root)
        noise = lake.read_table(HOSPITAL_NOISE)
        bank = NoiseBank.from_int16(
            open_shard(root / noise.get_column("shard")[0], np.int16),
            noise.select("sample_offset", "samples").rows(),
            device,
        )
        # every (recording, start) window under the platform rule: the v1 baseline's items
        items = [
            (r, start)
            for r in range(len(store))
            for start in sample_window_starts(int(store.samples[r]), 64_000, 16_000, "platform")
        ]

        def run(next_batch: object, make_features: object, label: str, frames: int) -> None:
            torch.manual_seed(0)
            model = SpiraConv(frames).to(device)
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
                loss = loss_fn(model(feats), targets.float())
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
        noise_rng = random.Random(0)

        def recordings_of(profile: str) -> object:
            size = PROFILES[profile].batch_size
            return lambda: ([int(r) for r in rng.integers(0, len(store), size)],)

        def noisy_windows(profile: str) -> object:
            train = PROFILES[profile]
            featurizer = train.featurizer(config, device)
            noise = Noise(bank, train.augment, lambda rows: [noise_rng] * len(rows))

            def make(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
                windows, owners = recording_windows(store, rows, featurizer, device, noise)
                return windows, torch.from_numpy(store.labels[rows][owners]).to(device)

            return make

        def ready(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return feats, labels

        raw = dict(lake.read_table(VALIDATED_METADATA).select("audio_sha256", "raw_uri").rows())
        files = [root / raw[s] for s in recordings.get_column("audio_sha256")]
        transform = config.build_transform()

        class V1(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
            def __len__(self) -> int:
                return len(items)

            def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
                recording, start = items[i]
                audio, rate = sf.read(str(files[recording]), dtype="float32")
                if audio.ndim == 2:
                    audio = audio.mean(axis=1)
                wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16_000)
                piece = torch.zeros(64_000)
                chunk = wave[start : start + 64_000]
                piece[: chunk.shape[0]] = chunk
                features = transform(piece).T[:400]
                return features, torch.tensor(float(store.labels[recording]))

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
            f"{len(store)} recordings, {len(items)} windows, {args.steps} steps on {device}, "
            f"{torch.get_num_threads()} threads"
        )
        print("| data path | windows/s | waiting for data | noise + MFCC | model step |")
        print("|---|---|---|---|---|")
        run(v1, ready, "SPIRA-v1 style: decode + resample + MFCC per item (baseline)", 400)
        run(
            recordings_of(PLATFORM),
            noisy_windows(PLATFORM),
            "platform: 8 recordings, noise per recording, one MFCC per recording",
            400,
        )
        run(
            recordings_of(SPIRA_ACL2021),
            noisy_windows(SPIRA_ACL2021),
            "spira-acl2021: 5 recordings, noise per recording, one MFCC per window",
            401,
        )


if __name__ == "__main__":
    main()
