"""Decode any accepted recording to 16 kHz mono float32 (soundfile + torchaudio resampling)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch
import torchaudio


class MonoResampler:
    """Downmix to mono and resample to ``target_rate``, caching one torchaudio kernel per
    source rate (building the sinc kernel costs more than applying it to a short clip)."""

    def __init__(self, target_rate: int = 16_000) -> None:
        self.target_rate = target_rate
        self._kernels: dict[int, torchaudio.transforms.Resample] = {}

    def __call__(self, audio: np.ndarray, rate: int) -> np.ndarray:
        mono = audio.mean(axis=1) if audio.ndim == 2 else audio
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if rate == self.target_rate:
            return mono
        kernel = self._kernels.get(rate)
        if kernel is None:
            kernel = torchaudio.transforms.Resample(rate, self.target_rate)
            self._kernels[rate] = kernel
        with torch.inference_mode():
            out: np.ndarray = kernel(torch.from_numpy(mono)).numpy()
        return out

    def decode(self, data: bytes) -> np.ndarray:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        return self(audio, int(rate))


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def from_int16(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0
