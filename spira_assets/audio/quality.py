"""Decode an audio file once, measure it, and judge it against quality rules.

Measurements are streamed block by block so memory stays flat however long a recording is.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from spira_assets.audio.containers import container_truncation
from spira_assets.audio.resample import downmix

SUPPORTED_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".opus", ".mp3"})
FRAME_SECONDS = 0.02
BLOCK_FRAMES = 500  # analysis frames per block (10 s)
DB_FLOOR = -120.0
# bump when a rule's logic (not a threshold: those are settings) changes what is accepted;
# it is part of raw_audio's Dagster code version, so every ingested batch then shows as stale
QUALITY_RULES_VERSION = "4"  # 4: beyond_full_scale


@dataclass(frozen=True)
class AudioQualityRules:
    """Acceptance rules for a recording. Defaults follow the landing-zone contract
    (8-96 kHz, mono or stereo) and SPIRA's utterances (several seconds of speech)."""

    min_sample_rate: int = 8_000
    max_sample_rate: int = 96_000
    max_channels: int = 2
    min_duration_s: float = 0.5
    max_duration_s: float = 600.0
    silence_frame_dbfs: float = -50.0
    max_silence_ratio: float = 0.98
    clip_level: float = 0.98
    max_clipping_ratio: float = 0.005
    # a float sample beyond this magnitude (full scale is 1.0; lossy decoders overshoot a
    # little) is no microphone's: +3e38 next to -3e38 overflows the resampler into NaN
    max_sample_magnitude: float = 2.0


@dataclass(frozen=True)
class AudioStats:
    container: str
    codec: str
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    peak_dbfs: float
    rms_dbfs: float
    clipping_ratio: float
    silence_ratio: float


@dataclass(frozen=True)
class Finding:
    """A rule a file breaks: ``rule`` is a stable code, ``detail`` says what to do."""

    rule: str
    detail: str


class AudioDecodeError(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{finding.rule}: {finding.detail}")
        self.finding = finding


def _dbfs(value: float) -> float:
    return DB_FLOOR if value <= 10 ** (DB_FLOOR / 20) else 20.0 * math.log10(value)


BlockSink = Callable[[np.ndarray, int], None]


def _first_non_finite(block: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])


def measure(data: bytes, rules: AudioQualityRules, sink: BlockSink | None = None) -> AudioStats:
    """Decode ``data`` (a whole audio file) and measure it, block by block.

    ``sink(mono, rate)`` receives every decoded block downmixed to mono float32, in order: the
    one decode that measures the file also feeds the resampler (``audio/decode.py``), so no
    file is decoded twice between landing and the 16 kHz store.

    Raises AudioDecodeError with rule ``empty_file``, ``undecodable``, ``truncated``,
    ``non_finite`` (a float file with NaN or infinite samples: it would be stored as zeros) or
    ``beyond_full_scale`` (float samples far beyond full scale).
    """
    if not data:
        raise AudioDecodeError(Finding("empty_file", "the file has 0 bytes; re-upload it"))
    truncation = container_truncation(data)
    if truncation:
        raise AudioDecodeError(Finding("truncated", f"{truncation}; the upload was interrupted"))
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        reason = getattr(error, "error_string", None) or type(error).__name__
        raise AudioDecodeError(
            Finding("undecodable", f"not a readable WAV/FLAC/OGG/MP3 file ({reason})")
        ) from error
    with handle:
        rate, channels, declared = handle.samplerate, handle.channels, handle.frames
        frame_len = max(1, round(rate * FRAME_SECONDS))
        peak = 0.0
        energy = 0.0
        clipped = 0
        decoded = 0
        frames_total = 0
        frames_silent = 0
        silent_energy = 10 ** (rules.silence_frame_dbfs / 10) * frame_len
        try:
            while True:
                block = handle.read(frame_len * BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                # max/min over the whole block: NaN propagates and inf stays inf, so this one
                # pass is both the peak and the finiteness check
                block_peak = float(max(block.max(), -block.min()))
                if not math.isfinite(block_peak):
                    first = decoded + _first_non_finite(block)
                    raise AudioDecodeError(
                        Finding(
                            "non_finite",
                            f"samples are NaN or infinite (first at {first / rate:.3f} s); the "
                            "file holds no usable signal there: re-export the recording",
                        )
                    )
                if block_peak > rules.max_sample_magnitude:
                    first = decoded + int(
                        np.flatnonzero(np.abs(block).max(axis=1) > rules.max_sample_magnitude)[0]
                    )
                    raise AudioDecodeError(
                        Finding(
                            "beyond_full_scale",
                            f"a sample of magnitude {block_peak:.3g} (first at "
                            f"{first / rate:.3f} s) is beyond {rules.max_sample_magnitude} x full "
                            "scale: the float data is not audio a recorder made; re-export it",
                        )
                    )
                decoded += block.shape[0]
                peak = max(peak, block_peak)
                if block_peak >= rules.clip_level:
                    magnitude = np.abs(block).max(axis=1)
                    clipped += int(np.count_nonzero(magnitude >= rules.clip_level))
                mono = downmix(block)
                usable = (mono.shape[0] // frame_len) * frame_len
                if usable:
                    frames = mono[:usable].reshape(-1, frame_len)
                    frame_energy = np.einsum("ij,ij->i", frames, frames, dtype=np.float64)
                    energy += float(frame_energy.sum())
                    frames_total += frame_energy.shape[0]
                    frames_silent += int(np.count_nonzero(frame_energy < silent_energy))
                rest = mono[usable:].astype(np.float64)
                energy += float(np.dot(rest, rest))
                if sink is not None:
                    sink(mono, rate)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioDecodeError(
                Finding(
                    "truncated",
                    f"decoding stopped after {decoded} of {declared} frames "
                    f"({getattr(error, 'error_string', None) or type(error).__name__}); "
                    "the upload was interrupted or the file is damaged",
                )
            ) from error
        if declared > 0 and decoded < declared * 0.99:
            raise AudioDecodeError(
                Finding(
                    "truncated",
                    f"only {decoded} of {declared} declared frames could be decoded; "
                    "the upload was interrupted",
                )
            )
        if decoded == 0:
            raise AudioDecodeError(Finding("undecodable", "the file contains no audio frames"))
        return AudioStats(
            container=handle.format,
            codec=handle.subtype,
            sample_rate=rate,
            channels=channels,
            frames=decoded,
            duration_s=decoded / rate,
            peak_dbfs=round(_dbfs(peak), 3),
            rms_dbfs=round(_dbfs(math.sqrt(energy / decoded)), 3),
            clipping_ratio=clipped / decoded,
            silence_ratio=(frames_silent / frames_total) if frames_total else 1.0,
        )


def judge(stats: AudioStats, rules: AudioQualityRules) -> list[Finding]:
    """Every rule the measured recording breaks, most fundamental first."""
    findings: list[Finding] = []
    if not rules.min_sample_rate <= stats.sample_rate <= rules.max_sample_rate:
        findings.append(
            Finding(
                "unsupported_sample_rate",
                f"{stats.sample_rate} Hz is outside {rules.min_sample_rate}-"
                f"{rules.max_sample_rate} Hz",
            )
        )
    if stats.channels > rules.max_channels:
        findings.append(
            Finding(
                "too_many_channels",
                f"{stats.channels} channels; at most {rules.max_channels} (mono or stereo) "
                "are accepted",
            )
        )
    if stats.duration_s < rules.min_duration_s:
        findings.append(
            Finding(
                "too_short",
                f"{stats.duration_s:.3f} s is shorter than {rules.min_duration_s} s",
            )
        )
    if stats.duration_s > rules.max_duration_s:
        findings.append(
            Finding("too_long", f"{stats.duration_s:.1f} s is longer than {rules.max_duration_s} s")
        )
    if stats.silence_ratio > rules.max_silence_ratio:
        findings.append(
            Finding(
                "silent",
                f"{stats.silence_ratio:.1%} of 20 ms frames are below "
                f"{rules.silence_frame_dbfs} dBFS (peak {stats.peak_dbfs} dBFS); "
                "check the microphone",
            )
        )
    if stats.clipping_ratio > rules.max_clipping_ratio:
        findings.append(
            Finding(
                "clipped",
                f"{stats.clipping_ratio:.2%} of samples at or above {rules.clip_level} full "
                f"scale (limit {rules.max_clipping_ratio:.2%}); record with lower gain",
            )
        )
    return findings
