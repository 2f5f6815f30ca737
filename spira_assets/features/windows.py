"""Cutting a recording's frame sequence into training instances."""

from __future__ import annotations

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
