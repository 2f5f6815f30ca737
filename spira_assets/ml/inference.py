"""Scoring audio files with a trained model version, as in training: decode, 16 kHz mono,
4 s windows every 1 s, spectrogram transform, model, mean of the window probabilities."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spira_assets.audio.decode import decode_16k
from spira_assets.audio.quality import AudioDecodeError, AudioQualityRules, judge
from spira_assets.audio.resample import LEGACY_RESAMPLER, from_int16
from spira_assets.features.config import FeatureConfig
from spira_assets.features.windows import window_starts
from spira_assets.ml.artifacts import CONFIG, THRESHOLD, load_model

THRESHOLD_FILE = THRESHOLD
THRESHOLD_CHOICE = "validation recordings (Youden's J), when the model was trained"


@dataclass(frozen=True)
class FileScore:
    path: str
    probability: float | None
    decision: int | None
    windows: int
    error: str | None = None


class Scorer:
    """A model version loaded once, ready to score many files."""

    def __init__(self, directory: Path, device: torch.device | str = "cpu") -> None:
        config = json.loads((directory / CONFIG).read_text())
        self.features = FeatureConfig(**config["features"])
        self.window = round(config["train"]["window_s"] * self.features.sample_rate)
        self.step = round(config["train"]["step_s"] * self.features.sample_rate)
        self.frames = config["frames"]
        self.device = torch.device(device)
        self.model = load_model(directory).to(self.device)
        self.transform = self.features.build_transform().to(self.device)
        # the resampler that made the model's training audio (models trained before it was
        # recorded used torchaudio's): a file is scored exactly as training would store it
        self.resampler = str(config.get("resampler", LEGACY_RESAMPLER))
        threshold_file = directory / THRESHOLD_FILE
        self.threshold = (
            float(json.loads(threshold_file.read_text())["threshold"])
            if threshold_file.exists()
            else 0.5
        )

    @torch.no_grad()
    def waveform(self, wave: np.ndarray) -> tuple[float, int]:
        """Mean window probability of a 16 kHz mono waveform, and the number of windows."""
        starts = window_starts(len(wave), self.window, self.step)
        batch = np.zeros((len(starts), self.window), dtype=np.float32)
        for i, start in enumerate(starts):
            piece = wave[start : start + self.window]
            batch[i, : len(piece)] = piece
        waves = torch.from_numpy(batch).to(self.device)
        feats = self.transform(waves[:, None]).squeeze(1).transpose(1, 2)[:, : self.frames]
        probabilities = torch.sigmoid(self.model(feats)).float().cpu().numpy()
        return float(probabilities.mean()), len(starts)

    def file(self, path: Path) -> FileScore:
        try:
            data = path.read_bytes()
        except OSError as error:
            return FileScore(str(path), None, None, 0, f"unreadable: {error.strerror or error}")
        return self.audio(data, str(path))

    def audio(self, data: bytes, name: str) -> FileScore:
        """Score an encoded audio file given as bytes (any container the ingest accepts)."""
        try:
            rules = AudioQualityRules()
            stats, samples = decode_16k(data, rules, self.features.sample_rate, self.resampler)
            problems = judge(stats, rules)
            if problems:
                raise AudioDecodeError(problems[0])
            probability, windows = self.waveform(from_int16(samples))
        except AudioDecodeError as error:
            return FileScore(name, None, None, 0, f"{error.finding.rule}: {error.finding.detail}")
        if not math.isfinite(probability):
            # NaN >= threshold is False: without this a broken score would read "no insufficiency"
            return FileScore(
                name,
                None,
                None,
                windows,
                f"non_finite_score: the model returned {probability} for this file; no decision "
                "is made (check the model version and the audio)",
            )
        return FileScore(name, probability, int(probability >= self.threshold), windows)


def score_files(paths: list[Path], directory: Path, device: str = "cpu") -> list[FileScore]:
    scorer = Scorer(directory, device)
    return [scorer.file(path) for path in paths]
