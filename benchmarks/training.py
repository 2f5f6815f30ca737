"""Training benchmark (not a test): SPIRA-v1's training step against ours, CPU.

    .venv/bin/python benchmarks/training.py [--participants 12] [--steps 16] [--v1-workers 2]

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
The variants take turns step by step, so load from other work on the machine falls on all three
alike: ``--steps`` batches once to warm up (oneDNN builds its kernels for each new batch shape:
a long training run pays that once per shape), then the same batches again, measured.
The last line is
``train_windows_per_s=<fast> vs_spira_v1=<R> vs_fp32=<S> precision=<p>``: the fast step's
windows over seconds, and the median over steps of its rate over the other's on the same
recordings. With ``--v1-workers`` > 0, SPIRA-v1's workers prepare its next batches while the
other two steps run: that favours the baseline (``--v1-workers 0`` counts all its work).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault(
    "SPIRA_PSEUDONYM_KEY", "7301ed516a9bfe63f2f9f281dc3de485c3a70aeb2036e65f1ad153b97ec7f2e4"
)

if TYPE_CHECKING:
    import torch

    Batch = tuple[torch.Tensor, torch.Tensor]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--steps", type=int, default=16, help="measured steps of each")
    parser.add_argument("--v1-workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import dagster as dg
    import numpy as np
    import spira_v1  # benchmarks/, beside this script
    import torch

    from spira_assets.app.runner import materialize_batch, materialize_shared
    from spira_assets.demo.corpus import DemoSpec, generate_corpus
    from spira_assets.features.augment import NoiseBank
    from spira_assets.features.config import FeatureConfig
    from spira_assets.ml.data import build_recordings
    from spira_assets.ml.model import SpiraConv
    from spira_assets.ml.protocol import PLATFORM, PROFILES
    from spira_assets.ml.speed import TrainingSpeed, training_speed
    from spira_assets.ml.train import Noise, recording_windows
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.layout import DataLayout
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
        plan = [[int(r) for r in rng.choice(rows, 5, replace=False)] for _ in range(args.steps)]
        # the same batches twice: the first pass warms up (oneDNN builds a kernel for each new
        # batch shape, which a long training run pays once per shape), the second is measured
        plan = plan + plan
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
                self.windows: list[int] = []
                self.seconds: list[float] = []
                self.waiting: list[float] = []

            def batches(self, recordings: list[list[int]]) -> Iterator[Batch]:
                make = ours()
                return (make(r) for r in recordings)

            def start(self, recordings: list[list[int]]) -> None:
                self.source = iter(self.batches(recordings))
                self.loss_fn = torch.nn.BCEWithLogitsLoss()

            def step(self, keep: bool) -> None:
                t0 = time.perf_counter()
                feats, targets = next(self.source)
                t1 = time.perf_counter()
                with self.speed.autocast():
                    loss = self.loss_fn(self.model(feats).float(), targets.float().flatten())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                if keep:
                    self.windows.append(int(feats.shape[0]))
                    self.seconds.append(t2 - t0)
                    self.waiting.append(t1 - t0)

            def rate(self) -> float:
                return sum(self.windows) / sum(self.seconds)

            def per_step(self) -> list[float]:
                return [w / t for w, t in zip(self.windows, self.seconds, strict=True)]

        class V1(Variant):
            def batches(self, recordings: list[list[int]]) -> Iterator[Batch]:
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
        for variant in variants:
            variant.start(plan)
        for index in range(len(plan)):  # one step of each in turn
            for variant in variants:
                variant.step(keep=index >= args.steps)
        after = os.getloadavg()
        print(
            f"{len(rows)} recordings, {args.steps} steps each (after the same {args.steps} to "
            "warm up), "
            f"taking turns step by step, batches of 5 recordings, {device}, "
            f"{torch.get_num_threads()} threads, v1 workers {args.v1_workers}; load average "
            f"(1 min) {load[0]:.2f} before, {after[0]:.2f} after; fast: {fast.describe()}"
        )
        base = {v.label: v.per_step() for v in variants}

        def paired(label: str, other: str) -> float:
            """Median over steps of the ratio of two steps run back to back on the same
            recordings: robust to load that changes during the run."""
            return statistics.median(a / b for a, b in zip(base[label], base[other], strict=True))

        print("| step | windows/s (all steps) | per step: median (min-max) | waiting for data |")
        print("|---|---|---|---|")
        for v in variants:
            steps = base[v.label]
            print(
                f"| {v.label} | {v.rate():.1f} | {statistics.median(steps):.1f} "
                f"({min(steps):.1f}-{max(steps):.1f}) | {sum(v.waiting) / sum(v.seconds):.1%} |"
            )
        rates = {v.label: v.rate() for v in variants}
        print(
            f"aggregate ratios: fast/spira_v1 {rates['fast'] / rates['spira_v1']:.2f}, "
            f"fast/fp32 {rates['fast'] / rates['fp32']:.2f}, "
            f"fp32/spira_v1 {rates['fp32'] / rates['spira_v1']:.2f}"
        )
        print(
            f"train_windows_per_s={rates['fast']:.1f} "
            f"vs_spira_v1={paired('fast', 'spira_v1'):.2f} "
            f"vs_fp32={paired('fast', 'fp32'):.2f} precision={fast.precision}"
        )


if __name__ == "__main__":
    main()
