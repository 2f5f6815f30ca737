"""How a model is evaluated, as a value without numpy or torch (the Dagster resource
``EvaluationSettings`` takes its defaults from here, and ``evaluation/metrics.py`` its own)."""

from __future__ import annotations

from dataclasses import dataclass

# Share of bootstrap draws that must be defined for an interval (evaluation and the gate).
MIN_DEFINED_DRAWS = 0.95


@dataclass(frozen=True)
class EvaluationConfig:
    bootstrap_resamples: int = 1000  # participant-bootstrap draws of every interval
    # a subgroup is judgeable with at least this many participants, and this many of each class
    min_subgroup_participants: int = 10
    min_subgroup_per_class: int = 3
    noisy_seed: int = 1  # seed family of the fixed noisy test set


EVALUATION = EvaluationConfig()
