"""Hospital ambience for noise-insertion augmentation: HVAC rumble, mains hum, patient-monitor
beeps, ventilator breathing cycles and distant babble, mixed at random levels."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from spira_assets.demo.voice import RATE, breathing_for, random_speaker, synthesize


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    # Paul Kellet's economy pink-noise filter.
    b = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    a = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
    return lfilter(b, a, rng.standard_normal(n))


def hospital_ambience(seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    rumble = _pink(n, rng)
    rumble /= max(np.abs(rumble).max(), 1e-9)
    hum = sum(np.sin(2 * np.pi * 60 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
    beep_period = rng.uniform(0.8, 1.6)
    beep_gate = ((t % beep_period) < 0.12).astype(float)
    beep = np.sin(2 * np.pi * rng.choice([880.0, 1000.0, 1200.0]) * t) * beep_gate
    ventilator = rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(3, 5)))
    babble = np.zeros(n)
    for _ in range(3):
        voice = synthesize(
            "frase",
            random_speaker(str(rng.choice(["F", "M"])), rng),
            breathing_for(0, 0.0, rng),
            rng,
        )
        start = int(rng.integers(0, max(1, n - len(voice))))
        babble[start : start + len(voice)] += voice[: n - start]
    mix = (
        rng.uniform(0.3, 0.8) * rumble
        + rng.uniform(0.02, 0.1) * hum
        + rng.uniform(0.0, 0.3) * beep
        + rng.uniform(0.05, 0.25) * ventilator
        + rng.uniform(0.1, 0.5) * babble
    )
    return (mix / max(np.abs(mix).max(), 1e-9) * rng.uniform(0.3, 0.7)).astype(np.float32)
