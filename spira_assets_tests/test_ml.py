"""Model, split, training loop and artefacts (core, no Dagster except the shared fixture)."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from upath import UPath

from spira_assets.features.augment import NoiseBank
from spira_assets.features.augment_config import AugmentConfig
from spira_assets.features.config import FeatureConfig
from spira_assets.ml.artifacts import load_exported, load_model, model_config, save_model_version
from spira_assets.ml.data import RecordingSet, build_recordings
from spira_assets.ml.metrics import auroc, defined_or_none, spread_of_defined
from spira_assets.ml.model import SpiraConv, TimePool
from spira_assets.ml.split import SplitConfig, assign_splits, split_of
from spira_assets.ml.train import TrainingDivergedError, noam, train
from spira_assets.ml.train_config import TrainConfig
from spira_assets.storage.lake import Lake
from spira_assets.storage.shards import open_shard
from spira_assets.storage.tables import AUDIO_16K, HOSPITAL_NOISE

FAST = TrainConfig(
    warmup_steps=5,
    max_epochs=3,
    patience=3,
    batch_size=2,
    dropout=0.3,
    augment=AugmentConfig(k_control=1, k_patient=1),
)


def windows_by_split(root: Path) -> dict[str, RecordingSet]:
    """All participants, alternately assigned, so both sets hold both classes."""
    recordings = Lake(UPath(root / "lake")).read_table(AUDIO_16K).sort("participant", "utterance")
    people = recordings.select("participant", "label").unique().sort("label", "participant")
    chosen = {
        p: ("validation" if i % 3 == 0 else "train") for i, (p, _) in enumerate(people.iter_rows())
    }
    recordings = recordings.with_columns(
        pl.col("participant").replace_strict(chosen).alias("split")
    )
    return {
        s: build_recordings(recordings.filter(pl.col("split") == s), root)
        for s in ("train", "validation")
    }


def noise_bank(root: Path) -> NoiseBank:
    noise = Lake(UPath(root / "lake")).read_table(HOSPITAL_NOISE)
    spans = noise.select("sample_offset", "samples").rows()
    return NoiseBank.from_int16(open_shard(root / noise.get_column("shard")[0], np.int16), spans)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_spiraconv_matches_the_published_architecture(norm: str) -> None:
    model = SpiraConv(norm=norm)  # type: ignore[arg-type]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.dilation) for c in convs] == [
        (1, 32, (7, 1), (2, 1)),
        (16 * 2, 16, (5, 1), (2, 1)),
        (16, 8, (3, 1), (2, 1)),
        (8, 4, (2, 1), (1, 1)),
    ]
    norms = [
        m for m in model.modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d))
    ]
    if norm == "group":
        assert [n.num_groups for n in norms] == [16, 8, 4, 2]  # type: ignore[union-attr]
    assert all(d.p == 0.7 for d in model.modules() if isinstance(d, torch.nn.Dropout))
    assert model(torch.randn(2, 400, 40)).shape == (2,)


def _with_pytorch_pooling(model: SpiraConv) -> SpiraConv:
    """A copy of ``model`` whose time pooling is PyTorch's own ``nn.MaxPool2d``."""
    reference = copy.deepcopy(model)
    for block in reference.conv:
        for i, layer in enumerate(block):  # type: ignore[arg-type]
            if isinstance(layer, TimePool):
                block[i] = torch.nn.MaxPool2d(kernel_size=(2, 1))  # type: ignore[index]
    return reference


def test_time_pooling_equals_pytorchs_max_pool_with_and_without_autograd() -> None:
    """The fast pooling must give MaxPool2d's outputs bit for bit without autograd, and its
    gradients with autograd (training must not change): planted ties, NaN, odd lengths."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 9, 4).round()  # rounded: many exactly equal pairs of frames
    x[0, 0, 0:2, 0] = float("nan")
    x[0, 1, 4, 1] = float("nan")
    reference = torch.nn.MaxPool2d(kernel_size=(2, 1))
    with torch.no_grad():
        fast, slow = TimePool()(x), reference(x)
    assert fast.shape == slow.shape == (2, 3, 4, 4)  # the odd last frame dropped
    torch.testing.assert_close(fast, slow, rtol=0, atol=0, equal_nan=True)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(2, 3, 4, 4)
    TimePool()(ours).backward(upstream)
    reference(theirs).backward(upstream)
    assert ours.grad is not None and theirs.grad is not None
    assert torch.equal(ours.grad, theirs.grad)  # ties: the first frame gets the gradient

    model = SpiraConv(dropout=0.3)
    slow_model = _with_pytorch_pooling(model)
    assert list(model.state_dict()) == list(slow_model.state_dict())  # saved weights load alike
    features = torch.randn(8, 400, 40)
    model.eval()
    slow_model.eval()
    with torch.inference_mode():
        assert torch.equal(model(features), slow_model(features))
    model.train()
    slow_model.train()
    for net in (model, slow_model):
        torch.manual_seed(5)  # the same dropout masks
        net(features).sum().backward()
    for (name, ours_p), (_, theirs_p) in zip(
        model.named_parameters(), slow_model.named_parameters(), strict=True
    ):
        assert ours_p.grad is not None and theirs_p.grad is not None
        assert torch.equal(ours_p.grad, theirs_p.grad), name


def test_noam_schedule_warms_up_then_decays() -> None:
    factor = noam(100)
    assert factor(0) < factor(50) < factor(99) == pytest.approx(1.0)
    assert factor(399) == pytest.approx(0.5, rel=0.01)


def _recordings(first: int, last: int, batch: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "participant": [f"P-{i:016x}" for i in range(first, last)],
            "audio_sha256": [f"{i:064x}" for i in range(first, last)],
            "label": [i % 2 for i in range(first, last)],
            "batch_id": [batch] * (last - first),
            "speaker_grouping": ["participant_id"] * (last - first),
        }
    )


def test_split_is_stable_as_batches_arrive() -> None:
    config = SplitConfig()
    first = _recordings(0, 200, "b1")
    later = pl.concat([first, _recordings(150, 400, "b2")])
    before = dict(assign_splits(first, config).select("participant", "split").rows())
    after = dict(assign_splits(later, config).select("participant", "split").rows())
    assert all(after[p] == s for p, s in before.items())
    shares = pl.Series(list(after.values())).value_counts(normalize=True)
    test_share = shares.filter(pl.col("") == "test").get_column("proportion").item()
    assert 0.12 < test_share < 0.28
    assert split_of("P-x", config) == split_of("P-x", dataclasses.replace(config))


def test_auroc_handles_ties_and_single_class() -> None:
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_seed_spread_skips_undefined_aurocs_without_numpy_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would raise here
        assert spread_of_defined(np.array([np.nan, np.nan])) == (None, None, 2)
        mean, std, undefined = spread_of_defined(np.array([0.8, np.nan, 0.6]))
    assert mean == pytest.approx(0.7) and std == pytest.approx(0.1) and undefined == 1
    assert spread_of_defined(np.array([0.9])) == (0.9, 0.0, 0)
    assert defined_or_none(float("nan")) is None and defined_or_none(0.5) == 0.5


def test_tiny_corpus_trains_and_validation_loss_falls(materialized_root: Path) -> None:
    sets = windows_by_split(materialized_root)
    result = train(
        sets["train"],
        sets["validation"],
        FeatureConfig(),
        noise_bank(materialized_root),
        FAST,
        seed=42,
        device=torch.device("cpu"),
    )
    # 21 training recordings: it learns (and soon overfits, which the kept checkpoint absorbs)
    assert result.history[-1].train_loss < result.history[0].train_loss / 2
    assert result.best.val_auroc > 0.6
    assert all(np.isfinite(e.val_auroc) for e in result.history)


def test_same_seed_gives_identical_weights_on_cpu(materialized_root: Path) -> None:
    sets = windows_by_split(materialized_root)
    config = dataclasses.replace(FAST, max_epochs=1)
    bank = noise_bank(materialized_root)
    runs = [
        train(
            sets["train"], sets["validation"], FeatureConfig(), bank, config, 7, torch.device("cpu")
        )
        for _ in range(2)
    ]
    other = train(
        sets["train"], sets["validation"], FeatureConfig(), bank, config, 8, torch.device("cpu")
    )
    for key, value in runs[0].state_dict.items():
        assert torch.equal(value, runs[1].state_dict[key]), key
    assert any(not torch.equal(v, other.state_dict[k]) for k, v in runs[0].state_dict.items())


def test_exploding_loss_aborts_with_a_clear_error(materialized_root: Path) -> None:
    sets = windows_by_split(materialized_root)
    config = dataclasses.replace(FAST, max_loss=0.0)
    with pytest.raises(TrainingDivergedError, match="seed 1, epoch 1, step 1"):
        train(
            sets["train"], sets["validation"], FeatureConfig(), None, config, 1, torch.device("cpu")
        )


def test_exported_and_reloaded_models_give_the_trained_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SpiraConv(scaled=True).eval()
    # the training statistics travel in the weights and the exported program
    assert model.scale is not None
    model.scale.set(torch.randn(40) * 50, torch.rand(40) * 20 + 1)
    config = model_config(FeatureConfig(), TrainConfig(), 400)
    directory = save_model_version(tmp_path / "v1", model.state_dict(), config, {"seed": 0}, {})
    features = torch.randn(3, 400, 40)
    expected = model(features)
    torch.testing.assert_close(load_model(directory)(features), expected)
    torch.testing.assert_close(load_exported(directory)(features), expected)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_runs_on_cuda(materialized_root: Path) -> None:
    sets = windows_by_split(materialized_root)
    result = train(
        sets["train"],
        sets["validation"],
        FeatureConfig(),
        noise_bank(materialized_root),
        dataclasses.replace(FAST, max_epochs=1),
        42,
        torch.device("cuda"),
    )
    assert result.device.startswith("cuda") and np.isfinite(result.best_val_loss)
