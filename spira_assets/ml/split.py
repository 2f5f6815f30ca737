"""Patient-grouped, stable train / validation / test assignment.

Each participant pseudonym is hashed (salted SHA-256) to a number in [0, 1) that decides its
split once and for all: adding batches never moves anyone, so the test set only grows and no
voice is ever in two splits. The hash ignores the label, so a participant whose label changes
between batches still has one split; since it is independent of the label, each class is
split in the configured proportions in expectation (stratified by construction, not by
sorting, which would move people as data arrives).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    validation: float = 0.2
    test: float = 0.2
    salt: str = "spira-split-v1"

    def __post_init__(self) -> None:
        if not (self.validation >= 0 and self.test >= 0 and self.validation + self.test < 1):
            raise ValueError("validation and test shares must be >= 0 and sum below 1")


def split_of(participant: str, config: SplitConfig) -> str:
    digest = hashlib.sha256(f"{config.salt}:{participant}".encode()).hexdigest()
    position = int(digest[:15], 16) / 16**15
    if position < config.test:
        return "test"
    if position < config.test + config.validation:
        return "validation"
    return "train"


def assign_splits(recordings: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """One row per participant: label (max over recordings), first batch, recordings, split."""
    participants = recordings.group_by("participant").agg(
        pl.col("label").max().alias("label"),
        pl.col("batch_id").min().alias("first_batch"),
        pl.len().alias("recordings"),
    )
    return participants.with_columns(
        pl.col("participant")
        .map_elements(lambda p: split_of(p, config), return_dtype=pl.String)
        .alias("split")
    ).sort("participant")


def leaked_participants(assignments: pl.DataFrame) -> list[str]:
    """Participants that appear in more than one split (must be none)."""
    counts = assignments.group_by("participant").agg(pl.col("split").n_unique().alias("n"))
    return sorted(counts.filter(pl.col("n") > 1).get_column("participant").to_list())
