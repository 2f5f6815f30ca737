"""Asset ``raw_audio``: every file of a collection batch decoded, measured and judged."""

import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.checks import (
    pandera_column_schema,
    record_checks,
    schema_check_spec,
    stored_schema_result,
)
from spira_assets.assets.presentation import (
    PLOT_RAW_AUDIO,
    data_version,
    headline_first,
    image,
    quarantine_summary,
    table_metadata,
)
from spira_assets.assets.tables import table_out, table_result
from spira_assets.audio.quality import AudioQualityRules
from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.audio.store import LandedPcm
from spira_assets.ingest.batch_source import BatchNotReadyError, BatchSource
from spira_assets.ingest.gates import QUARANTINE_SHARE
from spira_assets.ingest.listing import ListingLimits
from spira_assets.ingest.provenance import IMPORT_STAGE
from spira_assets.ingest.quarantine import Rejection, counts_by_rule, quarantine_frame
from spira_assets.ingest.raw_audio import STAGE, FirstOccurrence, RawAudioResult, ingest_raw_audio
from spira_assets.ingest.schemas import RawAudioTable
from spira_assets.partitions import collection_batch
from spira_assets.plots import raw_audio_overview
from spira_assets.privacy import Pseudonymizer
from spira_assets.resources import IngestPolicy, PseudonymResource, StorageResource
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.shards import remove_superseded_shards
from spira_assets.storage.tables import QUARANTINE, RAW_AUDIO, RAW_AUDIO_16K

QUARANTINE_CHECK = QUARANTINE_SHARE


def first_occurrences(
    lake: Lake, batch_id: str, by: str = "audio_sha256"
) -> dict[str, FirstOccurrence]:
    """Audio accepted by other batches, by the hash ``by`` (of the file's bytes, or of its
    16 kHz samples: ``pcm_sha256``): the earliest ingestion of each."""
    accepted = (
        lake.read_table(RAW_AUDIO)
        .filter(pl.col("accepted") & (pl.col("batch_id") != batch_id) & pl.col(by).is_not_null())
        .sort("ingested_at", "batch_id")
        .unique(by, keep="first", maintain_order=True)
    )
    return {
        sha: FirstOccurrence(batch, shown)
        for sha, batch, shown in accepted.select(by, "batch_id", "source_path").iter_rows()
    }


def import_quarantine(batch_id: str, source: BatchSource, now: datetime) -> pl.DataFrame:
    """The rows ``spira import-spira`` refused (stage ``import``), from the batch's import
    record: visible in the UI and in SQL, not only in a text file."""
    rejections = [Rejection(r.item, r.rule, r.detail) for r in source.provenance.rejections]
    if source.provenance_error:
        rejections.append(
            Rejection(
                "_import.json",
                source.provenance_rule,
                f"{source.provenance_error}; every row of the batch is treated as grouped one "
                "participant per file (speaker independence not guaranteed)",
            )
        )
    return quarantine_frame(batch_id, IMPORT_STAGE, rejections, now)


def commit_landed(layout: DataLayout, batch_id: str, landed: LandedPcm) -> str:
    """Name the accepted PCM by its content and resampler, publish it; its relative path."""
    token = data_version([RESAMPLER_VERSION, *sorted(landed.spans)]).value[:12]
    shard = layout.landed_shard(batch_id, token)
    landed.commit(layout.local(shard))
    layout.publish(shard)  # before the index that points to it
    return shard


def landed_index(batch_id: str, shard: str, landed: LandedPcm) -> pl.DataFrame:
    shas = list(landed.spans)
    return pl.DataFrame(
        {
            "batch_id": [batch_id] * len(shas),
            "audio_sha256": shas,
            "resampler": [RESAMPLER_VERSION] * len(shas),
            "sample_offset": [landed.spans[s][0] for s in shas],
            "samples": [landed.spans[s][1] for s in shas],
            "shard": [shard] * len(shas),
        },
        schema=RAW_AUDIO_16K.schema,
    )


@dg.multi_asset(
    name="raw_audio",
    partitions_def=collection_batch,
    outs={
        "raw_audio": dg.AssetOut(
            group_name="ingest",
            kinds={"python", "parquet", "duckdb"},
            code_version=versions.RAW_AUDIO,
            description="One row per landed file of the batch: content SHA-256, format, rate, "
            "channels, duration, level statistics, accepted or the rule that rejected it.",
            metadata={"dagster/column_schema": pandera_column_schema(RawAudioTable)},
        ),
        "raw_audio_16k": table_out(
            RAW_AUDIO_16K,
            "Where each accepted file's 16 kHz mono PCM (resampled from the decode that "
            "measured it) lies in the batch's landed shard: what audio_16k copies.",
            "ingest",
            versions.RAW_AUDIO,
        ),
    },
    deps=["landing_batch"],
    check_specs=[
        dg.AssetCheckSpec(
            QUARANTINE_CHECK,
            asset="raw_audio",
            blocking=True,
            description="The share of the batch's files quarantined (undecodable, silent, "
            "clipped, wrong rate, duplicate...) is within the policy's limit; the description "
            "names the batch.",
        ),
        schema_check_spec("raw_audio"),
    ],
)
def raw_audio(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    pseudonyms: PseudonymResource,
    policy: IngestPolicy,
) -> Iterator[dg.MaterializeResult]:
    """Decode every audio file of the batch once (soundfile, worker processes), record content
    SHA-256, format, rate, channels, duration, peak, RMS, clipping and silence; copy accepted
    audio into the immutable content-addressed raw store; keep its 16 kHz mono PCM, resampled
    from the same decode, for ``audio_16k`` (``raw_audio_16k``); quarantine files that cannot
    be decoded or break a rule."""
    batch_id = context.partition_key
    started = time.perf_counter()
    try:
        source = BatchSource.open(storage.layout(), batch_id)
    except BatchNotReadyError as error:
        raise dg.Failure(str(error)) from error
    rules = policy.audio_rules()
    limits = policy.listing_limits()
    layout, lake = storage.layout(), storage.lake()
    result, landed, pcm_shard = _judge_batch(
        context, storage, source, pseudonyms.pseudonymizer(), rules, limits, policy.decode_workers
    )
    now = datetime.now(UTC)
    imported = import_quarantine(batch_id, source, now)
    pcm_index = landed_index(batch_id, pcm_shard, landed)
    lake.write_part(RAW_AUDIO_16K, batch_id, pcm_index)
    remove_superseded_shards(layout, pcm_shard)
    lake.write_part(RAW_AUDIO, batch_id, result.table)
    lake.write_part(QUARANTINE, batch_id, result.quarantine, sub=STAGE)
    lake.write_part(QUARANTINE, batch_id, imported, sub=IMPORT_STAGE)
    storage.warehouse().ensure_views()

    elapsed = time.perf_counter() - started
    quarantined = result.files_in - result.accepted
    context.log.info(
        f"{batch_id}: {result.files_in} files, {result.accepted} accepted, {quarantined} "
        f"quarantined {counts_by_rule(result.quarantine)} in {elapsed:.1f}s"
    )
    check = _quarantine_share_check(batch_id, result.files_in, quarantined, policy)
    checks = [check, stored_schema_result(lake, RAW_AUDIO, RawAudioTable, batch_id)]
    record_checks(lake, batch_id, "raw_audio", checks, now)
    pcm = table_result(
        RAW_AUDIO_16K,
        pcm_index,
        shard=pcm_shard,
        resampler=RESAMPLER_VERSION,
        data_version=data_version([pcm_shard, *pcm_index.iter_rows()]),
    )
    yield dg.MaterializeResult(
        asset_key="raw_audio",
        metadata=headline_first(
            _raw_audio_metadata(result, imported, rules, limits, elapsed, pcm_shard)
        ),
        check_results=checks,
        data_version=data_version(
            [
                asdict(rules),
                *sorted(result.table.select("path_key", "audio_sha256", "accepted").iter_rows()),
            ]
        ),
    )
    yield pcm


def _judge_batch(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    source: BatchSource,
    pseudonymizer: Pseudonymizer,
    rules: AudioQualityRules,
    limits: ListingLimits,
    workers: int,
) -> tuple[RawAudioResult, LandedPcm, str]:
    """Every file of the batch decoded and judged once (the core's ``ingest_raw_audio``, on
    worker processes), audio seen in other batches named; the 16 kHz PCM of accepted files
    committed to the batch's landed shard (its name returned)."""
    batch_id = context.partition_key
    layout, lake = storage.layout(), storage.lake()
    landed = LandedPcm(layout.local(layout.landed_shard(batch_id, "pending")))
    try:
        result = ingest_raw_audio(
            batch_id,
            source.directory,
            storage.raw_store(),
            rules,
            pseudonymizer,
            source.redactor(pseudonymizer),
            datetime.now(UTC),
            workers=workers,
            progress=lambda done, total: context.log.info(
                f"{batch_id}: judged {done}/{total} files"
            ),
            elsewhere=first_occurrences(lake, batch_id),
            pcm_sink=landed,
            elsewhere_pcm=first_occurrences(lake, batch_id, by="pcm_sha256"),
            limits=limits,
        )
        pcm_shard = commit_landed(layout, batch_id, landed)
    finally:
        landed.abort()
    return result, landed, pcm_shard


def _quarantine_share_check(
    batch_id: str, files_in: int, quarantined: int, policy: IngestPolicy
) -> dg.AssetCheckResult:
    """The batch fails when it has no audio or quarantines more than the policy's share."""
    share = quarantined / files_in if files_in else 1.0
    return dg.AssetCheckResult(
        check_name=QUARANTINE_CHECK,
        passed=files_in > 0 and share <= policy.max_quarantine_share,
        metadata={
            "batch": batch_id,
            "quarantined_share": round(share, 4),
            "limit": policy.max_quarantine_share,
            "files_in": files_in,
        },
        description=(
            f"batch {batch_id} has no audio files"
            if files_in == 0
            else f"batch {batch_id}: {quarantined} of {files_in} files quarantined "
            f"({share:.1%}, limit {policy.max_quarantine_share:.0%})"
        ),
    )


def _raw_audio_metadata(
    result: RawAudioResult,
    imported: pl.DataFrame,
    rules: AudioQualityRules,
    limits: ListingLimits,
    elapsed: float,
    pcm_shard: str,
) -> dict[str, Any]:
    """What the UI shows of a batch's audio: counts, speed, formats, the quarantine by rule,
    the overview plot and the rules it was judged by."""
    quarantined = result.files_in - result.accepted
    formats = (
        result.table.filter(pl.col("accepted"))
        .group_by("container", "codec", "sample_rate", "channels")
        .len("files")
        .sort("files", descending=True)
    )
    return {
        "dagster/row_count": result.table.height,
        "files_in": result.files_in,
        "files_accepted": result.accepted,
        "files_quarantined": quarantined,
        "quarantined_by_rule": counts_by_rule(result.quarantine),
        "accepted_duration_s": round(result.total_duration_s, 2),
        "seconds": round(elapsed, 2),
        "realtime_factor": round(result.total_duration_s / elapsed, 1) if elapsed else 0.0,
        "formats": table_metadata(formats),
        "quarantine": table_metadata(quarantine_summary(result.quarantine)),
        PLOT_RAW_AUDIO: image(raw_audio_overview(result.table), "raw audio overview"),
        "quality_rules": asdict(rules),
        "listing_limits": asdict(limits),
        "import_rejections": imported.height,
        # skipped as OS litter (.DS_Store...): counted, so no file vanishes unnoticed
        "os_files_ignored": len(result.ignored),
        "pcm_16k_shard": pcm_shard,
        **(
            {"import_quarantine": table_metadata(quarantine_summary(imported))}
            if imported.height
            else {}
        ),
    }
