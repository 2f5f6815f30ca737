"""A model version under test: scored through its own recorded settings and data.

Each model carries what it was trained with: its split (``split.parquet``), window length and
hop, feature configuration, threshold and hospital-noise set (``lineage.json``). Evaluating a
model with *today's* split or noise would test the champion on people it trained on after a
change of split shares, or on noise it never met; everything here reads the model's own record.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from spira_assets.features.augment import NoiseBank
from spira_assets.features.augment_config import AugmentConfig
from spira_assets.features.config import FeatureConfig
from spira_assets.features.featurizer import Featurizer
from spira_assets.ml.artifacts import CONFIG, LINEAGE, SPLIT, load_model
from spira_assets.ml.calibration import Calibration, load_calibration
from spira_assets.ml.data import RecordingSet, build_recordings, with_stored_frames
from spira_assets.ml.inference import THRESHOLD_FILE
from spira_assets.ml.inputs import noise_bank, stored_features, with_split
from spira_assets.ml.protocol import PUBLISHED_NOISY_TEST
from spira_assets.ml.train import Noise, window_scores
from spira_assets.ml.train_config import TrainConfig, train_config_from
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout

SUBGROUPS = ("sex", "age_band", "device", "utterance", "batch_id")


class ModelNotEvaluable(RuntimeError):
    """A model version whose recorded inputs needed for scoring are gone."""


# What a model is scored with, all from its own folder
RECORD = (CONFIG, LINEAGE, SPLIT, THRESHOLD_FILE)


@dataclass
class ModelUnderTest:
    version: str
    directory: Path
    config: dict[str, Any]
    lineage: dict[str, Any]
    split: pl.DataFrame
    threshold: float
    calibration: Calibration = field(default_factory=Calibration)

    @classmethod
    def load(cls, layout: DataLayout, lake: Lake, version: str) -> ModelUnderTest:
        """The model's own record, every file of it: a missing split or configuration is never
        rebuilt from today's data (today's split may put the model's training people in its
        test set); the error names each missing file."""
        directory = layout.fetch_if_present(f"models/{version}")
        missing = [n for n in RECORD if not (directory / n).exists()]
        if missing:
            raise ModelNotEvaluable(
                f"model {version}: {', '.join(missing)} missing under {directory}: the model is "
                "judged only with its own recorded split and configuration, never with ones "
                "rebuilt from today's data (restore the files or retrain the model)"
            )
        return cls(
            version,
            directory,
            json.loads((directory / CONFIG).read_text()),
            json.loads((directory / LINEAGE).read_text()),
            pl.read_parquet(directory / SPLIT),
            float(json.loads((directory / THRESHOLD_FILE).read_text())["threshold"]),
            load_calibration(directory),
        )

    @property
    def train_config(self) -> TrainConfig:
        return train_config_from(self.config["train"])

    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig(**self.config["features"])

    def featurizer(self, device: torch.device) -> Featurizer:
        return self.train_config.featurizer(self.features, device)

    def noise(self, lake: Lake, layout: DataLayout, device: torch.device) -> NoiseBank | None:
        """The hospital noise this model was trained with (None: it had none, or that noise
        data version is gone; never today's noise instead)."""
        shards = self.lineage.get("noise") or []
        if not shards or not layout.fetch_if_present(shards[0]).exists():
            return None
        spans = [(int(o), int(n)) for o, n in self.lineage.get("noise_files") or []] or None
        return noise_bank(lake, layout, device, shards[0], spans)

    def recordings(
        self, recordings: pl.DataFrame, root: Path, lake: Lake, layout: DataLayout
    ) -> RecordingSet:
        """``recordings`` (audio_16k rows) over their shards, in list order (batch, metadata
        row), with their clean frames from the feature store when this model transforms whole
        recordings and the store holds its feature configuration."""
        ordered = recordings.sort("batch_id", "row_number", "audio_sha256")
        chosen = build_recordings(ordered, root)
        if self.train_config.transform_unit != "recording":
            return chosen
        index = stored_features(lake, layout, self.features.config_hash())
        if index is None:
            return chosen
        return with_stored_frames(chosen, index, layout.local_root, self.features.n_features)

    def test_recordings(self, recordings: pl.DataFrame) -> pl.DataFrame:
        """Today's 16 kHz rows of this model's recorded test split."""
        return with_split(recordings, self.split).filter(pl.col("split") == "test")

    def score(
        self,
        recordings: RecordingSet,
        device: torch.device,
        noise: Noise | None = None,
        seed: int | None = None,
    ) -> pl.DataFrame:
        """Window scores (participant, recording, label, subgroups, score) of the kept model,
        or of ``seed``'s model when every seed was kept. Recordings with no window under the
        model's window rule have no rows."""
        model = load_model(self.directory, seed).to(device)
        scores, owners = window_scores(
            model, recordings, self.featurizer(device), device, 64, noise
        )
        return window_frame(recordings.recordings, owners, scores)


def per_recording_noise(
    bank: NoiseBank, config: AugmentConfig, recordings: RecordingSet, salt: int
) -> Noise:
    """Fixed noise per recording (seeded by its content and ``salt``), the same whatever the
    batching, the device or the other recordings."""
    shas = recordings.recordings.get_column("audio_sha256").to_list()
    return Noise(bank, config, lambda rows: [random.Random(f"{salt}:{shas[r]}") for r in rows])


def published_noise(bank: NoiseBank, recordings: RecordingSet) -> Noise:
    """SPIRA's noisy test draws: ``random.seed(42 * index)``, index = the recording's 0-based
    position in the test list (``recordings`` in list order)."""
    protocol = PUBLISHED_NOISY_TEST
    return Noise(
        bank, protocol.augment(), lambda rows: [random.Random(protocol.seed * r) for r in rows]
    )


def window_frame(recordings: pl.DataFrame, owners: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
    rec = recordings.with_columns(
        pl.when(pl.col("age") < 40)
        .then(pl.lit("18-39"))
        .when(pl.col("age") < 60)
        .then(pl.lit("40-59"))
        .otherwise(pl.lit("60+"))
        .alias("age_band")
    )
    take = rec.select("participant", "audio_sha256", "label", *SUBGROUPS)[owners.tolist()]
    return take.rename({"audio_sha256": "recording"}).with_columns(pl.Series("score", scores))
