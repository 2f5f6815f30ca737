"""The training step's speed settings (ml/speed.py): bf16 where the CPU has it, recorded in the
lineage, fp32 for the published profile and for reproductions of fp32 models; the fast dropout
masks are Bernoulli(1 - p) and seeded; the fast pooling equals PyTorch's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from spira_assets.features.config import FeatureConfig
from spira_assets.ml import speed as speed_module
from spira_assets.ml.model import SpiraConv, _PairMax
from spira_assets.ml.protocol import PLATFORM, PROFILES, SPIRA_ACL2021
from spira_assets.ml.speed import FastDropout, TrainingSpeed, supported_precision, training_speed
from spira_assets.ml.train import train
from spira_assets_tests.test_ml import FAST, noise_bank, windows_by_split

CPU = torch.device("cpu")


def test_precision_is_detected_at_run_time_and_fp32_where_the_profile_or_cpu_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    native = speed_module.cpu_supports_bf16()
    fast = training_speed(PROFILES[PLATFORM], CPU)
    assert fast.precision == ("bf16" if native else "fp32")
    assert fast.dropout == "pcg64"
    published = training_speed(PROFILES[SPIRA_ACL2021], CPU)
    assert (published.precision, published.dropout) == ("fp32", "torch")
    assert training_speed(PROFILES[PLATFORM], CPU, fast=False).precision == "fp32"
    # a record without settings (a model trained before them) is reproduced in fp32
    assert training_speed(PROFILES[PLATFORM], CPU, recorded={}).record() == {
        "precision": "fp32",
        "dropout": "torch",
        "device_type": "cpu",
        "version": "none",
    }
    # planted: a CPU without native bf16 trains in fp32 (emulated bf16 is slower than fp32)
    monkeypatch.setattr(speed_module, "cpu_supports_bf16", lambda: False)
    assert supported_precision(CPU) == "fp32"
    assert training_speed(PROFILES[PLATFORM], CPU).precision == "fp32"


def test_each_seed_records_its_step_settings_and_the_published_profile_stays_fp32(
    materialized_root: Path,
) -> None:
    sets = windows_by_split(materialized_root)
    bank = noise_bank(materialized_root)
    config = dataclasses.replace(FAST, max_epochs=1)
    fast = train(sets["train"], sets["validation"], FeatureConfig(), bank, config, 3, CPU)
    assert fast.speed == training_speed(config, CPU).record()
    assert fast.speed["precision"] == supported_precision(CPU)
    exact = dataclasses.replace(config, mixed_precision=False)
    fp32 = train(sets["train"], sets["validation"], FeatureConfig(), bank, exact, 3, CPU)
    assert fp32.speed["precision"] == "fp32" and fp32.speed["dropout"] == "torch"
    # the recorded settings given back (a reproduction) give the same weights
    again = train(
        sets["train"], sets["validation"], FeatureConfig(), bank, config, 3, CPU, None,
        training_speed(config, CPU, recorded=fast.speed),
    )  # fmt: skip
    for name, value in fast.state_dict.items():
        assert torch.equal(value, again.state_dict[name]), name
    assert any(not torch.equal(v, fp32.state_dict[k]) for k, v in fast.state_dict.items())


def test_the_champions_lineage_names_its_precision(champion_root: Path) -> None:
    (folder,) = [p for p in (champion_root / "models").iterdir() if (p / "lineage.json").exists()]
    lineage = json.loads((folder / "lineage.json").read_text())
    assert lineage["training_speed"]["precision"] == supported_precision(CPU)
    assert (
        json.loads((folder / "summary.json").read_text())["precision"]
        == (lineage["training_speed"]["precision"])
    )


def test_fast_dropout_keeps_one_minus_p_scaled_and_is_seeded() -> None:
    x = torch.ones(400_000)
    layer = FastDropout(0.7, seed=1)
    out = layer(x)
    kept = out != 0
    assert abs(float(kept.float().mean()) - 0.3) < 0.005
    assert torch.equal(out[kept], torch.full_like(out[kept], 1 / 0.3))
    assert torch.equal(FastDropout(0.7, seed=1)(x), out)  # seeded
    assert not torch.equal(FastDropout(0.7, seed=2)(x), out)
    layer.eval()
    assert torch.equal(layer(x), x)
    # the model's weights are unchanged by the swap: the same state dict keys and values
    model = SpiraConv()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    TrainingSpeed("fp32", "pcg64").prepare(model, seed=4)
    assert sum(isinstance(m, FastDropout) for m in model.modules()) == 5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(type(m) is nn.Dropout for m in model.modules())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_pooling_gives_pytorchs_values_and_gradients(dtype: torch.dtype) -> None:
    torch.manual_seed(11)
    x = torch.randn(3, 4, 11, 5).round().to(dtype)  # ties, odd length
    x[1, 2, 3:5, 0] = float("nan")
    x[2, 0, 6, 4] = float("nan")
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(3, 4, 5, 5, dtype=dtype)
    fast, slow = _PairMax.apply(ours), nn.functional.max_pool2d(theirs, kernel_size=(2, 1))
    torch.testing.assert_close(fast, slow, rtol=0, atol=0, equal_nan=True)
    fast.backward(upstream)
    slow.backward(upstream)
    assert ours.grad is not None and theirs.grad is not None
    assert torch.equal(ours.grad, theirs.grad)
