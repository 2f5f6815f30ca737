"""Assets ``quarantine`` and ``batch_checks``: the two per-batch tables that several ingest
steps write (each its own part: ``quarantine`` by stage, ``batch_checks`` by asset).

Neither is computed here: their writers are ``raw_audio`` (import and file rejections, its
check outcomes) and ``validated_metadata`` (row rejections, its check outcomes). Each asset
stands for its table in the lineage, downstream of both writers, so that a reader declares
the table itself (``audio_16k`` and the steps after it read ``batch_checks`` to refuse a
blocked batch). Materializing one reads the batch's parts back and shows the rows per
batch, naming any writer that has not run for it.

A batch that fails a blocking ingest check skips these in that run (Dagster skips what is
downstream of a failed blocking check); their automation condition
(``automation.TABLE_AFTER_WRITERS``) materializes them in a run of their own, where no check
blocks, so the batch that most needs its rejections read still shows them.
"""

from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.headlines import ECHO_RULE, rejection_summary
from spira_assets.assets.presentation import column_schema, data_version, table_metadata
from spira_assets.assets.ranges import SINGLE_RUN, per_batch
from spira_assets.assets.tables import TABLE_KINDS
from spira_assets.ingest.metadata import STAGE as METADATA_STAGE
from spira_assets.ingest.provenance import IMPORT_STAGE
from spira_assets.ingest.raw_audio import STAGE as FILE_STAGE
from spira_assets.partitions import collection_batch
from spira_assets.resources import StorageResource
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import BATCH_CHECKS, QUARANTINE, TableSpec

# every part a batch must have once both writers ran, and who writes it
QUARANTINE_PARTS = {
    IMPORT_STAGE: "raw_audio",
    FILE_STAGE: "raw_audio",
    METADATA_STAGE: "validated_metadata",
}
CHECK_PARTS = {"raw_audio": "raw_audio", "validated_metadata": "validated_metadata"}
AUTOMATION_HELP = "materialized with its writers, or alone when a blocking check skipped it"


def read_parts(
    lake: Lake, spec: TableSpec, batch_id: str, parts: dict[str, str]
) -> tuple[pl.DataFrame, dict[str, str]]:
    """The batch's rows from every writer's part, and the parts that do not exist yet with
    their writer (a writer skipped because an earlier blocking check failed)."""
    present = [sub for sub in parts if lake.has_part(spec, batch_id, sub)]
    missing = {sub: writer for sub, writer in parts.items() if sub not in present}
    frames = [lake.read_part(spec, batch_id, sub) for sub in present]
    return (pl.concat(frames) if frames else spec.empty()), missing


def _not_run(missing: dict[str, str]) -> dict[str, Any]:
    if not missing:
        return {}
    return {
        "parts_not_written": ", ".join(
            f"{sub} ({writer} has not run for the batch)" for sub, writer in sorted(missing.items())
        )
    }


def _result(frame: pl.DataFrame, stamp: str, metadata: dict[str, Any]) -> dg.MaterializeResult:
    content = frame.drop(stamp).sort(frame.drop(stamp).columns, nulls_last=True)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": frame.height, **metadata},
        data_version=data_version(content.iter_rows()),
    )


def _table_asset(
    spec: TableSpec, code_version: str, description: str, writers: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "name": spec.name,
        "partitions_def": collection_batch,
        # every step that writes into the table is upstream of it (hospital_noise writes the
        # noise files' rejections into quarantine, as batch 'all')
        "deps": ["raw_audio", "validated_metadata", *writers],
        "group_name": "ingest",
        "kinds": TABLE_KINDS,
        "code_version": code_version,
        "backfill_policy": SINGLE_RUN,
        "description": description,
        "metadata": {"dagster/column_schema": column_schema(spec), "table": spec.name},
    }


@dg.asset(
    **_table_asset(
        QUARANTINE,
        versions.QUARANTINE,
        "Every rejection of the batch: the importer's (stage import), files (raw_audio) and "
        "metadata rows (validated_metadata), one row per item and rule with an actionable "
        "detail. Noise-file rejections are in the same table with batch 'all' (hospital_noise).",
        writers=("hospital_noise",),
    )
)
def quarantine(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    lake = storage.lake()

    def one(batch_id: str) -> dg.MaterializeResult:
        rows, missing = read_parts(lake, QUARANTINE, batch_id, QUARANTINE_PARTS)
        by_rule = rows.group_by("stage", "rule").len("items").sort("stage", "items", "rule")
        rejected, items = rejection_summary(rows, METADATA_STAGE)
        return _result(
            rows,
            "quarantined_at",
            {
                "rejected": rejected,
                "rejected_items": items,
                "by_stage_and_rule": table_metadata(by_rule),
                "rows": table_metadata(
                    rows.sort(pl.col("rule") == ECHO_RULE, "stage", "item").select(
                        "rule", "detail", "stage", "item", "column"
                    )
                ),
                **_not_run(missing),
            },
        )

    return per_batch(context, one)


@dg.asset(
    **_table_asset(
        BATCH_CHECKS,
        versions.BATCH_CHECKS,
        "The latest outcome of every ingest check of the batch (raw_audio and "
        "validated_metadata), kept beyond the run: audio_16k, spectrogram_features, batch_drift, "
        "dataset_split and spira_model refuse a batch whose blocking check failed.",
    )
)
def batch_checks(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    lake = storage.lake()

    def one(batch_id: str) -> dg.MaterializeResult:
        rows, missing = read_parts(lake, BATCH_CHECKS, batch_id, CHECK_PARTS)
        failed = rows.filter(~pl.col("passed") & pl.col("blocking"))
        return _result(
            rows,
            "evaluated_at",
            {
                "blocked": failed.height > 0 or bool(missing),
                "failed_blocking_checks": failed.height,
                "outcomes": table_metadata(
                    rows.select("asset", "check_name", "passed", "blocking", "description")
                ),
                **_not_run(missing),
            },
        )

    return per_batch(context, one)
