"""Feature configuration: SPIRA's published defaults, and a stable hash naming the features.

Features computed with different configurations live side by side under
``features/<config_hash>/``; the hash covers every field that changes the numbers, so changing
the configuration can never overwrite or mix features.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from spira_assets.audio import TARGET_RATE

if TYPE_CHECKING:
    import torch

FeatureKind = Literal["mfcc", "mel", "linear"]
# one transform per recording, or per window as SPIRA (features/featurizer.py)
TransformUnit = Literal["recording", "window"]
FEATURE_CODE_VERSION = 1  # bump when the extraction code changes the numbers


@dataclass(frozen=True)
class FeatureConfig:
    """Defaults from SPIRA (Casanova et al. 2021, SPIRA-ACL2021 ``utils/audio_processor.py``):
    40 MFCCs from 40 mel bands, 1200-point FFT, 25 ms windows (400 samples) every 10 ms (160
    samples), f_min 0, no f_max, no log mels (dB with an 80 dB floor), and an STFT that is
    *not* normalized: SPIRA's ``"normalize": true`` is ``torchaudio.load(normalization=True)``
    (PCM read as floats in [-1, 1], which the waveform store's int16 / 32768 already is), not
    ``Spectrogram(normalized=True)``, which would shift c0 by about -138."""

    kind: FeatureKind = "mfcc"
    sample_rate: int = TARGET_RATE
    n_mfcc: int = 40
    n_mels: int = 40
    n_fft: int = 1200
    win_length: int = 400
    hop_length: int = 160
    f_min: float = 0.0
    f_max: float | None = None
    log_mels: bool = False
    normalized: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("mfcc", "mel", "linear"):
            raise ValueError(f"feature kind {self.kind!r} is not mfcc, mel or linear")
        if self.win_length > self.n_fft:
            raise ValueError("win_length must not exceed n_fft")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError("n_mfcc must not exceed n_mels")

    @property
    def n_features(self) -> int:
        if self.kind == "mfcc":
            return self.n_mfcc
        if self.kind == "mel":
            return self.n_mels
        return self.n_fft // 2 + 1

    def frames_for(self, samples: int) -> int:
        """Frames the (centered) transform yields for ``samples`` samples."""
        return 1 + samples // self.hop_length

    def config_hash(self) -> str:
        payload = json.dumps({**asdict(self), "code": FEATURE_CODE_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def build_transform(self, center: bool = True) -> torch.nn.Module:
        """The torchaudio transform: (..., samples) -> (..., n_features, frames).

        ``center=False`` is for callers that pad each clip themselves (see ``extract``)."""
        import torchaudio  # here, not at import: the code location loads without torch

        spectrogram = {
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "normalized": self.normalized,
            "center": center,
        }
        if self.kind == "linear":
            return torchaudio.transforms.Spectrogram(**spectrogram)
        mel = {
            **spectrogram,
            "n_mels": self.n_mels,
            "f_min": self.f_min,
            "f_max": self.f_max,
        }
        if self.kind == "mel":
            return torchaudio.transforms.MelSpectrogram(sample_rate=self.sample_rate, **mel)
        return torchaudio.transforms.MFCC(
            sample_rate=self.sample_rate, n_mfcc=self.n_mfcc, log_mels=self.log_mels, melkwargs=mel
        )


@dataclass(frozen=True)
class WindowConfig:
    """How recordings become training instances, applied when features are read.

    ``windows``: overlapping windows of ``window_s`` every ``step_s`` (SPIRA: 4 s, 1 s); a clip
    shorter than one window yields one zero-padded window. ``pad``: one instance per recording,
    zero-padded (or cut) to ``pad_to_s``."""

    mode: Literal["windows", "pad"] = "windows"
    window_s: float = 4.0
    step_s: float = 1.0
    pad_to_s: float = 12.0

    def frames(self, seconds: float, features: FeatureConfig) -> int:
        return round(seconds * features.sample_rate / features.hop_length)
