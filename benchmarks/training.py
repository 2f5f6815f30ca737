"""Training benchmark (not a test): SPIRA-v1's training step against ours, CPU.

    .venv/bin/python benchmarks/training.py [--participants 12] [--steps 6] [--repeats 4]

Three training steps on the same recordings (one demo batch), the same SpiraConv, the same
batches of 5 recordings with every window of each (SPIRA's ``batch_size: 5``), Adam, in one run:
  - spira_v1: SPIRA-v1's own data path (``benchmarks/spira_v1.py``: decode, resample, noise
    files decoded per slice and an MFCC per window in ``__getitem__``, a DataLoader with
    ``--v1-workers`` worker processes), then the fp32 model step;
  - fp32: today's step of ``spira_model`` on the platform profile in fp32 (``precision="fp32"``,
    as the published profile and exact reproduction train): waveforms from the memory-mapped
    16 kHz store, noise into whole recordings, one MFCC per recording, windows cut from frames;
  - fast: the same step with the settings ``spira_model`` now trains the platform profile with
    (``ml/speed.py``: the precision detected on this CPU, the dropout masks drawn in parallel).
The variants take turns (``--repeats`` rounds of ``--steps`` steps each, the first round a
warm-up), so load from other work on the machine falls on all three alike; each figure is the
median over rounds. The last line is
``train_windows_per_s=<fast> vs_spira_v1=<fast/v1> vs_fp32=<fast/fp32> precision=<p>``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

os.environ.setdefault(
    "SPIRA_PSEUDONYM_KEY", "7301ed516a9bfe63f2f9f281dc3de485c3a70aeb2036e65f1ad153b97ec7f2e4"
)

Batch = tuple["torch.Tensor", "torch.Tensor"]  # noqa: F821


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--steps", type=int, default=6, help="steps per variant and round")
    parser.add_argument("--repeats", type=int, default=4, help="rounds (the first: warm-up)")
    parser.add_argument("--v1-workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import dagster as dg
    import numpy as np
    import spira_v1  # benchmarks/, beside this script
    import torch

    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.features.augment import NoiseBank
    from spira_assets.features.config import FeatureConfig
    from spira_assets.layout import DataLayout
    from spira_assets.ml.data import build_recordings
    from spira_assets.ml.model import SpiraConv
    from spira_assets.ml.protocol import PLATFORM, PROFILES
    from spira_assets.ml.speed import TrainingSpeed, training_speed
    from spira_assets.ml.train import Noise, recording_windows
    from spira_assets.runner import materialize_batch, materialize_shared
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.shards import open_shard
    from spira_assets.storage.tables import AUDIO_16K, HOSPITAL_NOISE, VALIDATED_METADATA

    device = torch.device(args.device)
    features = FeatureConfig()
    config = replace(PROFILES[PLATFORM], batch_size=5)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        generate_corpus(
            DemoSpec(root / "landing", 1, args.participants, seed=5, defect_rate=0.0, noise_files=4)
        )
        os.environ["SPIRA_DATA_DIR"] = str(root)
        layout = DataLayout.from_location(root)
        instance = dg.DagsterInstance.ephemeral()
        assert materialize_shared(instance).ok
        assert materialize_batch(instance, layout, "demo-001").ok
        lake = Lake(layout.lake)
        recordings = lake.read_table(AUDIO_16K)
        store = build_recordings(recordings, root)
        noise_table = lake.read_table(HOSPITAL_NOISE)
        bank = NoiseBank.from_int16(
            open_shard(root / noise_table.get_column("shard")[0], np.int16),
            noise_table.select("sample_offset", "samples").rows(),
            device,
        )
        raw = dict(lake.read_table(VALIDATED_METADATA).select("audio_sha256", "raw_uri").rows())
        files = [root / raw[s] for s in recordings.get_column("audio_sha256")]
        noise_files = sorted((root / "landing" / "noise").iterdir())
        rows = [r for r in range(len(store)) if spira_v1.usable(int(store.samples[r]))]
        rng = np.random.default_rng(0)
        rounds = [
            [[int(r) for r in rng.choice(rows, 5, replace=False)] for _ in range(args.steps)]
            for _ in range(args.repeats)
        ]
        v1_data = spira_v1.SpiraV1Dataset(files, [int(x) for x in store.labels], noise_files)

        def ours() -> Callable[[list[int]], Batch]:
            featurizer = config.featurizer(features, device)
            draws = random.Random(0)
            noise = Noise(bank, config.augment, lambda rows: [draws] * len(rows))

            def batch(rows: list[int]) -> Batch:
                windows, owners = recording_windows(store, rows, featurizer, device, noise)
                labels = torch.from_numpy(store.labels[rows][owners]).to(device)
                return windows, labels

            return batch

        class Variant:
            def __init__(self, label: str, frames: int, speed: TrainingSpeed, scaled: bool):
                torch.manual_seed(0)
                self.label, self.speed = label, speed
                model = SpiraConv(frames, features.n_features, "group", 0.7, scaled).to(device)
                self.model = speed.prepare(model)
                self.optimizer = torch.optim.Adam(
                    self.model.parameters(), lr=1e-3, weight_decay=0.01
                )
                self.rates: list[float] = []
                self.shares: list[float] = []

            def batches(self, recordings: list[list[int]]) -> object:
                make = ours()
                return (make(r) for r in recordings)

            def round(self, recordings: list[list[int]], keep: bool) -> None:
                loss_fn = torch.nn.BCEWithLogitsLoss()
                started = time.perf_counter()
                source = iter(self.batches(recordings))  # type: ignore[call-overload]
                waiting = 0.0
                count = 0
                for _ in recordings:
                    t0 = time.perf_counter()
                    feats, targets = next(source)
                    waiting += time.perf_counter() - t0
                    with self.speed.autocast():
                        loss = loss_fn(self.model(feats).float(), targets.float().flatten())
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    count += int(feats.shape[0])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - started
                if keep:
                    self.rates.append(count / elapsed)
                    self.shares.append(waiting / elapsed)

        class V1(Variant):
            def batches(self, recordings: list[list[int]]) -> object:
                # a new iterator each round, as SPIRA's each epoch: its workers start in it
                return (
                    (f.to(device), t.to(device))
                    for f, t in spira_v1.loader(v1_data, recordings, args.v1_workers)
                )

        fp32 = training_speed(config, device, fast=False)
        fast = training_speed(config, device)
        variants = [
            V1("spira_v1", 401, fp32, scaled=False),
            Variant("fp32", 400, fp32, scaled=True),
            Variant("fast", 400, fast, scaled=True),
        ]
        load = os.getloadavg()
        for index, recordings_of_round in enumerate(rounds):
            for variant in variants:
                variant.round(recordings_of_round, keep=index > 0)
        after = os.getloadavg()
        print(
            f"{len(rows)} recordings, {args.repeats - 1} rounds of {args.steps} steps "
            f"(+1 warm-up), batches of 5 recordings, {device}, {torch.get_num_threads()} "
            f"threads, v1 workers {args.v1_workers}; load average 1 min before {load[0]:.2f}, "
            f"after {after[0]:.2f}; fast: {fast.describe()}"
        )
        print("| step | windows/s, median (min-max) | waiting for data |")
        print("|---|---|---|")
        for v in variants:
            print(
                f"| {v.label} | {statistics.median(v.rates):.1f} ({min(v.rates):.1f}-"
                f"{max(v.rates):.1f}) | {statistics.median(v.shares):.1%} |"
            )
        rate = {v.label: statistics.median(v.rates) for v in variants}
        print(
            f"train_windows_per_s={rate['fast']:.1f} "
            f"vs_spira_v1={rate['fast'] / rate['spira_v1']:.2f} "
            f"vs_fp32={rate['fast'] / rate['fp32']:.2f} precision={fast.precision}"
        )


if __name__ == "__main__":
    main()
