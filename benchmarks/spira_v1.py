"""SPIRA-v1's training data path, as Edresson/SPIRA-ACL2021 runs experiment 3.5 (the baseline of
``benchmarks/training.py``; not part of the platform).

Read from the public code (``utils/dataset.py`` ``Dataset.__getitem__`` and ``own_collate_fn``,
``utils/audio_processor.py``, ``train.py``, ``Experiments/configs/exp3.5.json``):

- an item is one recording: its file is decoded and, when its rate is not 16 kHz, resampled with
  a ``torchaudio.transforms.Resample`` built for that call (``AudioProcessor.load_wav``);
- noise: for each of the class's 3 slices, a noise *file* is picked at random, decoded and
  resampled again, a slice as long as the recording is cut at a random offset, scaled so that
  its signed maximum is a peak drawn from [0.033474047, 0.19233719], and added;
- windows: ``for end in range(4 s, len, 1 s)`` the MFCC of ``wav[:, end - 4 s : end]`` is computed
  by a ``torchaudio.transforms.MFCC`` built for that call (``AudioProcessor.wav2feature``:
  n_fft 1200, win 400, hop 160, 40 mels, 40 coefficients, dB-scaled), 401 frames each;
- ``own_collate_fn`` concatenates the windows of the batch's 5 recordings (``batch_size: 5``),
  with one target per window.

Three departures, so that it runs on the demo corpus: files are decoded with soundfile (SPIRA's
``torchaudio.load(normalization=True)``; torchaudio 2.9 removed its own decoders) and stereo
files are averaged to mono (SPIRA's corpus is mono); a noise file shorter than the recording is
tiled (SPIRA assumes longer noise files, ``randint`` fails otherwise); recordings without a
window are not drawn (SPIRA raises on them).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

SAMPLE_RATE = 16_000
WINDOW_S, STEP_S = 4, 1
NOISE_MIN_AMP, NOISE_MAX_AMP = 0.033474047, 0.19233719
NUM_NOISE = 3  # num_noise_control, num_noise_patient


def load_wav(path: Path) -> torch.Tensor:
    """``AudioProcessor.load_wav``: (1, samples) at 16 kHz, a resampler built per call."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1)))[None]
    if rate != SAMPLE_RATE:
        wav = torchaudio.transforms.Resample(rate, SAMPLE_RATE)(wav)
    return wav


def wav2feature(wav: torch.Tensor) -> torch.Tensor:
    """``AudioProcessor.wav2feature`` for ``feature: mfcc`` (the transform built per call)."""
    mfcc = torchaudio.transforms.MFCC(
        sample_rate=SAMPLE_RATE,
        n_mfcc=40,
        log_mels=False,
        melkwargs={"n_fft": 1200, "win_length": 400, "hop_length": 160, "n_mels": 40},
    )
    return mfcc(wav)


class SpiraV1Dataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``utils/dataset.py`` ``Dataset`` with ``split_wav_using_overlapping`` and
    ``insert_noise`` (training mode)."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], noise: Sequence[Path]):
        self.files, self.labels, self.noise = list(files), list(labels), list(noise)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        wav = load_wav(self.files[idx])
        class_name = self.labels[idx]
        for _ in range(NUM_NOISE):
            noise_wav = load_wav(self.noise[random.randint(0, len(self.noise) - 1)])
            wav_len = wav.shape[1]
            if noise_wav.shape[1] <= wav_len:  # departure: tiled (SPIRA assumes longer noise)
                noise_wav = noise_wav.repeat(1, wav_len // noise_wav.shape[1] + 2)
            start = random.randint(0, noise_wav.shape[1] - (wav_len + 1))
            noise_wav = noise_wav[:, start : start + wav_len]
            max_amp = random.uniform(NOISE_MIN_AMP, NOISE_MAX_AMP)
            reduct_factor = max_amp / float(noise_wav.max().numpy())
            wav = wav + noise_wav * reduct_factor
        start_slice, features, targets = 0, [], []
        step = SAMPLE_RATE * STEP_S
        for end_slice in range(SAMPLE_RATE * WINDOW_S, wav.shape[1], step):
            features.append(wav2feature(wav[:, start_slice:end_slice]).transpose(1, 2))
            targets.append(torch.FloatTensor([class_name]))
            start_slice += step
        if len(features) == 1:
            head = wav[:, : SAMPLE_RATE * WINDOW_S]
            return wav2feature(head).transpose(1, 2), torch.FloatTensor([class_name])
        if not features:
            raise RuntimeError(f"{self.files[idx]} is shorter than {WINDOW_S} s")
        return torch.cat(features, dim=0), torch.cat(targets, dim=0)


def usable(samples: int) -> bool:
    """At least one window: SPIRA's ``range(window, len, step)`` is not empty."""
    return samples > SAMPLE_RATE * WINDOW_S


def own_collate_fn(
    batch: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``utils/dataset.py`` ``own_collate_fn`` for overlapping windows."""
    features = torch.cat([f for f, _ in batch], dim=0)
    targets = torch.cat([t for _, t in batch], dim=0)
    return features, targets.reshape(targets.size(0), -1)


def loader(
    dataset: SpiraV1Dataset, batches: list[list[int]], workers: int
) -> torch.utils.data.DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """``train_dataloader`` with the benchmark's batches of 5 recordings (SPIRA shuffles with
    ``drop_last=True``; here the recordings of each batch are the other paths' too)."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, collate_fn=own_collate_fn
    )
