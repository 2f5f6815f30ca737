"""Check logic shared by the ingest assets: the stored table re-read and validated with its
pandera model, whose columns and checks also reach Dagster as the asset's column schema
(dagster-pandera's table schema of the model).

The checks are declared as blocking ``check_specs`` on each asset (partition-aware asset checks
are still a preview feature in Dagster 1.13), and evaluated from what was actually written.
"""

import warnings
from collections.abc import Iterable
from datetime import datetime
from functools import cache

import dagster as dg
import pandera.errors
import pandera.polars as pa

from spira_assets.assets.presentation import table_metadata
from spira_assets.ingest.gates import (
    STORED_SCHEMA,
    CheckOutcome,
    blocked_batches,
    describe_blocked,
    record_outcomes,
)
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import TableSpec

SCHEMA_CHECK = STORED_SCHEMA


@cache
def pandera_column_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The pandera model as Dagster's column schema (names, dtypes, nullability, checks)."""
    from dagster_pandera import pandera_schema_to_dagster_type

    with warnings.catch_warnings():  # "beta": the function, not our use of it
        warnings.simplefilter("ignore", dg.BetaWarning)
        schema = pandera_schema_to_dagster_type(model).metadata["schema"]
    return schema.value  # type: ignore[return-value]


def schema_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        SCHEMA_CHECK,
        asset=asset,
        blocking=True,
        description="The rows stored for the batch, read back, satisfy the table's pandera model.",
    )


def stored_schema_result(
    lake: Lake, spec: TableSpec, model: type[pa.DataFrameModel], batch_id: str
) -> dg.AssetCheckResult:
    frame = lake.read_part(spec, batch_id)
    try:
        model.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases.select("column", "check", "index").head(50)
        return dg.AssetCheckResult(
            check_name=SCHEMA_CHECK,
            passed=False,
            metadata={"batch": batch_id, "rows": frame.height, "failures": table_metadata(cases)},
            description=f"batch {batch_id}: {errors.failure_cases.height} schema failures in "
            f"the stored {spec.name} rows",
        )
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=True,
        metadata={"batch": batch_id, "rows": frame.height, "model": model.__name__},
        description=f"batch {batch_id}: {frame.height} stored {spec.name} rows satisfy "
        f"{model.__name__}",
    )


def record_checks(
    lake: Lake, batch_id: str, asset: str, results: Iterable[dg.AssetCheckResult], at: datetime
) -> None:
    """Keep the outcome of every blocking check of an ingest asset in ``batch_checks``, so
    the block outlives the run (``ingest.gates.blocked_batches`` reads it)."""
    record_outcomes(
        lake,
        batch_id,
        asset,
        [
            CheckOutcome(
                str(r.check_name),
                bool(r.passed),
                r.description or "",
                r.severity == dg.AssetCheckSeverity.ERROR,
            )
            for r in results
        ],
        at,
    )


def require_open(lake: Lake, batch_ids: Iterable[str]) -> None:
    """Fail the step, naming the check, when any batch failed a blocking ingest check (or has
    none recorded): whatever started the run, a blocked batch goes no further."""
    blocked = blocked_batches(lake, batch_ids)
    if blocked:
        raise dg.Failure(
            description=describe_blocked(blocked)
            + ". Fix the batch upload and re-materialize raw_audio and validated_metadata.",
            metadata={"blocked_batches": dg.MetadataValue.json(blocked)},
        )
