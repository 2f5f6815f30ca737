"""Check logic shared by the assets: the stored table re-read and validated with pandera.

The checks are declared as blocking ``check_specs`` on each asset (partition-aware asset checks
are still a preview feature in Dagster 1.13), and evaluated from what was actually written.
"""

import dagster as dg
import pandera.errors
import pandera.polars as pa

from spira_assets.assets.presentation import markdown_table
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import TableSpec

SCHEMA_CHECK = "stored_table_matches_schema"


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
            metadata={"rows": frame.height, "failures": markdown_table(cases)},
            description=f"{errors.failure_cases.height} schema failures in {spec.name}",
        )
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=True,
        metadata={"rows": frame.height, "model": model.__name__},
    )
