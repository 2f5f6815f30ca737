"""Spectrogram extraction on CPU or GPU that equals torchaudio's transform of each clip alone.

Each clip is reflect-padded by ``n_fft // 2`` on its own (what ``center=True`` does for a single
clip) and cut into its own frames, so a clip's frames never depend on its neighbours. Frames of
consecutive clips are then packed into chunks of ``chunk_frames`` (a long clip is split across
chunks) and transformed together: no padding to a common length, and a chunk small enough to
stay in the CPU cache (docs/PERFORMANCE.md: 200 frames, i.e. 2 s of audio, was fastest; whole
4-minute batches ran 2.6x slower than per-file torchaudio).

The arithmetic is torchaudio's, on its own buffers (window zero-padded to ``n_fft`` as
torch.stft does, mel filterbank, dB parameters, DCT matrix), so the FFT of every frame is
bit-identical to the reference. Only the power is formed differently: re^2 + im^2 scaled by
the squared normalization, instead of ``(X / norm).abs().pow(2)`` (4x cheaper; complex ``abs``
cost more than the FFT). On the 96 recordings of two demo batches that moves mel power by at
most 5e-7 relative and MFCC coefficients (magnitudes up to ~400) by at most 6.1e-5: float32
rounding, well inside the reference tolerance the tests hold it to. Shortcuts that change the
FFT's input (transforming the 400 windowed samples with ``n = n_fft``, folding the
normalization into the window) moved low-energy coefficients by up to 1.2e-4: not taken.
MFCC's 80 dB ``top_db`` clamp is taken over each clip's own frames, as torchaudio does for one
clip.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
import torchaudio

from spira_assets.audio.resample import from_int16
from spira_assets.features.config import FeatureConfig

# Frames per transform chunk, by device type: measured on 2 CPU cores (benchmarks/features.py,
# docs/PERFORMANCE.md). CUDA wants large chunks to fill the device; not measured (no GPU lent).
CHUNK_FRAMES = {"cpu": 200, "cuda": 24_000}


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


class FeatureExtractor:
    def __init__(
        self,
        config: FeatureConfig,
        device: torch.device | str = "cpu",
        chunk_frames: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.config = config
        self.threads = threads or os.cpu_count() or 1
        self.device = torch.device(device)
        self.chunk_frames = chunk_frames or CHUNK_FRAMES.get(self.device.type, 400)
        transform = config.build_transform().to(self.device)
        self.mfcc = transform if isinstance(transform, torchaudio.transforms.MFCC) else None
        mel = self.mfcc.MelSpectrogram if self.mfcc is not None else transform
        if isinstance(mel, torchaudio.transforms.MelSpectrogram):
            spectrogram, self.filterbank = mel.spectrogram, mel.mel_scale.fb
        else:
            spectrogram, self.filterbank = transform, None
        assert isinstance(spectrogram, torchaudio.transforms.Spectrogram)
        window = spectrogram.window  # torch.stft centres it in the n_fft frame, zeros around
        left = (config.n_fft - config.win_length) // 2
        self.window = F.pad(window, (left, config.n_fft - config.win_length - left))
        # torchaudio's "frame_length" normalization, applied to the spectrum as it does
        self.norm = window.pow(2.0).sum().sqrt() if spectrogram.normalized else None
        self.power = spectrogram.power
        self.pad = config.n_fft // 2

    def _frames(self, clip: torch.Tensor) -> torch.Tensor:
        """The clip's frames (frames x n_fft), a view of its own reflect-padded copy."""
        if clip.shape[-1] <= self.pad:
            raise ValueError(
                f"clip of {clip.shape[-1]} samples is too short for n_fft {self.config.n_fft}"
            )
        padded = F.pad(clip[None, None], (self.pad, self.pad), mode="reflect")[0, 0]
        frames = padded.unfold(0, self.config.n_fft, self.config.hop_length)
        return frames[: self.config.frames_for(clip.shape[-1])]

    def _spectra(self, frames: torch.Tensor) -> torch.Tensor:
        """Power (or mel power) per frame: frames x bins."""
        spectrum = torch.fft.rfft(frames * self.window)
        if self.power == 2.0:  # |X|^2 as re^2 + im^2: 4x faster than abs().pow(2)
            power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag
            if self.norm is not None:
                power *= 1.0 / float(self.norm) ** 2
        else:
            if self.norm is not None:
                spectrum /= self.norm
            power = spectrum.abs().pow(self.power)
        return power if self.filterbank is None else torch.matmul(power, self.filterbank)

    def _finish_tensor(self, spectra: torch.Tensor) -> torch.Tensor:
        """MFCC's dB, per-clip clamp and DCT of whole clips' frames (frames x bins, or
        clips x frames x bins for clips of one length); other transforms as they are."""
        if self.mfcc is None:
            return spectra.float()
        if self.mfcc.log_mels:
            db = torch.log(spectra + 1e-6)
        else:
            to_db = self.mfcc.amplitude_to_DB
            db = to_db.multiplier * torch.log10(torch.clamp(spectra, min=to_db.amin))
            db = db - to_db.multiplier * to_db.db_multiplier
            if to_db.top_db is not None:
                peak = db.amax(dim=(-2, -1), keepdim=True)  # each clip's own maximum
                db = torch.maximum(db, peak - to_db.top_db)
        return torch.matmul(db, self.mfcc.dct_mat).float()

    @torch.inference_mode()
    def _finish(self, spectra: torch.Tensor) -> np.ndarray:
        """A whole clip's frames as float32 numpy."""
        return self._finish_tensor(spectra).cpu().numpy()

    @torch.no_grad()  # not inference_mode: training feeds these frames to autograd
    def tensors(self, clips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Features (frames x n_features) of clips, left on the extractor's device: what
        training and scoring compute on the fly, identical to what the feature store holds.
        All clips' frames go through one FFT; clips of one length (training windows) are
        finished as one batch."""
        if not clips:
            return []
        frames = [self._frames(c.to(self.device, torch.float32)) for c in clips]
        sizes = [f.shape[0] for f in frames]
        spectra = self._spectra(torch.cat(frames))
        if len(set(sizes)) == 1:
            stacked = spectra.reshape(len(sizes), sizes[0], spectra.shape[-1])
            return list(self._finish_tensor(stacked).unbind(0))
        return [self._finish_tensor(part) for part in spectra.split(sizes)]

    def stream(self, clips: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        """Features (frames x n_features, float32) of each clip, in order. Memory holds a few
        chunks and the clips whose frames they cover, whatever the number of clips.

        On the CPU, chunks are transformed on ``threads`` Python threads with torch's own
        intra-op threads set to 1 meanwhile: small chunks under OpenMP spend their time in
        barriers, and collapse (to a tenth of the speed) when another process holds a core."""
        threads = self.threads if self.device.type == "cpu" else 1
        saved = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)
        try:
            with torch.inference_mode(), ThreadPoolExecutor(max_workers=threads) as pool:
                yield from self._stream(clips, pool, 2 * threads)
        finally:
            torch.set_num_threads(saved)

    def _chunk(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self._spectra(pieces[0] if len(pieces) == 1 else torch.cat(pieces))

    def _stream(
        self, clips: Iterable[torch.Tensor], pool: ThreadPoolExecutor, in_flight: int
    ) -> Iterator[np.ndarray]:
        chunks: deque[tuple[list[int], list[int], Future[torch.Tensor]]] = deque()
        parts: dict[int, list[torch.Tensor]] = {}
        expected: dict[int, int] = {}
        done = 0  # clips finished and yielded
        owners: list[int] = []
        pieces: list[torch.Tensor] = []
        queued = 0

        def submit() -> None:
            nonlocal owners, pieces, queued
            if pieces:
                sizes = [p.shape[0] for p in pieces]
                chunks.append((owners, sizes, pool.submit(self._chunk, pieces)))
            owners, pieces, queued = [], [], 0

        def collect(limit: int) -> Iterator[np.ndarray]:
            nonlocal done
            while len(chunks) > limit:
                chunk_owners, sizes, future = chunks.popleft()
                spectra = future.result()
                start = 0
                for index, size in zip(chunk_owners, sizes, strict=True):
                    parts.setdefault(index, []).append(spectra[start : start + size])
                    start += size
                while (
                    done in expected
                    and sum(p.shape[0] for p in parts.get(done, ())) == (expected[done])
                ):
                    clip_parts = parts.pop(done)
                    whole = clip_parts[0] if len(clip_parts) == 1 else torch.cat(clip_parts)
                    yield self._finish(whole)
                    del expected[done]
                    done += 1

        for index, clip in enumerate(clips):
            frames = self._frames(clip.to(self.device, torch.float32))
            expected[index] = frames.shape[0]
            start = 0
            while start < frames.shape[0]:
                take = min(frames.shape[0] - start, self.chunk_frames - queued)
                owners.append(index)
                pieces.append(frames[start : start + take])
                queued += take
                start += take
                if queued >= self.chunk_frames:
                    submit()
                    yield from collect(in_flight)
        submit()
        yield from collect(0)

    def batch(self, clips: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Features of clips already on any device (frames x n_features, float32)."""
        return list(self.stream(clips))

    def run(
        self,
        samples: np.ndarray,
        spans: Sequence[tuple[int, int]],
        sink: Callable[[int, np.ndarray], None],
    ) -> None:
        """Extract every (offset, length) span of an int16 shard, in order; ``sink(i, frames)``
        receives the result for span ``i``."""
        clips = (torch.from_numpy(from_int16(np.asarray(samples[o : o + n]))) for o, n in spans)
        for index, frames in enumerate(self.stream(clips)):
            sink(index, frames)
