"""Resampler benchmark (not a test): quality and speed of the 16 kHz resamplers, measured in
one run on the same signals.

    .venv/bin/python benchmarks/resampling.py

Quality, per source rate (signals synthesized analytically at both rates, so the ideal 16 kHz
output is known exactly, whichever resampler is judged):
  - in-band SNR: tones at 100 Hz-5.5 kHz against their exact 16 kHz samples;
  - gain at 7.5 kHz: how flat the passband is near the top mel bands (0 dB is ideal);
  - alias tones: tones between 8.5 and 21 kHz (above the new Nyquist frequency) that must
    vanish; their level in the output (lower is better, -96 dB is the int16 store's floor);
  - sweep: a 0 Hz -> Nyquist linear chirp; output level while it is above 8.5 kHz;
  - difference to a high-quality reference (a long Kaiser-windowed FIR through scipy's
    resample_poly) on the sweep while it is below 7 kHz, in dB below the signal.
Speed: 60 s of noise per source rate, one thread, best of 5, as x realtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from math import gcd

import numpy as np
import soxr
import torch
import torchaudio
from scipy.signal import firwin, resample_poly

SECONDS = 4.0
TARGET = 16_000


def tones(freqs: list[int], rate: int) -> np.ndarray:
    t = np.arange(int(SECONDS * rate)) / rate
    return sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs)) / len(freqs) * 0.5


def torchaudio_sinc(x: np.ndarray, rate: int) -> np.ndarray:
    return torchaudio.transforms.Resample(rate, TARGET)(torch.from_numpy(x)).numpy()


def reference(x: np.ndarray, rate: int) -> np.ndarray:
    common = gcd(rate, TARGET)
    up, down = TARGET // common, rate // common
    taps = firwin(2 * 64 * max(up, down) + 1, 7_900 / (rate * up / 2), window=("kaiser", 14.0))
    return resample_poly(x.astype(np.float64), up, down, window=taps)


METHODS = {
    "torchaudio sinc-hann-6 (old store)": torchaudio_sinc,
    "soxr HQ (soxr-hq-1, chosen)": lambda x, r: soxr.resample(x, r, TARGET, "HQ"),
    "soxr VHQ": lambda x, r: soxr.resample(x, r, TARGET, "VHQ"),
    "soxr MQ": lambda x, r: soxr.resample(x, r, TARGET, "MQ"),
}


def db(ratio: float) -> float:
    return float(10 * np.log10(ratio))


def speed_cases(noise: np.ndarray, rate: int) -> list[tuple[str, Callable[[], object]]]:
    kernel = torchaudio.transforms.Resample(rate, TARGET)
    return [
        ("torchaudio, kernel cached", lambda: kernel(torch.from_numpy(noise))),
        ("torchaudio, kernel built per call", lambda: torchaudio_sinc(noise, rate)),
        ("soxr HQ", lambda: soxr.resample(noise, rate, TARGET, "HQ")),
        ("soxr VHQ", lambda: soxr.resample(noise, rate, TARGET, "VHQ")),
    ]


def main() -> None:
    torch.set_num_threads(1)
    print(
        "| source | resampler | in-band SNR dB | gain 7.5 kHz dB | alias tones dB "
        "| sweep >8.5 kHz dB | vs reference dB |"
    )
    print("|---|---|---|---|---|---|---|")
    edge = slice(1_600, -1_600)  # 0.1 s at each end
    for rate in (48_000, 44_100, 22_050):
        inband = [100, 440, 1_000, 2_500, 4_000, 5_500]
        x = tones(inband, rate).astype(np.float32)
        ideal = tones(inband, TARGET)
        xe = tones([7_500], rate).astype(np.float32)
        alias = (
            [8_500, 9_500, 11_000, 13_000, 15_000, 19_000, 21_000]
            if rate >= 44_100
            else [
                8_500,
                9_000,
                10_000,
            ]
        )
        xa = tones(alias, rate).astype(np.float32)
        t = np.arange(int(SECONDS * rate)) / rate
        top = rate / 2
        chirp = (0.5 * np.sin(2 * np.pi * (top / (2 * SECONDS)) * t**2)).astype(np.float32)
        ref = reference(chirp, rate)
        for name, method in METHODS.items():
            y = method(x, rate)
            n = min(len(y), len(ideal))
            snr = db(np.sum(ideal[:n][edge] ** 2) / np.sum((y[:n][edge] - ideal[:n][edge]) ** 2))
            gain = db(np.mean(method(xe, rate)[edge] ** 2) / np.mean(xe**2))
            folded = db(np.mean(method(xa, rate)[edge] ** 2) / np.mean(xa**2))
            yc = method(chirp, rate)
            m = min(len(yc), len(ref))
            above = slice(int(8_500 / top * SECONDS * TARGET) + 800, m - 1_600)
            sweep = db(np.mean(yc[above] ** 2) / np.mean(chirp**2))
            below = slice(1_600, int(7_000 / top * SECONDS * TARGET))  # sweep under 7 kHz
            diff = db(np.mean((yc[below] - ref[below]) ** 2) / np.mean(ref[below] ** 2))
            print(
                f"| {rate} Hz | {name} | {snr:.1f} | {gain:.2f} | {folded:.1f} | {sweep:.1f} | "
                f"{diff:.1f} |"
            )
    print("\n| source | resampler | x realtime (1 thread, best of 5) |")
    print("|---|---|---|")
    for rate in (48_000, 44_100):
        noise = (np.random.default_rng(0).standard_normal(rate * 60) * 0.1).astype(np.float32)
        for name, run in speed_cases(noise, rate):
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - started)
            print(f"| {rate} Hz | {name} | {60 / best:.0f} |")


if __name__ == "__main__":
    main()
