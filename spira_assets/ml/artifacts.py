"""A model version on disk: weights, configuration, exported program, lineage, summary."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import torch

from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.features.config import FeatureConfig
from spira_assets.ml.calibration import CALIBRATION_FILE
from spira_assets.ml.model import SpiraConv
from spira_assets.ml.train_config import TrainConfig
from spira_assets.storage.staging import remove_stale_staging, staging_path

WEIGHTS, CONFIG, EXPORTED, LINEAGE, SUMMARY, SPLIT, THRESHOLD = (
    "weights.pt",
    "model_config.json",
    "model.pt2",
    "lineage.json",
    "summary.json",
    "split.parquet",
    "threshold.json",
)
SEEDS = "seeds"  # every seed's weights, when the protocol keeps them (SPIRA reports each)


def model_config(
    features: FeatureConfig, train: TrainConfig, frames: int, resampler: str = RESAMPLER_VERSION
) -> dict[str, Any]:
    """``resampler``: the version that made the training audio; inference decodes with it."""
    return {
        "frames": frames,
        "resampler": resampler,
        "n_features": features.n_features,
        "norm": train.norm,
        "dropout": train.dropout,
        "input_scaling": train.input_scaling,
        "features": asdict(features),
        "train": asdict(train),
    }


def build_model(config: dict[str, Any]) -> SpiraConv:
    """The network of a saved configuration (one saved before input scaling existed: none)."""
    scaled = config.get("input_scaling", "none") == "train_standardize"
    return SpiraConv(
        config["frames"], config["n_features"], config["norm"], config["dropout"], scaled
    )


def save_model_version(
    directory: Path,
    state: dict[str, torch.Tensor],
    config: dict[str, Any],
    lineage: dict[str, Any],
    summary: dict[str, Any],
    split: pl.DataFrame | None = None,
    threshold: dict[str, Any] | None = None,
    seed_states: dict[int, dict[str, torch.Tensor]] | None = None,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write every artefact to a temporary folder and rename it into place (all or nothing).
    ``split``: the recordings and split the model was trained with (``split.parquet``), so it
    is only ever judged on people it never saw."""
    remove_stale_staging(directory.parent, directory.name)
    tmp = staging_path(directory)
    tmp.mkdir(parents=True)
    try:
        torch.save(state, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        model = build_model(config)
        model.load_state_dict(state)
        model.eval()
        export(model, config["frames"], config["n_features"], tmp / EXPORTED)
        (tmp / LINEAGE).write_text(json.dumps(lineage, indent=2, default=str))
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
        if split is not None:
            split.write_parquet(tmp / SPLIT)
        if threshold is not None:
            (tmp / THRESHOLD).write_text(json.dumps(threshold))
        if calibration is not None:
            (tmp / CALIBRATION_FILE).write_text(json.dumps(calibration))
        for seed, seed_state in (seed_states or {}).items():
            (tmp / SEEDS).mkdir(exist_ok=True)
            torch.save(seed_state, tmp / SEEDS / f"{seed}.pt")
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return directory


def load_model(directory: Path, seed: int | None = None) -> SpiraConv:
    """The trained network (the kept seed, or ``seed``'s when every seed was kept), weights
    loaded with ``weights_only=True`` (no pickled code)."""
    config = json.loads((directory / CONFIG).read_text())
    model = build_model(config)
    weights = directory / WEIGHTS if seed is None else directory / SEEDS / f"{seed}.pt"
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


def kept_seeds(directory: Path) -> list[int]:
    """The seeds whose models were kept beside the best (empty: only the best)."""
    folder = directory / SEEDS
    return sorted(int(p.stem) for p in folder.glob("*.pt")) if folder.is_dir() else []


def export(model: SpiraConv, frames: int, n_features: int, path: Path) -> None:
    """The network as a ``torch.export`` program (any batch size): loadable without our code,
    the successor of the deprecated TorchScript export."""
    example = (torch.zeros(2, frames, n_features),)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, example, dynamic_shapes={"features": {0: batch}})
    torch.export.save(program, str(path))


def load_exported(directory: Path) -> torch.nn.Module:
    """The exported program of a model version, as a callable module."""
    return torch.export.load(str(directory / EXPORTED)).module()
