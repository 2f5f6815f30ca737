"""Asset ``dataset_split``: every recording of every open batch in train, validation or test by
its participant, with the checks that can actually fail on stored data."""

import dagster as dg
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.presentation import column_schema, table_metadata
from spira_assets.ingest.gates import blocked_batches, describe_blocked
from spira_assets.ingest.provenance import NOT_SPEAKER_SAFE, SPEAKER_WARNING
from spira_assets.ml.lineage import fingerprint
from spira_assets.ml.split import (
    SPLITS,
    assign_splits,
    audio_in_two_places,
    key_ids_by_batch,
    participants_in_two_splits,
)
from spira_assets.resources import StorageResource, TrainingSettings
from spira_assets.storage.tables import AUDIO_16K, DATASET_SPLIT, UNPARTITIONED

PARTICIPANT_CHECK = "no_participant_in_two_splits"
AUDIO_CHECK = "no_audio_in_two_splits"
KEY_CHECK = "one_pseudonym_key"


@dg.asset(
    deps=["audio_16k", "batch_checks"],
    code_version=versions.DATASET_SPLIT,
    group_name="training",
    kinds={"python", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            PARTICIPANT_CHECK,
            asset="dataset_split",
            blocking=True,
            description="Read back from storage: no participant has recordings in two splits.",
        ),
        dg.AssetCheckSpec(
            AUDIO_CHECK,
            asset="dataset_split",
            blocking=True,
            description="Read back from storage: no audio content is in two splits or under two "
            "participant ids (one voice counted as two people).",
        ),
        dg.AssetCheckSpec(
            KEY_CHECK,
            asset="dataset_split",
            blocking=True,
            description="Every batch was pseudonymized under the same key: otherwise one "
            "person's ids no longer match across batches.",
        ),
    ],
    metadata={"dagster/column_schema": column_schema(DATASET_SPLIT)},
)
def dataset_split(
    context: dg.AssetExecutionContext, storage: StorageResource, training: TrainingSettings
) -> dg.MaterializeResult:
    """Every recording of every open batch (its blocking ingest checks passed) assigned to
    train / validation / test by a salted hash of its participant's pseudonym: stable as
    batches arrive. The stored table is read back and checked for what assignment by pseudonym
    cannot rule out: one audio under two ids, two pseudonym keys, a participant in two splits."""
    lake = storage.lake()
    everything = lake.read_table(AUDIO_16K)
    blocked = blocked_batches(lake, everything.get_column("batch_id").unique().to_list())
    if blocked:
        context.log.warning(f"left out of the split: {describe_blocked(blocked)}")
    recordings = everything.filter(~pl.col("batch_id").is_in(sorted(blocked)))
    config = training.split_config()
    assignments = assign_splits(recordings, config).with_columns(
        pl.lit(UNPARTITIONED).alias("batch_id")
    )
    lake.write_part(DATASET_SPLIT, UNPARTITIONED, assignments)
    storage.warehouse().ensure_views()
    stored = lake.read_part(DATASET_SPLIT, UNPARTITIONED)
    counts = (
        stored.group_by("split", "label")
        .agg(pl.col("participant").n_unique().alias("participants"), pl.len().alias("recordings"))
        .sort("split", "label")
    )
    not_safe = stored.filter(pl.col("speaker_grouping").is_in(sorted(NOT_SPEAKER_SAFE))).height
    context.log.info(f"split of {stored.height} recordings: {counts.rows()}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored.height,
            "participants": stored.get_column("participant").n_unique(),
            "participants_by_split_and_label": table_metadata(counts),
            "recordings_by_split": {
                s: int(stored.filter(pl.col("split") == s).height) for s in SPLITS
            },
            "batches": sorted(set(stored.get_column("source_batch").to_list())),
            "blocked_batches_left_out": dg.MetadataValue.json(blocked),
            "speaker_independence": (
                SPEAKER_WARNING.format(n=not_safe) if not_safe else "guaranteed by participant ids"
            ),
        },
        check_results=_stored_split_checks(stored, recordings),
        data_version=dg.DataVersion(
            fingerprint(
                {
                    "split": stored.select(
                        "source_batch", "audio_sha256", "participant", "split"
                    ).rows()
                }
            )
        ),
    )


def _stored_split_checks(
    stored: pl.DataFrame, recordings: pl.DataFrame
) -> list[dg.AssetCheckResult]:
    """What assignment by pseudonym cannot rule out, read back from the stored split: a
    participant in two splits, one audio in two places, batches under two pseudonym keys."""
    two_splits = participants_in_two_splits(stored)
    two_places = audio_in_two_places(stored)
    keys = key_ids_by_batch(recordings)
    return [
        dg.AssetCheckResult(
            check_name=PARTICIPANT_CHECK,
            passed=not two_splits,
            metadata={"participants": dg.MetadataValue.json(two_splits)},
            description=f"{len(two_splits)} participants in two splits" if two_splits else "none",
        ),
        dg.AssetCheckResult(
            check_name=AUDIO_CHECK,
            passed=not two_places,
            metadata={"audio": dg.MetadataValue.json(two_places)},
            description=(
                f"{len(two_places)} audio files in two splits or under two ids; "
                "re-materialize raw_audio of the later batch so it quarantines the copy"
                if two_places
                else "none"
            ),
        ),
        dg.AssetCheckResult(
            check_name=KEY_CHECK,
            passed=len(keys) <= 1,
            metadata={"key_ids": dg.MetadataValue.json(keys)},
            description=(
                f"batches were pseudonymized under {len(keys)} different keys {keys}: "
                "re-materialize the older batches with the current key"
                if len(keys) > 1
                else f"one key id {next(iter(keys), 'none')}"
            ),
        ),
    ]
