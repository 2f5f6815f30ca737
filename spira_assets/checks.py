"""Blocking asset checks that re-read what was stored and validate it with pandera."""


import dagster as dg
import pandera.errors
import pandera.polars as pa

from spira_assets.assets.raw_audio import raw_audio
from spira_assets.assets.validated_metadata import validated_metadata
from spira_assets.assets.presentation import markdown_table
from spira_assets.ingest.schemas import RawAudioTable, ValidatedMetadataTable
from spira_assets.partitions import collection_batch
from spira_assets.resources import StorageResource
from spira_assets.storage.tables import RAW_AUDIO, VALIDATED_METADATA, TableSpec


def stored_schema_check(
    asset: dg.AssetsDefinition, spec: TableSpec, model: type[pa.DataFrameModel]
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="stored_table_matches_schema",
        blocking=True,
        partitions_def=collection_batch,
        description=f"The stored {spec.name} rows of the batch satisfy {model.__name__}.",
    )
    def _check(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        batch_id = context.partition_key
        frame = storage.lake().read_part(spec, batch_id)
        try:
            model.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as errors:
            cases = errors.failure_cases.select("column", "check", "index").head(50)
            return dg.AssetCheckResult(
                passed=False,
                metadata={"rows": frame.height, "failures": markdown_table(cases)},
                description=f"{errors.failure_cases.height} schema failures",
            )
        return dg.AssetCheckResult(passed=True, metadata={"rows": frame.height})

    return _check


raw_audio_schema_check = stored_schema_check(raw_audio, RAW_AUDIO, RawAudioTable)
validated_metadata_schema_check = stored_schema_check(
    validated_metadata, VALIDATED_METADATA, ValidatedMetadataTable
)
ALL_CHECKS = [raw_audio_schema_check, validated_metadata_schema_check]
