"""Asset ``spectrogram_features``: MFCC (or mel/linear) frames of every recording of a batch,
computed in device batches, stored per feature configuration."""

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.presentation import (
    PLOT_EXAMPLES,
    column_schema,
    data_version,
    headline_first,
    image,
    table_metadata,
)
from spira_assets.assets.ranges import SINGLE_RUN, RangeEvent, open_batch_outputs
from spira_assets.assets.tables import table_out, with_tables
from spira_assets.features.config import FeatureConfig, WindowConfig
from spira_assets.features.windows import instances
from spira_assets.partitions import collection_batch
from spira_assets.resources import ComputeResource, FeatureSettings, StorageResource
from spira_assets.storage.shards import ShardWriter, open_shard, remove_superseded_shards

if TYPE_CHECKING:
    from spira_assets.features.extract import FeatureStats
from spira_assets.storage.tables import AUDIO_16K, FEATURE_STATS, SPECTROGRAM_FEATURES


def stats_frame(batch_id: str, config_hash: str, stats: "FeatureStats") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "batch_id": [batch_id] * stats.width,
            "config_hash": [config_hash] * stats.width,
            "coefficient": list(range(stats.width)),
            "mean": stats.mean(),
            "std": stats.std(),
            "min": stats.low if stats.frames else np.full(stats.width, np.nan),
            "max": stats.high if stats.frames else np.full(stats.width, np.nan),
            "frames": [stats.frames] * stats.width,
        },
        schema=FEATURE_STATS.schema,
    )


@dg.multi_asset(
    name="spectrogram_features",
    partitions_def=collection_batch,
    outs={
        "spectrogram_features": dg.AssetOut(
            group_name="features",
            kinds={"torch", "numpy", "parquet"},
            code_version=versions.SPECTROGRAM_FEATURES,
            description="Features of every recording of the batch (MFCC by default, SPIRA's "
            "configuration) as float32 frames under features/<config_hash>/, with an index "
            "(frame offset, frames, windows). Training reads its clean windows from here.",
            metadata={"dagster/column_schema": column_schema(SPECTROGRAM_FEATURES)},
        ),
        "feature_stats": table_out(
            FEATURE_STATS,
            "Per-coefficient mean, SD, min and max of the batch's frames for each feature "
            "configuration: what batch_drift compares with the champion's training batches.",
            "features",
            versions.SPECTROGRAM_FEATURES,
        ),
    },
    deps=["audio_16k", "batch_checks"],
    backfill_policy=SINGLE_RUN,
)
def spectrogram_features(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    features: FeatureSettings,
    compute: ComputeResource,
) -> Iterator[RangeEvent]:
    """Features of every recording in ``audio_16k`` with the configured transform on the
    configured device (each recording's frames equal torchaudio's transform of it alone,
    computed in cache-sized chunks of frames of consecutive recordings), stored as float32
    frames under ``features/<config_hash>/``, with an index
    (frame offset, frames, 4 s/1 s windows) and per-coefficient statistics for drift checks.
    A backfill does a range of batches in one run; blocked batches are refused (a range
    materializes its other batches and fails naming them)."""
    config_hash = features.config().config_hash()

    def one(batch_id: str) -> tuple[dg.MaterializeResult, ...]:
        result = _features(context, batch_id, storage, features, compute)
        stats = storage.lake().read_part(FEATURE_STATS, batch_id, sub=config_hash)
        return with_tables(result, "spectrogram_features", [(FEATURE_STATS, stats)])

    yield from open_batch_outputs(context, storage.lake(), one)


def _feature_index(
    index: pl.DataFrame, config: FeatureConfig, placed: list[tuple[int, int]], shard: str
) -> pl.DataFrame:
    """The ``spectrogram_features`` rows of a batch: each recording's frames in the shard and
    the number of 4 s windows they give."""
    window_config = WindowConfig()
    return index.select(
        "batch_id", "audio_sha256", "participant", "label", "utterance"
    ).with_columns(
        pl.lit(config.config_hash()).alias("config_hash"),
        pl.lit(config.kind).alias("feature_kind"),
        pl.Series("frame_offset", [o for o, _ in placed], dtype=pl.Int64),
        pl.Series("frames", [n for _, n in placed], dtype=pl.Int64),
        pl.Series(
            "windows", [len(instances(n, window_config, config)) for _, n in placed], dtype=pl.Int64
        ),
        pl.lit(shard).alias("shard"),
    )


def _features_metadata(
    config: FeatureConfig,
    device: str,
    table: pl.DataFrame,
    statistics: pl.DataFrame,
    frames: int,
    audio_s: float,
    elapsed: float,
    shard: str,
    examples: dict[str, tuple[str, np.ndarray]],
) -> dict[str, Any]:
    """What the UI shows of a batch's features: sizes, speed, per-coefficient statistics and
    an example plot per class."""
    from spira_assets.plots import feature_examples

    metadata: dict[str, Any] = {
        "dagster/row_count": table.height,
        "config_hash": config.config_hash(),
        "feature_config": json.dumps(asdict(config)),
        "device": device,
        "frames": frames,
        "windows_4s_1s": int(table.get_column("windows").sum() or 0),
        "audio_minutes": round(audio_s / 60, 2),
        "seconds": round(elapsed, 2),
        "realtime_factor": round(audio_s / elapsed, 1) if elapsed else 0.0,
        "shard": shard,
        "coefficient_stats": table_metadata(
            statistics.select("coefficient", "mean", "std", "min", "max").with_columns(
                pl.col("mean", "std", "min", "max").round(3)
            )
        ),
    }
    if examples:
        metadata[PLOT_EXAMPLES] = image(
            feature_examples(examples, config.kind, config.hop_length / config.sample_rate),
            "one recording per class",
        )
    return metadata


def _features(
    context: dg.AssetExecutionContext,
    batch_id: str,
    storage: StorageResource,
    features: FeatureSettings,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    from spira_assets.features.extract import FeatureExtractor, FeatureStats

    started = time.perf_counter()
    config: FeatureConfig = features.config()
    config_hash = config.config_hash()
    device = compute.torch_device()
    layout, lake = storage.layout(), storage.lake()
    index = lake.read_part(AUDIO_16K, batch_id)
    # the waveform shards' names carry their resampler and content: new audio, new features
    token = data_version(
        [config_hash, *sorted(index.get_column("shard").unique()), *sorted(index["audio_sha256"])]
    ).value[:12]
    shard = layout.feature_shard(config_hash, batch_id, token)
    spans = list(index.select("sample_offset", "samples").iter_rows())
    samples = (
        open_shard(layout.fetch(index.get_column("shard")[0]), np.int16)
        if index.height
        else np.zeros(0, np.int16)
    )
    placed: list[tuple[int, int]] = [(0, 0)] * len(spans)
    stats = FeatureStats(config.n_features)
    labels = index.get_column("label").to_list()
    examples: dict[str, tuple[str, np.ndarray]] = {}
    chunk = round(features.batch_seconds * config.sample_rate / config.hop_length) or None
    extractor = FeatureExtractor(config, device, chunk_frames=chunk)
    with ShardWriter(layout.local(shard), np.float32, config.n_features) as writer:

        def sink(i: int, frames: np.ndarray) -> None:
            placed[i] = writer.append(frames)
            stats.add(frames)
            name = "patient (1)" if labels[i] == 1 else "control (0)"
            if name not in examples:  # pseudonymous: row, pseudonym prefix, utterance
                row, who, said = (index[c][i] for c in ("row_number", "participant", "utterance"))
                examples[name] = (f"{batch_id} row {row} ({who[:8]}, {said})", frames[:1000])

        extractor.run(samples, spans, sink)
        writer.commit()
    table = _feature_index(index, config, placed, shard)
    layout.publish(shard)  # before the index that points to it
    lake.write_part(SPECTROGRAM_FEATURES, batch_id, table, sub=config_hash)
    statistics = stats_frame(batch_id, config_hash, stats)
    lake.write_part(FEATURE_STATS, batch_id, statistics, sub=config_hash)
    remove_superseded_shards(layout, shard)
    storage.warehouse().ensure_views()

    elapsed = time.perf_counter() - started
    audio_s = float(index.get_column("samples").sum() or 0) / config.sample_rate
    windows = int(table.get_column("windows").sum() or 0)
    context.log.info(
        f"{batch_id}: {table.height} recordings -> {stats.frames} frames, {windows} windows on "
        f"{device} in {elapsed:.1f}s ({audio_s / max(elapsed, 1e-9):.0f}x realtime)"
    )
    metadata = _features_metadata(
        config, str(device), table, statistics, stats.frames, audio_s, elapsed, shard, examples
    )
    return dg.MaterializeResult(
        metadata=headline_first(metadata), data_version=dg.DataVersion(token)
    )
