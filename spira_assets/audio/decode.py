"""One decode per file: quality statistics and the 16 kHz mono int16 waveform together.

``raw_audio`` measures every landed file and, from the same decoded blocks, resamples the
audio it accepts; ``audio_16k`` then only copies that PCM into its shard. Inference decodes
uploaded audio through the same function, so a model scores exactly the waveform that training
data preparation would have stored for the file.
"""

from __future__ import annotations

import numpy as np

from spira_assets.audio import TARGET_RATE
from spira_assets.audio.quality import (
    AudioDecodeError,
    AudioQualityRules,
    AudioStats,
    Finding,
    measure,
)
from spira_assets.audio.resample import (
    RESAMPLER_VERSION,
    StreamResampler,
    stream_resampler,
    to_int16,
)


class _Collector:
    """Feeds decoded blocks to a streaming resampler and keeps its int16 output."""

    def __init__(self, target_rate: int, version: str) -> None:
        self.target_rate, self.version = target_rate, version
        self.parts: list[np.ndarray] = []
        self._stream: StreamResampler | None = None

    def __call__(self, mono: np.ndarray, rate: int) -> None:
        if self._stream is None:
            self._stream = stream_resampler(rate, self.target_rate, self.version)
        self.parts.append(_finite_int16(self._stream.push(mono)))

    def result(self) -> np.ndarray:
        if self._stream is not None:
            self.parts.append(_finite_int16(self._stream.finish()))
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.int16)


def _finite_int16(samples: np.ndarray) -> np.ndarray:
    """int16 of resampled audio; a non-finite sample (which ``to_int16`` would store as 0)
    refuses the file instead."""
    if not np.isfinite(samples).all():
        raise AudioDecodeError(
            Finding(
                "non_finite",
                "resampling to 16 kHz produced NaN or infinite samples (extreme sample values); "
                "re-export the recording",
            )
        )
    return to_int16(samples)


def decode_16k(
    data: bytes,
    rules: AudioQualityRules,
    target_rate: int = TARGET_RATE,
    version: str = RESAMPLER_VERSION,
) -> tuple[AudioStats, np.ndarray]:
    """Measure ``data`` and return its statistics with its mono int16 waveform at
    ``target_rate``; raises ``AudioDecodeError`` like ``measure``."""
    collector = _Collector(target_rate, version)
    stats = measure(data, rules, sink=collector)
    return stats, collector.result()
