"""The training core (``ml/training_inputs.py``): the split guard every training run applies,
and the noise a profile reads, on planted faults."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
from upath import UPath

from spira_assets.ml.protocol import PROFILES, SPIRA_ACL2021
from spira_assets.ml.split import SplitConfig, assign_splits, split_of, split_problems
from spira_assets.ml.train_config import TrainConfig
from spira_assets.ml.training_inputs import current_noise
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import HOSPITAL_NOISE, UNPARTITIONED

CONFIG = SplitConfig()


def _recordings(published: list[str | None]) -> pl.DataFrame:
    """audio_16k-like rows, one participant each, with the import's published split."""
    n = len(published)
    return pl.DataFrame(
        {
            "batch_id": ["acl"] * n,
            "audio_sha256": [f"{i:064x}" for i in range(n)],
            "participant": [f"P-{i:04d}" for i in range(n)],
            "label": [i % 2 for i in range(n)],
            "speaker_grouping": ["import-pattern"] * n,
            "published_split": published,
        },
        schema_overrides={"published_split": pl.String},
    )


def test_a_published_split_is_honoured_and_a_moved_assignment_is_still_an_edit() -> None:
    published = ["train", "validation", "test"] * 4
    recordings = _recordings(published)
    # the published assignments differ from the hashed ones for most participants: the main of
    # 2026-12-04 reported each of them as a hand edit and refused to train
    differs = [
        p for p, s in zip(recordings["participant"], published, strict=True)
        if split_of(p, CONFIG) != s
    ]  # fmt: skip
    assert len(differs) >= 6
    split = assign_splits(recordings, CONFIG)
    assert split_problems(split, CONFIG, recordings) == []
    # planted fault: one published test recording moved to train by hand
    moved = split.with_columns(
        pl.when(pl.col("audio_sha256") == f"{2:064x}")
        .then(pl.lit("train"))
        .otherwise(pl.col("split"))
        .alias("split")
    )
    assert split_problems(moved, CONFIG, recordings) == [
        "edited by hand: P-0002 stored in 'train', assigned to 'test'"
    ]
    # a hashed assignment moved by hand is caught as before
    hashed = _recordings([None] * 12)
    split = assign_splits(hashed, CONFIG)
    first = split.row(0, named=True)
    other = next(s for s in ("train", "validation", "test") if s != first["split"])
    edited = split.with_columns(
        pl.when(pl.col("participant") == first["participant"])
        .then(pl.lit(other))
        .otherwise(pl.col("split"))
        .alias("split")
    )
    assert split_problems(edited, CONFIG, hashed) == [
        f"edited by hand: {first['participant']} stored in {other!r}, "
        f"assigned to {first['split']!r}"
    ]


def test_a_split_assigned_with_other_settings_is_named_not_taken_for_edits() -> None:
    recordings = _recordings([None] * 12)
    split = assign_splits(recordings, SplitConfig(validation=0.3, test=0.4))
    problems = split_problems(split, CONFIG, recordings)
    assert len(problems) == 1 and "the split was assigned with" in problems[0]
    assert "materialize dataset_split with the run's settings" in problems[0]
    mixed = pl.concat([split.head(6), assign_splits(recordings, CONFIG).tail(6)])
    assert "2 different split settings" in split_problems(mixed, CONFIG, recordings)[0]


def test_the_published_profile_reads_noise_data_csv_as_spiras_reader_does(tmp_path: Path) -> None:
    """SPIRA's loader reads the headerless noise_data.csv with pandas' default header row, so
    the file on its first line is never drawn from; the platform profile uses every line."""
    lake = Lake(UPath(tmp_path / "lake"))
    sources = ["acl_noise_data_00001.wav", "acl_noise_data_00002.wav", "ward.wav"]
    lake.write_part(
        HOSPITAL_NOISE,
        UNPARTITIONED,
        pl.DataFrame(
            {
                "batch_id": [UNPARTITIONED] * 3,
                "noise_sha256": ["a", "b", "c"],
                "source": sources,
                "sample_offset": [0, 100, 250],
                "samples": [100, 150, 50],
                "duration_s": [1.0, 1.0, 1.0],
                "shard": ["waveforms/noise/n.int16"] * 3,
            }
        ),
    )
    published = current_noise(lake, PROFILES[SPIRA_ACL2021])
    assert published.left_out == ("acl_noise_data_00001.wav",)
    assert published.spans == ((100, 150), (250, 50))
    platform = current_noise(lake, TrainConfig())
    assert platform.left_out == () and platform.spans == ((0, 100), (100, 150), (250, 50))
    # the reading is a setting of the profile, not of the name alone
    reading = replace(
        TrainConfig(), augment=replace(TrainConfig().augment, skip_noise_list_header=True)
    )
    assert current_noise(lake, reading).left_out == ("acl_noise_data_00001.wav",)
