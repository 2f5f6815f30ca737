"""Batched spectrogram extraction on CPU or GPU that equals the per-clip reference exactly.

Clips are grouped by length to keep padding low. Each clip is reflect-padded by ``n_fft // 2``
on its own (what torchaudio's ``center=True`` does for a single clip) before the group is
zero-padded to a common length and transformed with ``center=False``; so a clip's frames never
depend on its neighbours, and equal ``config.build_transform()(clip)`` frame for frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
import torchaudio

from spira_assets.audio.resample import from_int16
from spira_assets.features.config import FeatureConfig

DEFAULT_BATCH_SAMPLES = 16_000 * 240  # about 4 minutes of audio per device batch


@dataclass
class FeatureStats:
    """Per-coefficient running statistics (for drift detection)."""

    width: int
    frames: int = 0
    total: np.ndarray = field(init=False)
    squares: np.ndarray = field(init=False)
    low: np.ndarray = field(init=False)
    high: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.total = np.zeros(self.width)
        self.squares = np.zeros(self.width)
        self.low = np.full(self.width, np.inf)
        self.high = np.full(self.width, -np.inf)

    def add(self, frames: np.ndarray) -> None:
        values = frames.astype(np.float64)
        self.frames += values.shape[0]
        self.total += values.sum(axis=0)
        self.squares += (values**2).sum(axis=0)
        self.low = np.minimum(self.low, values.min(axis=0))
        self.high = np.maximum(self.high, values.max(axis=0))

    def mean(self) -> np.ndarray:
        return self.total / max(self.frames, 1)

    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.squares / max(self.frames, 1) - self.mean() ** 2, 0.0))


def length_groups(lengths: Sequence[int], budget: int) -> Iterator[list[int]]:
    """Indices grouped by similar length, each group at most ``budget`` padded samples."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    group: list[int] = []
    for index in order:
        longest = lengths[index]  # ascending order: the newcomer is the longest
        if group and longest * (len(group) + 1) > budget:
            yield group
            group = []
        group.append(index)
    if group:
        yield group


class FeatureExtractor:
    def __init__(self, config: FeatureConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.transform = config.build_transform(center=False).to(self.device)
        self.pad = config.n_fft // 2

    def _prepare(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.shape[-1] <= self.pad:
            raise ValueError(
                f"clip of {clip.shape[-1]} samples is too short for n_fft {self.config.n_fft}"
            )
        return F.pad(clip[None, None], (self.pad, self.pad), mode="reflect")[0, 0]

    def batch(self, clips: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Features (frames x n_features, float32) of clips already on any device."""
        return [frames.float().cpu().numpy() for frames in self.tensors(clips)]

    @torch.no_grad()  # not inference_mode: training feeds these frames to autograd
    def tensors(self, clips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Features (frames x n_features) of clips, left on the extractor's device: what
        training and scoring compute on the fly, identical to what the feature store holds."""
        padded = [self._prepare(c.to(self.device, torch.float32)) for c in clips]
        width = max(p.shape[-1] for p in padded)
        stacked = torch.stack([F.pad(p, (0, width - p.shape[-1])) for p in padded])
        lengths = [self.config.frames_for(c.shape[-1]) for c in clips]
        if not isinstance(self.transform, torchaudio.transforms.MFCC):
            features = self.transform(stacked)  # B x n_features x frames
            return [features[i, :, :n].T.float() for i, n in enumerate(lengths)]
        # MFCC's dB conversion clamps at (maximum - 80 dB), and torchaudio takes that maximum
        # over the whole batch; take it over each clip's own frames instead (vectorized).
        mfcc = self.transform
        mels = mfcc.MelSpectrogram(stacked)  # B x n_mels x frames
        if mfcc.log_mels:
            db = torch.log(mels + 1e-6)
        else:
            to_db = mfcc.amplitude_to_DB
            db = to_db.multiplier * torch.log10(torch.clamp(mels, min=to_db.amin))
            db = db - to_db.multiplier * to_db.db_multiplier
            if to_db.top_db is not None:
                frames = torch.arange(db.shape[-1], device=db.device)
                valid = frames[None, :] < torch.tensor(lengths, device=db.device)[:, None]
                peak = db.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=(1, 2))
                db = torch.maximum(db, (peak - to_db.top_db)[:, None, None])
        coefficients = torch.matmul(db.transpose(1, 2), mfcc.dct_mat).float()
        return [coefficients[i, :n] for i, n in enumerate(lengths)]

    def run(
        self,
        samples: np.ndarray,
        spans: Sequence[tuple[int, int]],
        sink: Callable[[int, np.ndarray], None],
        batch_samples: int = DEFAULT_BATCH_SAMPLES,
    ) -> None:
        """Extract every (offset, length) span of an int16 shard; ``sink(i, frames)`` receives
        the result for span ``i`` (in length order, one device batch at a time)."""
        lengths = [length for _, length in spans]
        for group in length_groups(lengths, batch_samples):
            clips = [
                torch.from_numpy(from_int16(np.asarray(samples[o : o + n])))
                for o, n in (spans[i] for i in group)
            ]
            for index, frames in zip(group, self.batch(clips), strict=True):
                sink(index, frames)
