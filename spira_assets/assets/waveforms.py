"""Assets ``audio_16k`` (per batch) and ``hospital_noise``: 16 kHz mono int16 shards that
training and feature extraction memory-map. ``RESAMPLER_VERSION`` (audio/resample.py) enters
every shard token and data version: a change of resampler makes new shards, never rewrites
old ones."""

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.presentation import column_schema, data_version, table_metadata
from spira_assets.assets.ranges import SINGLE_RUN, RangeEvent, open_batches
from spira_assets.audio import TARGET_RATE
from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.audio.store import Recording, assemble_waveform_shard
from spira_assets.ingest.noise_folder import FINGERPRINT_KEY, noise_fingerprint, read_noise_folder
from spira_assets.ingest.quarantine import quarantine_frame
from spira_assets.partitions import collection_batch
from spira_assets.resources import IngestPolicy, StorageResource
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.shards import ShardWriter, open_shard, remove_superseded_shards
from spira_assets.storage.tables import (
    AUDIO_16K,
    HOSPITAL_NOISE,
    QUARANTINE,
    RAW_AUDIO_16K,
    UNPARTITIONED,
    VALIDATED_METADATA,
)

__all__ = ["RESAMPLER_VERSION", "audio_16k", "hospital_noise"]


@dg.asset(
    partitions_def=collection_batch,
    deps=["raw_audio_16k", "raw_audio", "validated_metadata", "batch_checks"],
    code_version=versions.AUDIO_16K,
    group_name="features",
    kinds={"numpy", "parquet"},
    metadata={"dagster/column_schema": column_schema(AUDIO_16K)},
    backfill_policy=SINGLE_RUN,
)
def audio_16k(
    context: dg.AssetExecutionContext, storage: StorageResource, policy: IngestPolicy
) -> Iterator[RangeEvent]:
    """Every recording validated_metadata kept, as 16 kHz mono int16 in one memory-mappable
    shard per batch, copied from raw_audio's PCM (raw_audio_16k, resampled by soxr from the
    decode that measured each file): nothing is decoded here, except recordings whose PCM is
    missing or came from another resampler version (re-decoded from the raw store and counted
    in decoded_again). The index (offset, length, pseudonym, label, utterance, resampler) goes
    to the audio_16k table; unlike raw_audio_16k (every accepted file's landed PCM), it holds
    only the recordings metadata kept. A backfill does a range of batches in one run. A batch
    that failed a blocking ingest check is refused, whatever started the run; a range
    materializes its other batches and fails naming the blocked ones."""
    yield from open_batches(
        context, storage.lake(), lambda batch_id: _audio_16k(context, batch_id, storage, policy)
    )


def landed_pcm(layout: DataLayout, lake: Lake, batch_id: str) -> dict[str, tuple[Path, int, int]]:
    """raw_audio's PCM of the batch made with the current resampler, by content hash."""
    if not lake.has_part(RAW_AUDIO_16K, batch_id):
        return {}
    index = lake.read_part(RAW_AUDIO_16K, batch_id).filter(pl.col("resampler") == RESAMPLER_VERSION)
    shards = {s: layout.fetch(s) for s in index.get_column("shard").unique().to_list()}
    return {
        sha: (shards[shard], offset, samples)
        for sha, shard, offset, samples in index.select(
            "audio_sha256", "shard", "sample_offset", "samples"
        ).iter_rows()
    }


def pcm_hashes(shard: Path, spans: list[tuple[int, int]]) -> list[str]:
    """SHA-256 of each stored recording's 16 kHz int16 samples: the same audio however it was
    encoded (the split's leak check compares it beside the file hash)."""
    samples = open_shard(shard, np.int16)
    return [hashlib.sha256(samples[o : o + n].tobytes()).hexdigest() for o, n in spans]


def _audio_16k(
    context: dg.AssetExecutionContext, batch_id: str, storage: StorageResource, policy: IngestPolicy
) -> dg.MaterializeResult:
    started = time.perf_counter()
    layout, lake = storage.layout(), storage.lake()
    metadata = lake.read_part(VALIDATED_METADATA, batch_id).sort("audio_sha256")
    token = data_version([RESAMPLER_VERSION, *metadata.get_column("audio_sha256")]).value[:12]
    shard = layout.waveform_shard(batch_id, token)
    landed = landed_pcm(layout, lake, batch_id)
    recordings = [
        Recording(sha, layout.root / uri, landed.get(sha))
        for sha, uri in metadata.select("audio_sha256", "raw_uri").iter_rows()
    ]
    spans, decoded_again = assemble_waveform_shard(
        recordings,
        layout.local(shard),
        workers=policy.decode_workers,
        progress=lambda done, total: context.log.info(f"{batch_id}: stored {done}/{total}"),
    )
    if decoded_again:
        context.log.warning(
            f"{batch_id}: {decoded_again} recordings had no 16 kHz PCM from raw_audio with "
            f"{RESAMPLER_VERSION} and were decoded again; re-materialize raw_audio for this "
            "batch to avoid it"
        )
    table = metadata.select(
        "batch_id",
        "row_number",
        "audio_sha256",
        "participant",
        "label",
        "sex",
        "age",
        "device",
        "utterance",
        "pseudonym_key_id",
        "speaker_grouping",
        "published_split",
    ).with_columns(
        pl.Series("pcm_sha256", pcm_hashes(layout.local(shard), spans), dtype=pl.String),
        pl.Series("sample_offset", [o for o, _ in spans], dtype=pl.Int64),
        pl.Series("samples", [n for _, n in spans], dtype=pl.Int64),
        pl.Series("duration_s", [n / TARGET_RATE for _, n in spans], dtype=pl.Float64),
        pl.lit(shard).alias("shard"),
        pl.lit(RESAMPLER_VERSION).alias("resampler"),
    )
    layout.publish(shard)  # before the index that points to it
    lake.write_part(AUDIO_16K, batch_id, table)
    removed = remove_superseded_shards(layout, shard)
    storage.warehouse().ensure_views()
    elapsed = time.perf_counter() - started
    audio_s = float(table.get_column("duration_s").sum() or 0.0)
    context.log.info(
        f"{batch_id}: {table.height} recordings, {audio_s / 60:.1f} min in {elapsed:.1f}s"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "recordings": table.height,
            "audio_minutes": round(audio_s / 60, 2),
            "shard": shard,
            "shard_mb": round(layout.local(shard).stat().st_size / 1e6, 2),
            "resampler": RESAMPLER_VERSION,
            "decoded_again": decoded_again,
            "seconds": round(elapsed, 2),
            "realtime_factor": round(audio_s / elapsed, 1) if elapsed else 0.0,
            "superseded_shards_removed": len(removed),
        },
        data_version=dg.DataVersion(token),
    )


@dg.asset(
    deps=["landing_noise"],
    code_version=versions.HOSPITAL_NOISE,
    group_name="features",
    kinds={"torch", "numpy", "parquet"},
    metadata={"dagster/column_schema": column_schema(HOSPITAL_NOISE)},
)
def hospital_noise(
    context: dg.AssetExecutionContext, storage: StorageResource, policy: IngestPolicy
) -> dg.MaterializeResult:
    """The hospital-ambience recordings of landing/noise/ prepared like speech (16 kHz mono
    int16 shard) for noise-insertion augmentation. Unreadable or silent files are quarantined
    (stage hospital_noise, batch 'all')."""
    started = time.perf_counter()
    layout, lake = storage.layout(), storage.lake()
    folder = layout.noise
    fingerprint = noise_fingerprint(folder)  # before reading: a later change is a new one
    found = read_noise_folder(folder)
    accepted, rejections, hashes = found.accepted, found.rejections, found.hashes
    token = data_version([RESAMPLER_VERSION, *hashes]).value[:12]
    shard = layout.noise_shard(token)
    with ShardWriter(layout.local(shard), np.int16) as writer:
        spans = [writer.append(wave) for wave in found.waves]
        writer.commit()
    table = pl.DataFrame(
        {
            "batch_id": [UNPARTITIONED] * len(accepted),
            "noise_sha256": hashes,
            "source": [p.name for p in accepted],
            "sample_offset": [o for o, _ in spans],
            "samples": [n for _, n in spans],
            "duration_s": [n / TARGET_RATE for _, n in spans],
            "shard": [shard] * len(accepted),
        },
        schema=HOSPITAL_NOISE.schema,
    )
    layout.publish(shard)  # earlier noise shards stay: models name theirs in their lineage
    lake.write_part(HOSPITAL_NOISE, UNPARTITIONED, table)
    lake.write_part(
        QUARANTINE,
        UNPARTITIONED,
        quarantine_frame(UNPARTITIONED, "hospital_noise", rejections, datetime.now(UTC)),
        sub="hospital_noise",
    )
    storage.warehouse().ensure_views()
    if not accepted:
        context.log.warning(f"no usable noise in {folder}: noise insertion will be unavailable")
    minutes = float(table.get_column("duration_s").sum() or 0.0) / 60
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "files_in": len(found.files),
            "files_accepted": len(accepted),
            "files_quarantined": len(found.files) - len(accepted),
            "noise_minutes": round(minutes, 2),
            "quarantine": table_metadata(
                pl.DataFrame(
                    {"item": [r.item for r in rejections], "rule": [r.rule for r in rejections]},
                    schema={"item": pl.String, "rule": pl.String},
                )
            ),
            "shard": shard,
            "seconds": round(time.perf_counter() - started, 2),
            FINGERPRINT_KEY: fingerprint,
        },
        data_version=dg.DataVersion(token),
    )
