"""Resampling to 16 kHz mono, one named version per algorithm (the version is lineage).

``soxr-hq-1`` (python-soxr, libsoxr "HQ") is the current resampler: chosen by measurement over
torchaudio's windowed sinc (``benchmarks/resampling.py``, docs/PERFORMANCE.md): about 140 dB of
alias rejection instead of 19 dB, a flat passband to 7.5 kHz (-0.4 dB instead of -3.7 dB),
1.2-5.7x faster on one core, and a streaming API whose output equals the one-shot call bit for
bit, so a long file is resampled block by block in bounded memory. It needs no torch, so the
decode worker processes stay small.

``torchaudio-sinc-hann-6`` is kept so that models trained on audio it produced are scored with
it (their ``model_config.json`` names no resampler, or names this one).

Nothing here imports torch at module level: decode workers must not pay for it.
"""

from __future__ import annotations

import io
from typing import Protocol

import numpy as np
import soundfile as sf
import soxr

from spira_assets.audio import TARGET_RATE

SOXR_HQ = "soxr-hq-1"
TORCHAUDIO_SINC = "torchaudio-sinc-hann-6"
RESAMPLER_VERSION = SOXR_HQ  # what the waveform store is written with now
LEGACY_RESAMPLER = TORCHAUDIO_SINC  # what stores and models that name none were made with
RESAMPLERS = (SOXR_HQ, TORCHAUDIO_SINC)


class StreamResampler(Protocol):
    """Mono float32 blocks in, resampled blocks out; ``finish`` returns the tail."""

    def push(self, block: np.ndarray) -> np.ndarray: ...

    def finish(self) -> np.ndarray: ...


class _Identity:
    def push(self, block: np.ndarray) -> np.ndarray:
        return np.array(block, dtype=np.float32, copy=True)

    def finish(self) -> np.ndarray:
        return np.zeros(0, np.float32)


class _Soxr:
    def __init__(self, rate: int, target_rate: int) -> None:
        self._stream = soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ")

    def push(self, block: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._stream.resample_chunk(np.ascontiguousarray(block, np.float32))
        return out

    def finish(self) -> np.ndarray:
        out: np.ndarray = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        return out


class _TorchaudioWhole:
    """The legacy resampler has no streaming form: it collects the file and resamples it once
    (only used to score models trained on audio it produced)."""

    def __init__(self, rate: int, target_rate: int) -> None:
        self.rate, self.target_rate = rate, target_rate
        self._blocks: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> np.ndarray:
        self._blocks.append(np.array(block, dtype=np.float32, copy=True))
        return np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        import torch
        import torchaudio

        mono = np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)
        kernel = torchaudio.transforms.Resample(self.rate, self.target_rate)
        with torch.inference_mode():
            out: np.ndarray = kernel(torch.from_numpy(mono)).numpy()
        return out


def stream_resampler(
    rate: int, target_rate: int = TARGET_RATE, version: str = RESAMPLER_VERSION
) -> StreamResampler:
    if version not in RESAMPLERS:
        raise ValueError(f"unknown resampler {version!r}; known: {', '.join(RESAMPLERS)}")
    if rate == target_rate:
        return _Identity()
    if version == SOXR_HQ:
        return _Soxr(rate, target_rate)
    return _TorchaudioWhole(rate, target_rate)


def downmix(audio: np.ndarray) -> np.ndarray:
    """Mono float32: the mean of the channels ((L + R) / 2 for stereo)."""
    if audio.ndim == 1:
        return np.ascontiguousarray(audio, dtype=np.float32)
    if audio.shape[1] == 1:
        return np.ascontiguousarray(audio[:, 0], dtype=np.float32)
    mono = np.add(audio[:, 0], audio[:, 1], dtype=np.float32)
    for channel in range(2, audio.shape[1]):
        mono += audio[:, channel]
    mono /= np.float32(audio.shape[1])
    return mono


class MonoResampler:
    """Downmix and resample a whole decoded array to ``target_rate`` with ``version``."""

    def __init__(self, target_rate: int = TARGET_RATE, version: str = RESAMPLER_VERSION) -> None:
        self.target_rate = target_rate
        self.version = version

    def __call__(self, audio: np.ndarray, rate: int) -> np.ndarray:
        stream = stream_resampler(int(rate), self.target_rate, self.version)
        head = stream.push(downmix(audio))
        return np.concatenate([head, stream.finish()])

    def decode(self, data: bytes) -> np.ndarray:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        return self(audio, int(rate))


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def from_int16(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0
