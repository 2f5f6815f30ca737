"""Patient-grouped, stable train / validation / test assignment, and the checks that it holds.

Each participant pseudonym is hashed (salted SHA-256) to a number in [0, 1) that decides its
split once and for all: adding batches never moves anyone, so the test set only grows. The hash
ignores the label, so a participant whose label changes between batches still has one split;
since it is independent of the label, each class is split in the configured proportions in
expectation (stratified by construction, not by sorting, which would move people as data
arrives).

The split is stored one row per recording. Assigning by pseudonym cannot by itself put one
voice in two splits, so the checks here look for what *can* go wrong in stored data: one audio
file under two participant ids, a table edited by hand, batches pseudonymized under different
keys, and a model's test recordings that appear in its own training data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import polars as pl

SPLITS = ("train", "validation", "test")
SEEN_IN_TRAINING = ("train", "validation")  # validation chooses the checkpoint and threshold
SPLIT_COLUMNS = ("source_batch", "audio_sha256", "participant", "label", "speaker_grouping")


@dataclass(frozen=True)
class SplitConfig:
    validation: float = 0.2
    test: float = 0.2
    salt: str = "spira-split-v1"

    def __post_init__(self) -> None:
        if not (self.validation >= 0 and self.test >= 0 and self.validation + self.test < 1):
            raise ValueError("validation and test shares must be >= 0 and sum below 1")


def settings_text(config: SplitConfig) -> str:
    """The split settings as the table records them (``split_settings``, one value a table)."""
    return json.dumps(asdict(config), sort_keys=True)


def recorded_settings(split: pl.DataFrame) -> list[SplitConfig]:
    """The split settings a stored split was assigned with (none for a table written before
    they were recorded; more than one means rows of different assignments were mixed)."""
    if "split_settings" not in split.columns:
        return []
    texts = sorted(t for t in split.get_column("split_settings").unique().to_list() if t)
    return [SplitConfig(**json.loads(t)) for t in texts]


def split_of(participant: str, config: SplitConfig) -> str:
    digest = hashlib.sha256(f"{config.salt}:{participant}".encode()).hexdigest()
    position = int(digest[:15], 16) / 16**15
    if position < config.test:
        return "test"
    if position < config.test + config.validation:
        return "validation"
    return "train"


def _hashed(config: SplitConfig) -> pl.Expr:
    return pl.col("participant").map_elements(lambda p: split_of(p, config), return_dtype=pl.String)


def assign_splits(recordings: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """One row per recording (rows of ``audio_16k``): its batch, content hash, participant,
    label, speaker grouping and split: the dataset's published split where the import kept
    one (``published_split``), else the participant's hash."""
    frame = with_pcm(recordings).select(
        pl.col("batch_id").alias("source_batch"),
        "audio_sha256",
        "pcm_sha256",
        "participant",
        "label",
        "speaker_grouping",
        pl.col("published_split")
        if "published_split" in recordings.columns
        else pl.lit(None, pl.String).alias("published_split"),
    )
    return (
        frame.with_columns(_hashed(config).alias("hashed"))
        .with_columns(
            pl.coalesce("published_split", "hashed").alias("split"),
            pl.when(pl.col("published_split").is_not_null())
            .then(pl.lit("published"))
            .otherwise(pl.lit("hash"))
            .alias("assigned_by"),
        )
        .drop("published_split", "hashed")
        .with_columns(pl.lit(settings_text(config)).alias("split_settings"))
        .sort("source_batch", "audio_sha256")
    )


def _listed(frame: pl.DataFrame, column: str, limit: int = 20) -> list[str]:
    return sorted(str(v) for v in frame.get_column(column).to_list())[:limit]


def participants_in_two_splits(split: pl.DataFrame) -> list[str]:
    """Participants with recordings in more than one split."""
    counts = split.group_by("participant").agg(pl.col("split").n_unique().alias("n"))
    return _listed(counts.filter(pl.col("n") > 1), "participant")


def with_pcm(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a ``pcm_sha256`` column (null where it was stored before the column)."""
    if "pcm_sha256" in frame.columns:
        return frame
    return frame.with_columns(pl.lit(None, pl.String).alias("pcm_sha256"))


def audio_in_two_places(split: pl.DataFrame) -> list[str]:
    """The same audio under two participant ids, or in two splits: one voice counted as two
    people, the leak pseudonyms alone cannot show. The same audio is the same file content or
    the same 16 kHz samples (another encoding of one recording)."""
    problems = []
    for column, what in (("audio_sha256", "audio"), ("pcm_sha256", "decoded audio")):
        counts = (
            with_pcm(split)
            .filter(pl.col(column).is_not_null())
            .group_by(column)
            .agg(
                pl.col("split").n_unique().alias("splits"),
                pl.col("participant").n_unique().alias("participants"),
                pl.col("audio_sha256").n_unique().alias("files"),
            )
        )
        bad = counts.filter((pl.col("splits") > 1) | (pl.col("participants") > 1))
        if column == "pcm_sha256":  # reported once: the same file is the line above
            bad = bad.filter(pl.col("files") > 1)
        problems += [
            f"{what} {sha[:12]}: {participants} participant ids, {splits} splits"
            for sha, splits, participants in bad.sort(column)
            .select(column, "splits", "participants")
            .head(20)
            .iter_rows()
        ]
    return problems


def edited_assignments(
    split: pl.DataFrame, config: SplitConfig, recordings: pl.DataFrame | None = None
) -> list[str]:
    """Recordings whose stored split is not the one ``dataset_split`` assigns: the dataset's
    published split where the import kept one (``published_split`` of their ``audio_16k``
    rows in ``recordings``), else their participant's hash. A difference means the table was
    changed after it was written, including a published assignment moved by hand."""
    published = (
        recordings.select(
            pl.col("batch_id").alias("source_batch"), "audio_sha256", "published_split"
        ).unique(["source_batch", "audio_sha256"])
        if recordings is not None and "published_split" in recordings.columns
        else pl.DataFrame(
            schema={
                "source_batch": pl.String,
                "audio_sha256": pl.String,
                "published_split": pl.String,
            }
        )
    )
    expected = (
        split.select("source_batch", "audio_sha256", "participant", "split")
        .join(published, on=["source_batch", "audio_sha256"], how="left")
        .with_columns(pl.coalesce("published_split", _hashed(config)).alias("assigned"))
    )
    moved = (
        expected.filter(pl.col("split") != pl.col("assigned"))
        .select("participant", "split", "assigned")
        .unique()
        .sort("participant", "split", "assigned")
    )
    return [f"{p} stored in {s!r}, assigned to {a!r}" for p, s, a in moved.head(20).iter_rows()]


def key_ids_by_batch(recordings: pl.DataFrame) -> dict[str, list[str]]:
    """Pseudonym key id -> batches pseudonymized under it (more than one key: ids of one
    person no longer match across batches)."""
    pairs = recordings.select("pseudonym_key_id", "batch_id").unique()
    return {
        str(key): sorted(group.get_column("batch_id").to_list())
        for (key,), group in pairs.group_by("pseudonym_key_id")
    }


def split_problems(
    split: pl.DataFrame, config: SplitConfig, recordings: pl.DataFrame | None = None
) -> list[str]:
    """Everything wrong with a stored split table, for a consumer about to train on it
    (``recordings``: its ``audio_16k`` rows, whose published splits are honoured)."""
    recorded = recorded_settings(split)
    if len(recorded) > 1:
        return [f"rows assigned under {len(recorded)} different split settings: {recorded}"]
    if recorded and recorded[0] != config:
        return [
            f"the split was assigned with {recorded[0]}, this run's settings are {config}: "
            "materialize dataset_split with the run's settings"
        ]
    problems = [f"participant in two splits: {p}" for p in participants_in_two_splits(split)]
    problems += audio_in_two_places(split)
    problems += [f"edited by hand: {e}" for e in edited_assignments(split, config, recordings)]
    return problems


def seen_in_training(model_split: pl.DataFrame) -> pl.DataFrame:
    return model_split.filter(pl.col("split").is_in(SEEN_IN_TRAINING))


def _same_audio(seen: pl.DataFrame) -> pl.Expr:
    """Rows whose file or 16 kHz samples are among those of ``seen``."""
    pcm = with_pcm(seen).get_column("pcm_sha256").drop_nulls()
    return pl.col("audio_sha256").is_in(seen.get_column("audio_sha256").implode()) | (
        pl.col("pcm_sha256").is_not_null() & pl.col("pcm_sha256").is_in(pcm.implode())
    )


def test_set_leaks(model_split: pl.DataFrame) -> list[str]:
    """Test recordings of a model whose participant or audio (file or 16 kHz samples) is also
    in that model's own training or validation data."""
    split = with_pcm(model_split)
    seen = seen_in_training(split)
    test = split.filter(pl.col("split") == "test")
    people = test.filter(pl.col("participant").is_in(seen.get_column("participant").implode()))
    audio = test.filter(_same_audio(seen))
    return [f"test participant also trained on: {p}" for p in _listed(people, "participant")] + [
        f"test audio also trained on: {a[:12]}" for a in _listed(audio, "audio_sha256")
    ]


def unseen_by(recordings: pl.DataFrame, *model_splits: pl.DataFrame) -> pl.DataFrame:
    """Recordings none of the models saw in training or validation, by participant and by
    audio (file or 16 kHz samples; columns of ``recordings`` kept)."""
    had_pcm = "pcm_sha256" in recordings.columns
    out = with_pcm(recordings)
    for model_split in model_splits:
        seen = seen_in_training(with_pcm(model_split))
        out = out.filter(
            ~pl.col("participant").is_in(seen.get_column("participant").implode())
            & ~_same_audio(seen)
        )
    return out if had_pcm else out.drop("pcm_sha256")
