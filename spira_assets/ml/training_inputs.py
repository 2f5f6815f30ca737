"""A training run's inputs, built in one place for every run that trains: ``spira_model``,
sweep trials and reproduction (no Dagster).

Each caller gets the same guards, because there is one path: the split is verified before
anything trains on it (no participant or audio in two splits, no assignment edited by hand,
one pseudonym key, no blocked batch, no recording gone from ``audio_16k``), the noise bank is
the profile's reading of the hospital-noise files, and the version fingerprint is computed from
the same record the lineage keeps. What a caller needs later is a typed field of
:class:`TrainingPlan` or :class:`TrainingData`, never a display string to parse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from spira_assets.features.augment import NoiseBank
from spira_assets.features.config import FeatureConfig
from spira_assets.ingest.gates import blocked_batches, describe_blocked
from spira_assets.ingest.provenance import (
    NOT_SPEAKER_SAFE,
    SPEAKER_WARNING,
    is_noise_list_header,
)
from spira_assets.ml.data import RecordingSet
from spira_assets.ml.inputs import (
    local_shards,
    noise_bank,
    noise_files,
    recordings_by_split,
    stored_features,
    with_split,
)
from spira_assets.ml.lineage import code_version, fingerprint
from spira_assets.ml.split import SplitConfig, key_ids_by_batch, split_problems
from spira_assets.ml.train_config import TrainConfig
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import AUDIO_16K, DATASET_SPLIT, UNPARTITIONED

SPLIT_ROW_COLUMNS = ("source_batch", "audio_sha256", "participant", "split")
TRAINING_SPLITS = ("train", "validation")


class TrainingInputsRefused(Exception):
    """The inputs of a training run fail a guard. Not a ``ValueError``: a sweep trial records
    a diverged run as a result, but a refused split must stop it."""

    def __init__(self, what: str, problems: list[str], advice: str) -> None:
        self.problems = problems
        super().__init__(
            f"refusing to train on {what}: " + "; ".join(problems[:20]) + f". {advice}"
        )


@dataclass(frozen=True)
class NoiseChoice:
    """The hospital-noise files a run inserts: a shard and each file's (offset, length), after
    the profile's reading of the noise lists (``AugmentConfig.skip_noise_list_header``)."""

    shard: str | None
    spans: tuple[tuple[int, int], ...] = ()
    left_out: tuple[str, ...] = ()  # files the profile does not use (SPIRA's header line)


@dataclass(frozen=True)
class TrainingPlan:
    """What a run trains on, verified: the split rows, their recordings, the noise, and the
    record its version fingerprint is made of (``inputs``, kept in the lineage)."""

    split: pl.DataFrame
    recordings: pl.DataFrame  # audio_16k rows with their split
    noise: NoiseChoice
    inputs: dict[str, Any]

    @property
    def version(self) -> str:
        return fingerprint(self.inputs)

    @property
    def seeds(self) -> list[int]:
        return list(self.inputs["seeds"])

    @property
    def speaker_independence(self) -> str:
        return speaker_independence(self.split)


@dataclass(frozen=True)
class TrainingData:
    """The recordings of each split on their shards, the noise bank, and whether clean
    windows come from the feature store (recorded in the lineage as a boolean)."""

    sets: dict[str, RecordingSet]
    bank: NoiseBank | None
    clean_from_store: bool

    @property
    def clean_source(self) -> str:
        """For people: where the clean validation windows came from."""
        if self.clean_from_store:
            return "feature store (spectrogram_features)"
        return "computed from audio_16k (no stored features of this configuration)"


def split_rows_fingerprint(split: pl.DataFrame) -> str:
    """Which recordings are in which split, as the version fingerprint records it."""
    return fingerprint({"rows": split.select(SPLIT_ROW_COLUMNS).sort(SPLIT_ROW_COLUMNS).rows()})


def speaker_independence(split: pl.DataFrame) -> str:
    not_safe = split.filter(pl.col("speaker_grouping").is_in(sorted(NOT_SPEAKER_SAFE))).height
    return SPEAKER_WARNING.format(n=not_safe) if not_safe else "guaranteed"


def split_guard(
    lake: Lake,
    split: pl.DataFrame,
    recordings: pl.DataFrame,
    config: SplitConfig,
    *,
    blocked_now: bool = True,
) -> list[str]:
    """Everything that forbids training on ``split`` (a ``dataset_split`` table or a model's
    recorded split) with ``recordings`` (its ``audio_16k`` rows): leaks, hand edits (a
    published assignment is honoured, a change of it is an edit), several pseudonym keys,
    recordings gone, and, with ``blocked_now``, batches blocked since."""
    problems = split_problems(split, config, recordings)
    keys = key_ids_by_batch(recordings)
    if len(keys) > 1:
        problems.append(f"batches pseudonymized under different keys: {keys}")
    if blocked_now:
        blocked = blocked_batches(lake, split.get_column("source_batch").unique().to_list())
        if blocked:
            problems.append(describe_blocked(blocked))
    if recordings.height != split.height:
        problems.append(
            f"{split.height - recordings.height} recordings of the split are no longer in audio_16k"
        )
    return problems


def current_noise(lake: Lake, train: TrainConfig) -> NoiseChoice:
    """Today's hospital-noise shard, read as the profile reads noise lists: with
    ``skip_noise_list_header`` (the published profile) the file ``import-spira`` copied from
    the first line of an ACL2021 ``noise_data.csv`` is left out, as SPIRA's reader takes that
    line for a header."""
    files = noise_files(lake)
    if files.is_empty():
        return NoiseChoice(None)
    kept, left_out = [], []
    for source, offset, samples in files.select("source", "sample_offset", "samples").iter_rows():
        if train.augment.skip_noise_list_header and is_noise_list_header(str(source)):
            left_out.append(str(source))
        else:
            kept.append((int(offset), int(samples)))
    shard = str(files.get_column("shard")[0]) if kept else None
    return NoiseChoice(shard, tuple(kept), tuple(left_out))


def plan_training(
    lake: Lake,
    features: FeatureConfig,
    train: TrainConfig,
    split_config: SplitConfig,
    seeds: list[int],
) -> TrainingPlan:
    """The verified inputs of a new training run on the current ``dataset_split``; raises
    :class:`TrainingInputsRefused` naming every problem."""
    if not lake.has_part(DATASET_SPLIT, UNPARTITIONED):
        raise TrainingInputsRefused(
            "dataset_split", ["it has not been materialized yet"], "Materialize dataset_split."
        )
    split = lake.read_part(DATASET_SPLIT, UNPARTITIONED)
    recordings = with_split(lake.read_table(AUDIO_16K), split)
    problems = split_guard(lake, split, recordings, split_config)
    if problems:
        raise TrainingInputsRefused(
            "dataset_split",
            problems,
            "Re-materialize dataset_split (and the named batches).",
        )
    noise = current_noise(lake, train)
    batches = dict(
        recordings.group_by("batch_id").agg(pl.col("shard").first()).sort("batch_id").rows()
    )
    inputs = {
        "batches": batches,
        "noise": [noise.shard] if noise.shard else [],
        "feature_config_hash": features.config_hash(),
        "train_config": asdict(train),
        "split": asdict(split_config),
        "split_rows": split_rows_fingerprint(split),
        "seeds": list(seeds),
        "code_version": code_version(),
    }
    return TrainingPlan(split, recordings, noise, inputs)


def recorded_plan(layout: DataLayout, version: str, lineage: dict[str, Any]) -> TrainingPlan:
    """The inputs of a past run, from its lineage record: exactly the recorded batch data
    versions and noise, and the model's own ``split.parquet`` (required: a split rebuilt from
    today's data would be another experiment), checked by the same split guard (a batch
    blocked since is no reason to refuse an audit). Raises
    :class:`ReproductionInputsMissing` naming what is gone."""
    from spira_assets.ml.artifacts import CONFIG, SPLIT

    lake = Lake(layout.lake)
    directory = layout.local(f"models/{version}")
    missing = [str(directory / name) for name in (SPLIT, CONFIG) if not (directory / name).exists()]
    current = lake.read_table(AUDIO_16K)
    parts = []
    for batch_id, shard in sorted(lineage["batches"].items()):
        rows = current.filter((pl.col("batch_id") == batch_id) & (pl.col("shard") == shard))
        if rows.is_empty():
            now = current.filter(pl.col("batch_id") == batch_id).get_column("shard").unique()
            detail = f"now {now.to_list()[0]}" if now.len() else "the batch is gone"
            missing.append(f"batch {batch_id}: data version {shard} ({detail})")
        elif not Path(str(layout.local(shard))).exists():
            missing.append(f"batch {batch_id}: waveform file {shard} was deleted")
        else:
            parts.append(rows)
    for shard in lineage["noise"]:
        if not Path(str(layout.local(shard))).exists():
            missing.append(f"hospital noise: data version {shard}")
    if missing:
        raise ReproductionInputsMissing(version, missing)
    split = pl.read_parquet(directory / SPLIT)
    recordings = with_split(pl.concat(parts), split)
    problems = split_guard(
        lake, split, recordings, SplitConfig(**lineage["split"]), blocked_now=False
    )
    if problems:
        raise TrainingInputsRefused(
            f"the recorded split of model {version}",
            problems,
            "The model's recorded inputs no longer hold; it cannot be reproduced as recorded.",
        )
    spans = tuple((int(o), int(n)) for o, n in lineage.get("noise_files") or [])
    noise = NoiseChoice(lineage["noise"][0] if lineage["noise"] else None, spans)
    return TrainingPlan(split, recordings, noise, dict(lineage))


class ReproductionInputsMissing(RuntimeError):
    """A recorded input (model record, batch data version, noise) is no longer available."""

    def __init__(self, version: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"model version {version} cannot be reproduced; missing:\n  - " + "\n  - ".join(missing)
        )


def load_training_data(
    plan: TrainingPlan,
    layout: DataLayout,
    features: FeatureConfig,
    train: TrainConfig,
    device: torch.device | str,
    splits: tuple[str, ...] = TRAINING_SPLITS,
    clean_from_store: bool | None = None,
) -> TrainingData:
    """The plan's recordings of ``splits`` on local shards, with their stored clean frames
    when the run reads them, and its noise bank. ``clean_from_store``: None decides as
    training does (stored frames when the transform runs per recording and the store holds
    this configuration); a reproduction passes what the lineage recorded."""
    lake = Lake(layout.lake)
    root = local_shards(layout, plan.recordings)
    wants_store = (
        train.transform_unit == "recording" if clean_from_store is None else clean_from_store
    )
    index = stored_features(lake, layout, features.config_hash()) if wants_store else None
    if clean_from_store and index is None:
        raise ReproductionInputsMissing(
            plan.inputs.get("model_version", "?"),
            [f"stored features of configuration {features.config_hash()}"],
        )
    sets = recordings_by_split(plan.recordings, root, splits, index, features.n_features)
    clean = sets["validation"] if "validation" in sets else next(iter(sets.values()))
    bank = (
        noise_bank(lake, layout, device, plan.noise.shard, list(plan.noise.spans) or None)
        if plan.noise.shard
        else None
    )
    return TrainingData(sets, bank, clean.stored is not None)
