"""From 16 kHz recordings to the model's input: windows of spectrogram frames.

Two transform units, a typed setting of the training protocol (``TrainConfig.transform_unit``):

- ``recording`` (platform): each whole recording is transformed once (``FeatureExtractor``,
  exactly the frames the feature store holds for a clean recording), then windows are cut in
  frame space. Clean windows can therefore be read from ``spectrogram_features`` instead of
  being recomputed, and a sample is transformed once instead of once per overlapping window.
- ``window`` (SPIRA as published): each window of samples is transformed on its own, with its
  own centred padding and its own 80 dB floor (``utils/dataset.py`` calls the MFCC per slice).

Noise, when any, is added to the whole recording before either (``augment.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from spira_assets.features.config import FeatureConfig, TransformUnit
from spira_assets.features.extract import FeatureExtractor
from spira_assets.features.windows import WindowRule, sample_window_starts, window_frames

TRANSFORM_UNITS: tuple[TransformUnit, ...] = ("recording", "window")


class Featurizer:
    def __init__(
        self,
        features: FeatureConfig,
        unit: TransformUnit,
        rule: WindowRule,
        window_s: float,
        step_s: float,
        device: torch.device | str = "cpu",
    ) -> None:
        if unit not in TRANSFORM_UNITS:
            raise ValueError(f"transform unit {unit!r} is not one of {TRANSFORM_UNITS}")
        self.features, self.unit, self.rule = features, unit, rule
        self.device = torch.device(device)
        self.window = round(window_s * features.sample_rate)
        self.step = round(step_s * features.sample_rate)
        if self.step % features.hop_length or self.window % features.hop_length:
            raise ValueError("window and step must be whole numbers of hops")
        self.frames = window_frames(window_s, features, rule)
        self.extractor = FeatureExtractor(features, self.device) if unit == "recording" else None
        self.transform = features.build_transform().to(self.device) if unit == "window" else None

    def starts(self, samples: int) -> list[int]:
        """First sample of each window of a recording (none: it cannot be used)."""
        return sample_window_starts(samples, self.window, self.step, self.rule)

    def count(self, samples: int) -> int:
        return len(self.starts(samples))

    def from_frames(
        self, frames: Sequence[torch.Tensor], samples: Sequence[int]
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Windows cut from whole-recording frames (computed, or read from the feature store),
        zero-padded past a short clip's end; and the recording of each window."""
        pieces, owners = [], []
        for index, (recording, length) in enumerate(zip(frames, samples, strict=True)):
            for start in self.starts(length):
                first = start // self.features.hop_length
                piece = recording[first : first + self.frames]
                if piece.shape[0] < self.frames:
                    piece = F.pad(piece, (0, 0, 0, self.frames - piece.shape[0]))
                pieces.append(piece)
                owners.append(index)
        return self._stack(pieces), np.asarray(owners, dtype=np.int64)

    @torch.no_grad()  # not inference_mode: training feeds these windows to autograd
    def windows(self, waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, np.ndarray]:
        """Windows of ``frames x n_features`` for every window of every recording."""
        samples = [int(w.shape[-1]) for w in waves]
        if self.extractor is not None:
            usable = [i for i, n in enumerate(samples) if self.starts(n)]
            frames = self.extractor.tensors([waves[i] for i in usable]) if usable else []
            every: list[torch.Tensor] = [torch.zeros(0, self.features.n_features)] * len(waves)
            for i, f in zip(usable, frames, strict=True):
                every[i] = f
            return self.from_frames(every, samples)
        assert self.transform is not None
        pieces, owners = [], []
        for index, wave in enumerate(waves):
            for start in self.starts(samples[index]):
                piece = wave[start : start + self.window].to(self.device, torch.float32)
                if piece.shape[-1] < self.window:
                    piece = F.pad(piece, (0, self.window - piece.shape[-1]))
                pieces.append(piece)
                owners.append(index)
        if not pieces:
            return self._stack([]), np.zeros(0, dtype=np.int64)
        # a channel axis keeps torchaudio's 80 dB floor per window, not per batch
        stacked = torch.stack(pieces)[:, None]
        transformed = self.transform(stacked).squeeze(1).transpose(1, 2)[:, : self.frames]
        return transformed.contiguous(), np.asarray(owners, dtype=np.int64)

    def _stack(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        if not pieces:
            return torch.zeros(0, self.frames, self.features.n_features, device=self.device)
        return torch.stack([p.to(self.device) for p in pieces])
