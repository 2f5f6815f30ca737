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
from spira_assets.audio.quality import AudioDecodeError, AudioQualityRules, Finding, judge
from spira_assets.audio.resample import LEGACY_RESAMPLER, from_int16, to_int16
from spira_assets.features.config import FeatureConfig
from spira_assets.ml.artifacts import CONFIG, THRESHOLD, load_model
from spira_assets.ml.calibration import load_calibration
from spira_assets.ml.train_config import train_config_from

THRESHOLD_FILE = THRESHOLD


@dataclass(frozen=True)
class FileScore:
    path: str
    probability: float | None
    decision: int | None
    windows: int
    error: str | None = None
    raw_score: float | None = None  # the mean window probability, before calibration


class Scorer:
    """A model version loaded once, ready to score many files."""

    def __init__(self, directory: Path, device: torch.device | str = "cpu") -> None:
        config = json.loads((directory / CONFIG).read_text())
        self.features = FeatureConfig(**config["features"])
        self.device = torch.device(device)
        self.train_config = train_config_from(config["train"])
        self.featurizer = self.train_config.featurizer(self.features, self.device)
        self.model = load_model(directory).to(self.device)
        # the resampler that made the model's training audio (models trained before it was
        # recorded used torchaudio's): a file is scored exactly as training would store it
        self.resampler = str(config.get("resampler", LEGACY_RESAMPLER))
        threshold_file = directory / THRESHOLD_FILE
        self.operating_point: dict[str, object] = (
            json.loads(threshold_file.read_text()) if threshold_file.exists() else {}
        )
        self.threshold = float(self.operating_point.get("threshold", 0.5))  # type: ignore[arg-type]
        # the map from the mean window probability to a calibrated probability (identity for
        # a model without one): the threshold applies to the calibrated value
        self.calibration = load_calibration(directory)
        self.statement = operating_point_statement(self.operating_point, self.threshold)

    @torch.no_grad()
    def waveform(self, wave: np.ndarray) -> tuple[float, int]:
        """Mean window probability of a 16 kHz mono waveform, and the number of windows,
        through the model's own window rule and transform unit (as in training; the samples
        are quantized to int16 as the waveform store holds them)."""
        stored = torch.from_numpy(from_int16(to_int16(np.asarray(wave, dtype=np.float32))))
        windows, _ = self.featurizer.windows([stored.to(self.device)])
        if windows.shape[0] == 0:
            raise AudioDecodeError(
                Finding(
                    "too_short_for_protocol",
                    f"{len(wave) / self.features.sample_rate:.2f} s gives no window under the "
                    f"model's {self.train_config.window_rule} window rule (SPIRA needs more "
                    f"than {self.train_config.window_s:g} s)",
                )
            )
        probabilities = torch.sigmoid(self.model(windows)).float().cpu().numpy()
        return float(probabilities.mean()), int(windows.shape[0])

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
            raw, windows = self.waveform(from_int16(samples))
        except AudioDecodeError as error:
            return FileScore(name, None, None, 0, f"{error.finding.rule}: {error.finding.detail}")
        probability = self.calibration.one(raw)
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
        return FileScore(
            name, probability, int(probability >= self.threshold), windows, raw_score=raw
        )


@dataclass(frozen=True)
class ParticipantScore:
    """One decision per person: the mean of the calibrated probabilities of the person's
    scored recordings against the model's threshold (as evaluation's participant level)."""

    probability: float | None
    decision: int | None
    recordings: int  # recordings that contributed
    unscored: int  # recordings that could not be scored (their errors are per file)


def participant_score(scores: list[FileScore], threshold: float) -> ParticipantScore:
    probabilities = [s.probability for s in scores if s.probability is not None]
    if not probabilities:
        return ParticipantScore(None, None, 0, len(scores))
    mean = float(np.mean(probabilities))
    return ParticipantScore(
        mean, int(mean >= threshold), len(probabilities), len(scores) - len(probabilities)
    )


def operating_point_statement(operating_point: dict[str, object], threshold: float) -> str:
    """What the threshold means, as recorded with the model (an older model: the bare value)."""
    return str(operating_point.get("statement") or f"decision at probability >= {threshold:.3f}")


def score_files(paths: list[Path], directory: Path, device: str = "cpu") -> list[FileScore]:
    scorer = Scorer(directory, device)
    return [scorer.file(path) for path in paths]
