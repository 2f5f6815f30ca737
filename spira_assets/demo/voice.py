"""A small source-filter speech synthesizer for SPIRA-like utterances.

A glottal pulse train (with jitter, shimmer and aspiration noise) is shaped by three formant
resonators per syllable and an amplitude envelope with syllable rhythm; phrases are separated
by pauses that may carry an audible inhalation. Respiratory insufficiency shows in speech as
shorter phrases, more and longer pauses, audible inhalations and a breathier voice (SPIRA.md);
``BreathingProfile`` holds exactly those quantities, so the class signal is explicit and can be
scaled down to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

RATE = 16_000
# (F1, F2, F3) in Hz for Brazilian-Portuguese oral vowels (adult male reference).
VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730.0, 1250.0, 2550.0),
    "e": (480.0, 1900.0, 2550.0),
    "i": (300.0, 2250.0, 3000.0),
    "o": (500.0, 900.0, 2450.0),
    "u": (330.0, 800.0, 2300.0),
}
# Syllable vowel skeletons of SPIRA's utterances (consonants rendered as short noise/gaps).
UTTERANCE_TEXT: dict[str, str] = {
    "aceite": "aeieaeooaaooeaaieo",  # consent phrase
    "parlenda": "aaiaaoaoaeaaaaeoaoaaaaaeoaao",  # "Batatinha quando nasce..."
    "frase": "oaoaoioauaeeaaooaoiuoaoaeeiaa",  # "O amor ao proximo ajuda..."
    "sustentada": "a",  # sustained vowel
}


@dataclass(frozen=True)
class Speaker:
    f0_hz: float
    formant_scale: float
    syllables_per_s: float
    jitter: float
    shimmer: float


@dataclass(frozen=True)
class BreathingProfile:
    """What respiratory effort does to speech; controls and patients differ only here."""

    phrase_syllables: float  # mean syllables between breath pauses
    pause_s: float  # mean breath-pause length
    inhalation_level: float  # loudness of the audible inhalation in a pause (0..1 of voice)
    breathiness: float  # aspiration noise mixed into the voice (0..1)
    sustain_s: float  # how long the sustained vowel lasts


CONTROL_BREATHING = BreathingProfile(
    phrase_syllables=14.0, pause_s=0.30, inhalation_level=0.04, breathiness=0.08, sustain_s=7.0
)
PATIENT_SHIFT = BreathingProfile(
    phrase_syllables=-8.0, pause_s=0.45, inhalation_level=0.22, breathiness=0.30, sustain_s=-3.5
)


def breathing_for(label: int, effect_size: float, rng: np.random.Generator) -> BreathingProfile:
    """A participant's profile: the control mean, shifted by ``effect_size`` for patients,
    with the same person-to-person spread in both classes."""
    shift = effect_size if label == 1 else 0.0
    c, d = CONTROL_BREATHING, PATIENT_SHIFT
    return BreathingProfile(
        phrase_syllables=max(
            2.5, c.phrase_syllables + shift * d.phrase_syllables + rng.normal(0, 2.0)
        ),
        pause_s=max(0.12, c.pause_s + shift * d.pause_s + rng.normal(0, 0.08)),
        inhalation_level=max(
            0.0, c.inhalation_level + shift * d.inhalation_level + rng.normal(0, 0.03)
        ),
        breathiness=float(
            np.clip(c.breathiness + shift * d.breathiness + rng.normal(0, 0.04), 0.0, 0.9)
        ),
        sustain_s=max(1.5, c.sustain_s + shift * d.sustain_s + rng.normal(0, 1.2)),
    )


def random_speaker(sex: str, rng: np.random.Generator) -> Speaker:
    female = sex == "F"
    return Speaker(
        f0_hz=float(rng.normal(205.0 if female else 118.0, 18.0 if female else 12.0)),
        formant_scale=float(rng.normal(1.16 if female else 1.0, 0.03)),
        syllables_per_s=float(rng.normal(4.6, 0.4)),
        jitter=float(abs(rng.normal(0.01, 0.003))),
        shimmer=float(abs(rng.normal(0.06, 0.02))),
    )


def _resonator(center: float, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bandwidth / RATE)
    theta = 2 * np.pi * center / RATE
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    b = np.array([1.0 - r])
    return b, a


def _glottal_source(
    n: int, speaker: Speaker, breathiness: float, rng: np.random.Generator
) -> np.ndarray:
    t = np.arange(n) / RATE
    contour = (
        speaker.f0_hz * (1.0 - 0.08 * t / max(t[-1], 1e-3)) if n > 1 else np.full(n, speaker.f0_hz)
    )
    contour = contour * (
        1.0 + speaker.jitter * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    )
    phase = np.cumsum(contour / RATE)
    frac = phase % 1.0
    open_quotient = 0.6
    pulse = np.where(frac < open_quotient, np.sin(np.pi * frac / open_quotient) ** 2, 0.0)
    source = np.diff(pulse, prepend=0.0) * 8.0
    cycle = np.floor(phase).astype(np.int64)
    shimmer = 1.0 + speaker.shimmer * rng.standard_normal(cycle.max() + 2)
    source *= shimmer[cycle]
    aspiration = rng.standard_normal(n) * (0.35 + 0.65 * pulse)
    return (1.0 - breathiness) * source + breathiness * 0.6 * aspiration


def _formants(signal: np.ndarray, vowel: str, speaker: Speaker) -> np.ndarray:
    out = np.zeros_like(signal)
    for formant, bandwidth, gain in zip(
        VOWELS[vowel], (80.0, 100.0, 140.0), (1.0, 0.7, 0.35), strict=True
    ):
        b, a = _resonator(formant * speaker.formant_scale, bandwidth)
        out += gain * lfilter(b, a, signal)
    return out


def _envelope(n: int, attack: int) -> np.ndarray:
    env = np.ones(n)
    attack = max(1, min(attack, n // 2))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, attack))
    env[:attack] = ramp
    env[-attack:] = ramp[::-1]
    return env


def _inhalation(n: int, level: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(n)
    b, a = _resonator(1800.0, 1400.0)
    shaped = lfilter(b, a, noise)
    shaped /= max(np.abs(shaped).max(), 1e-9)
    return level * shaped * np.sin(np.linspace(0, np.pi, n)) ** 2


def synthesize(
    utterance: str, speaker: Speaker, breathing: BreathingProfile, rng: np.random.Generator
) -> np.ndarray:
    """Float32 mono audio at 16 kHz, peak about 0.5, leading/trailing room silence."""
    pieces: list[np.ndarray] = [np.zeros(int(RATE * rng.uniform(0.2, 0.5)))]
    if utterance == "sustentada":
        n = int(RATE * breathing.sustain_s)
        voice = _formants(_glottal_source(n, speaker, breathing.breathiness, rng), "a", speaker)
        voice = voice / max(np.abs(voice).max(), 1e-9) * _envelope(n, int(0.08 * RATE))
        pieces += [_inhalation(int(RATE * 0.6), breathing.inhalation_level * 2, rng), voice]
    else:
        syllable_s = 1.0 / speaker.syllables_per_s
        since_breath = 0
        phrase_len = max(2, int(rng.poisson(breathing.phrase_syllables)))
        for vowel in UTTERANCE_TEXT[utterance]:
            if since_breath >= phrase_len:
                pause = int(
                    RATE * max(0.08, rng.normal(breathing.pause_s, breathing.pause_s * 0.25))
                )
                pieces.append(_inhalation(pause, breathing.inhalation_level, rng))
                since_breath = 0
                phrase_len = max(2, int(rng.poisson(breathing.phrase_syllables)))
            n = int(RATE * syllable_s * rng.uniform(0.8, 1.2))
            consonant = int(n * rng.uniform(0.15, 0.3))
            voiced = n - consonant
            burst = rng.standard_normal(consonant) * 0.05 * rng.uniform(0.0, 1.0)
            voice = _formants(
                _glottal_source(voiced, speaker, breathing.breathiness, rng), vowel, speaker
            )
            voice = voice / max(np.abs(voice).max(), 1e-9) * _envelope(voiced, int(0.02 * RATE))
            pieces += [burst, voice * rng.uniform(0.7, 1.0)]
            since_breath += 1
    pieces.append(np.zeros(int(RATE * rng.uniform(0.2, 0.5))))
    audio = np.concatenate(pieces)
    audio = audio / max(np.abs(audio).max(), 1e-9) * 0.5
    return audio.astype(np.float32)
