"""Asset ``validated_metadata``: the batch's metadata.csv validated, cross-checked with
``raw_audio``, pseudonymized, identifiers dropped."""

import hashlib
import time
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
    PLOT_CLASS_BALANCE,
    data_version,
    headline_first,
    image,
    quarantine_summary,
    table_metadata,
)
from spira_assets.ingest.batch_source import BatchNotReadyError, BatchSource
from spira_assets.ingest.gates import BOTH_CLASSES, QUARANTINE_SHARE, UNAMBIGUOUS_IDS
from spira_assets.ingest.identity import ALIAS_FILE, EarlierParticipants
from spira_assets.ingest.metadata import STAGE, MetadataResult, validate_metadata
from spira_assets.ingest.provenance import NOT_SPEAKER_SAFE, SPEAKER_WARNING
from spira_assets.ingest.quarantine import counts_by_rule
from spira_assets.ingest.schemas import VALIDATION_VERSION, ValidatedMetadataTable
from spira_assets.partitions import collection_batch
from spira_assets.plots import class_balance
from spira_assets.privacy import Pseudonymizer
from spira_assets.resources import IngestPolicy, PseudonymResource, StorageResource
from spira_assets.storage.tables import QUARANTINE, RAW_AUDIO, VALIDATED_METADATA

QUARANTINE_CHECK = QUARANTINE_SHARE
CLASSES_CHECK = BOTH_CLASSES
IDS_CHECK = UNAMBIGUOUS_IDS


@dg.asset(
    partitions_def=collection_batch,
    deps=["raw_audio", "landing_batch"],
    code_version=versions.VALIDATED_METADATA,
    group_name="ingest",
    kinds={"python", "polars", "parquet", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            QUARANTINE_CHECK,
            asset="validated_metadata",
            blocking=True,
            description="The share of the batch's metadata rows quarantined is within the "
            "policy's limit (IngestPolicy.max_quarantine_share); the description names the batch.",
        ),
        dg.AssetCheckSpec(
            CLASSES_CHECK,
            asset="validated_metadata",
            blocking=True,
            description="The batch has accepted recordings of patients (label 1) and of "
            "controls (label 0), with their counts.",
        ),
        dg.AssetCheckSpec(
            IDS_CHECK,
            asset="validated_metadata",
            blocking=True,
            description="No participant id is spelled two ways that are equal once separators "
            "are removed (SP-0001 / SP0001), in the batch or against other batches, unless the "
            f"site's alias map (landing/{ALIAS_FILE}) says which id each spelling is.",
        ),
        schema_check_spec("validated_metadata"),
    ],
    metadata={"dagster/column_schema": pandera_column_schema(ValidatedMetadataTable)},
)
def validated_metadata(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    pseudonyms: PseudonymResource,
    policy: IngestPolicy,
) -> dg.MaterializeResult:
    """Read metadata.csv with polars, validate each record with a pandera model (types, ranges,
    allowed values, SpO2 vs label), resolve participant ids (site alias map, id format, ids
    spelled two ways), reject duplicates and participants whose rows disagree on label, sex or
    age, require accepted audio for every row and report audio without a row, then replace
    the participant id by a keyed pseudonym and drop hospital record, phone and unknown
    free-text columns."""
    batch_id = context.partition_key
    started = time.perf_counter()
    try:
        source = BatchSource.open(storage.layout(), batch_id)
    except BatchNotReadyError as error:
        raise dg.Failure(str(error)) from error
    lake = storage.lake()
    raw = lake.read_part(RAW_AUDIO, batch_id)
    pseudonymizer = pseudonyms.pseudonymizer()
    now = datetime.now(UTC)
    # other batches' stored spellings (keyed fingerprints) and sexes: its own other partitions
    earlier = EarlierParticipants.from_table(
        lake.read_table(VALIDATED_METADATA), pseudonymizer.key_id, batch_id
    )
    result = validate_metadata(
        batch_id,
        source.metadata_bytes,
        raw,
        pseudonymizer,
        source.redactor(pseudonymizer),
        now,
        source.provenance,
        aliases=source.aliases(),
        earlier=earlier,
        rules=policy.participant_rules(),
    )
    lake.write_part(VALIDATED_METADATA, batch_id, result.table)
    lake.write_part(QUARANTINE, batch_id, result.quarantine, sub=STAGE)
    storage.warehouse().ensure_views()

    table = result.table
    recordings = {
        ("patients" if label == 1 else "controls"): int(n)
        for label, n in table.group_by("label").len().iter_rows()
    }
    groupings = dict(table.group_by("speaker_grouping").len().sort("speaker_grouping").rows())
    not_safe = sum(n for g, n in groupings.items() if g in NOT_SPEAKER_SAFE)
    if not_safe:
        context.log.warning(f"{batch_id}: {SPEAKER_WARNING.format(n=not_safe)}")
    if result.unknown_columns:
        context.log.warning(
            f"{batch_id}: columns {list(result.unknown_columns)} are not in the contract and "
            "were kept out of the warehouse"
        )
    context.log.info(
        f"{batch_id}: {result.rows_in} rows, {result.rows_accepted} accepted, "
        f"{result.rows_quarantined} quarantined {counts_by_rule(result.quarantine)}; "
        f"{result.orphan_files} orphan files"
    )
    seconds = time.perf_counter() - started
    metadata = _validation_metadata(result, pseudonymizer, recordings, groupings, seconds)
    checks = [
        *_batch_checks(batch_id, result, recordings, policy),
        stored_schema_result(lake, VALIDATED_METADATA, ValidatedMetadataTable, batch_id),
    ]
    record_checks(lake, batch_id, "validated_metadata", checks, now)
    return dg.MaterializeResult(
        metadata=headline_first(metadata),
        check_results=checks,
        data_version=_data_version(source, raw, pseudonymizer, policy, earlier),
    )


def _data_version(
    source: BatchSource,
    raw: pl.DataFrame,
    pseudonymizer: Pseudonymizer,
    policy: IngestPolicy,
    earlier: EarlierParticipants,
) -> dg.DataVersion:
    """Everything the batch's validated rows depend on: its metadata file and alias map, the
    key and id format, the rules' version and settings, its accepted audio and the other
    batches' participants."""
    metadata_hash = hashlib.sha256(source.metadata_bytes or b"").hexdigest()
    return data_version(
        [
            metadata_hash,
            pseudonymizer.key_id,
            VALIDATION_VERSION,
            source.provenance.to_json(),
            sorted(raw.select("path_key", "audio_sha256", "accepted").iter_rows()),
            hashlib.sha256(source.alias_bytes or b"").hexdigest(),
            pseudonymizer.id_format,
            policy.max_age_spread_years,
            earlier.digest_input(),
        ]
    )


def _validation_metadata(
    result: MetadataResult,
    pseudonymizer: Pseudonymizer,
    recordings: dict[str, int],
    groupings: dict[str, int],
    seconds: float,
) -> dict[str, Any]:
    """What the UI shows of a batch's metadata: row counts, the quarantine by rule, classes,
    the pseudonym key's id and kind, speaker grouping and the class-balance plot."""
    table = result.table
    not_safe = sum(n for g, n in groupings.items() if g in NOT_SPEAKER_SAFE)
    participants = table.group_by("label").agg(pl.col("participant").n_unique())
    per_class = {
        ("patients" if label == 1 else "controls"): int(n) for label, n in participants.iter_rows()
    }
    metadata: dict[str, Any] = {
        "dagster/row_count": table.height,
        "rows_in": result.rows_in,
        "rows_accepted": result.rows_accepted,
        "rows_quarantined": result.rows_quarantined,
        "orphan_audio_files": result.orphan_files,
        "quarantined_by_rule": counts_by_rule(result.quarantine),
        "unknown_columns_dropped": list(result.unknown_columns),
        "participant_ids_ambiguous": len(result.ambiguous_ids),
        "recordings_by_class": recordings,
        "participants_by_class": per_class,
        "accepted_duration_s": round(float(table.get_column("duration_s").sum() or 0.0), 2),
        "pseudonym_key_id": pseudonymizer.key_id,
        "pseudonym_key": pseudonymizer.key_kind,
        "speaker_grouping": groupings,
        "speaker_independence": (
            SPEAKER_WARNING.format(n=not_safe) if not_safe else "guaranteed by participant ids"
        ),
        "seconds": round(seconds, 2),
        "quarantine": table_metadata(quarantine_summary(result.quarantine)),
    }
    if result.file_error:
        metadata["metadata_file_error"] = result.file_error
    if not table.is_empty():
        metadata[PLOT_CLASS_BALANCE] = image(class_balance(table), "class balance")
    return metadata


def _batch_checks(
    batch_id: str, result: MetadataResult, recordings: dict[str, int], policy: IngestPolicy
) -> list[dg.AssetCheckResult]:
    """The batch's own checks: its quarantined share, both classes present, every participant
    id spelled one way."""
    share = result.rows_quarantined / result.rows_in if result.rows_in else 1.0
    return [
        dg.AssetCheckResult(
            check_name=QUARANTINE_CHECK,
            passed=result.rows_in > 0 and share <= policy.max_quarantine_share,
            metadata={
                "batch": batch_id,
                "quarantined_share": round(share, 4),
                "limit": policy.max_quarantine_share,
            },
            description=f"batch {batch_id}: {result.rows_quarantined} of {result.rows_in} "
            f"metadata rows quarantined ({share:.1%}, limit {policy.max_quarantine_share:.0%})",
        ),
        dg.AssetCheckResult(
            check_name=CLASSES_CHECK,
            passed=recordings.get("patients", 0) > 0 and recordings.get("controls", 0) > 0,
            metadata={"batch": batch_id, **recordings},
            description=(
                f"batch {batch_id}: {recordings.get('patients', 0)} accepted patient "
                f"recordings (label 1) and {recordings.get('controls', 0)} accepted control "
                "recordings (label 0); both classes are needed"
            ),
        ),
        dg.AssetCheckResult(
            check_name=IDS_CHECK,
            passed=not result.ambiguous_ids,
            metadata={"batch": batch_id, "ambiguous_ids": len(result.ambiguous_ids)},
            description=(
                f"batch {batch_id}: {len(result.ambiguous_ids)} participant id(s) spelled two "
                f"ways (resolve them in landing/{ALIAS_FILE}): " + "; ".join(result.ambiguous_ids)
                if result.ambiguous_ids
                else f"batch {batch_id}: every participant id has one spelling"
            ),
        ),
    ]
