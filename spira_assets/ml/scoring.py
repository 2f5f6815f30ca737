"""A model version under test: scored through its own recorded settings and data.

Each model carries what it was trained with: its split (``split.parquet``), window length and
hop, feature configuration, threshold and hospital-noise set (``lineage.json``). Evaluating a
model with *today's* split or noise would test the champion on people it trained on after a
change of split shares, or on noise it never met; everything here reads the model's own record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from spira_assets.features.augment import AugmentedFeatures, NoiseBank
from spira_assets.features.config import FeatureConfig
from spira_assets.layout import DataLayout
from spira_assets.ml.artifacts import CONFIG, LINEAGE, load_model
from spira_assets.ml.data import WindowSet, build_windows
from spira_assets.ml.inference import THRESHOLD_FILE
from spira_assets.ml.inputs import MODEL_SPLIT_FILE, noise_bank, with_split
from spira_assets.ml.split import SplitConfig, assign_splits
from spira_assets.ml.train import TrainConfig, feature_pipeline, train_config_from, window_scores
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import AUDIO_16K

SUBGROUPS = ("sex", "age_band", "device", "utterance", "batch_id")


class ModelNotEvaluable(RuntimeError):
    """A model version whose recorded inputs needed for scoring are gone."""


def recorded_split(directory: Path, lake: Lake) -> pl.DataFrame:
    """The model's split: ``split.parquet``, or, for a model saved before splits were
    recorded, the split rebuilt from its lineage (recorded batches and split settings)."""
    path = directory / MODEL_SPLIT_FILE
    if path.exists():
        return pl.read_parquet(path)
    lineage_file = directory / LINEAGE
    if not lineage_file.exists():
        raise ModelNotEvaluable(f"{directory} has neither {MODEL_SPLIT_FILE} nor {LINEAGE}")
    lineage = json.loads(lineage_file.read_text())
    recordings = lake.read_table(AUDIO_16K).filter(
        pl.col("batch_id").is_in(sorted(lineage["batches"]))
    )
    if recordings.is_empty():
        raise ModelNotEvaluable(f"none of the batches model {directory.name} was trained on remain")
    if "speaker_grouping" not in recordings.columns:
        recordings = recordings.with_columns(pl.lit(None, pl.String).alias("speaker_grouping"))
    return assign_splits(recordings, SplitConfig(**lineage["split"]))


@dataclass
class ModelUnderTest:
    version: str
    directory: Path
    config: dict[str, Any]
    lineage: dict[str, Any]
    split: pl.DataFrame
    threshold: float

    @classmethod
    def load(cls, layout: DataLayout, lake: Lake, version: str) -> ModelUnderTest:
        directory = layout.fetch_if_present(f"models/{version}")
        missing = [n for n in (CONFIG, LINEAGE) if not (directory / n).exists()]
        if missing:
            raise ModelNotEvaluable(
                f"model {version}: {', '.join(missing)} missing under {directory} (the model "
                "folder was deleted or never published)"
            )
        threshold_file = directory / THRESHOLD_FILE
        if not threshold_file.exists():
            raise ModelNotEvaluable(f"model {version}: {THRESHOLD_FILE} missing")
        return cls(
            version,
            directory,
            json.loads((directory / CONFIG).read_text()),
            json.loads((directory / LINEAGE).read_text()),
            recorded_split(directory, lake),
            float(json.loads(threshold_file.read_text())["threshold"]),
        )

    @property
    def train_config(self) -> TrainConfig:
        return train_config_from(self.config["train"])

    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig(**self.config["features"])

    def noise(self, lake: Lake, layout: DataLayout, device: torch.device) -> NoiseBank | None:
        """The hospital noise this model was trained with (None: it had none, or that noise
        data version is gone; never today's noise instead)."""
        shards = self.lineage.get("noise") or []
        if not shards or not layout.fetch_if_present(shards[0]).exists():
            return None
        return noise_bank(lake, layout, device, shards[0])

    def pipeline(self, bank: NoiseBank | None, device: torch.device) -> AugmentedFeatures:
        return feature_pipeline(
            self.features, bank, self.train_config.augment, self.config["frames"], device
        )

    def windows(self, recordings: pl.DataFrame, root: Path) -> WindowSet:
        config = self.train_config
        return build_windows(recordings, root, config.window_s, config.step_s)

    def test_recordings(self, recordings: pl.DataFrame) -> pl.DataFrame:
        """Today's 16 kHz rows of this model's recorded test split."""
        return with_split(recordings, self.split).filter(pl.col("split") == "test")

    def score(
        self,
        recordings: pl.DataFrame,
        root: Path,
        pipeline: AugmentedFeatures,
        device: torch.device,
        noisy_seed: int | None = None,
    ) -> pl.DataFrame:
        """Window scores of ``recordings`` (participant, recording, label, subgroups, score)."""
        model = load_model(self.directory).to(device)
        windows = self.windows(recordings, root)
        scores = window_scores(model, windows, pipeline, device, 64, noisy_seed=noisy_seed)
        return window_frame(windows, scores)


def window_frame(windows: WindowSet, scores: np.ndarray) -> pl.DataFrame:
    rec = windows.recordings.with_columns(
        pl.when(pl.col("age") < 40)
        .then(pl.lit("18-39"))
        .when(pl.col("age") < 60)
        .then(pl.lit("40-59"))
        .otherwise(pl.lit("60+"))
        .alias("age_band")
    )
    take = rec.select("participant", "audio_sha256", "label", *SUBGROUPS)[windows.recording]
    return take.rename({"audio_sha256": "recording"}).with_columns(pl.Series("score", scores))
