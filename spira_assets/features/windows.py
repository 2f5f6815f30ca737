"""Cutting a recording into training instances: windows of 4 s every 1 s (SPIRA).

Two rules, a typed setting of the training protocol (``TrainConfig.window_rule``):

- ``platform``: every full window, the last one flush with the clip's end when it fits
  exactly; a clip shorter than one window gives one zero-padded window. A window spans
  ``round(window_s * rate / hop)`` frames (400 for 4 s).
- ``spira`` (as published, ``utils/dataset.py``): window ends run over
  ``range(window, length, step)``, so the window ending exactly at the clip's end is *not*
  included, and a clip of one window or less has no window at all (SPIRA raises an error; the
  platform leaves such a recording out and counts it). A window spans
  ``int(window_s * rate / hop + 1)`` frames (401 for 4 s: the centred STFT of 4 s).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from spira_assets.features.config import FeatureConfig, WindowConfig


def window_starts(n_frames: int, window_frames: int, step_frames: int) -> list[int]:
    """Start frames of every full window; a clip shorter than one window gets one window at 0
    (zero-padded when read). An exact multiple ends with a window flush at the last frame."""
    if window_frames <= 0 or step_frames <= 0:
        raise ValueError("window and step must be positive")
    if n_frames <= window_frames:
        return [0]
    return list(range(0, n_frames - window_frames + 1, step_frames))


WindowRule = Literal["platform", "spira"]
WINDOW_RULES: tuple[WindowRule, ...] = ("platform", "spira")


def sample_window_starts(samples: int, window: int, step: int, rule: WindowRule) -> list[int]:
    """First sample of every window of a clip of ``samples`` samples under ``rule``."""
    if rule == "spira":
        return [end - window for end in range(window, samples, step)]
    if rule == "platform":
        return window_starts(samples, window, step)
    raise ValueError(f"window rule {rule!r} is not one of {WINDOW_RULES}")


def window_frames(window_s: float, features: FeatureConfig, rule: WindowRule) -> int:
    """Frames the model sees per window (400 for 4 s on the platform, 401 in SPIRA)."""
    per_second = features.sample_rate / features.hop_length
    if rule == "spira":
        return int(window_s * per_second + 1)
    return round(window_s * per_second)


def instances(n_frames: int, windows: WindowConfig, features: FeatureConfig) -> list[int]:
    if windows.mode == "pad":
        return [0]
    return window_starts(
        n_frames,
        windows.frames(windows.window_s, features),
        windows.frames(windows.step_s, features),
    )


def instance_length(windows: WindowConfig, features: FeatureConfig) -> int:
    seconds = windows.pad_to_s if windows.mode == "pad" else windows.window_s
    return windows.frames(seconds, features)


def cut(frames: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` frames from ``start``, zero-padded at the end when the clip is shorter."""
    piece = frames[start : start + length]
    if piece.shape[0] == length:
        return np.asarray(piece)
    out = np.zeros((length, frames.shape[1]), dtype=frames.dtype)
    out[: piece.shape[0]] = piece
    return out
