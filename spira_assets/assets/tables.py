"""Warehouse tables as assets.

A table written by one asset's step is an output of that step's multi-asset (``feature_stats``
of ``spectrogram_features``, ``model_versions`` of ``spira_model``...): the catalog lists it
with its column schema and row count, and an asset that reads it declares it. A table that
several ingest steps append to (``quarantine``, ``batch_checks``) is a per-batch asset of its
own downstream of its writers (``assets/ingest_tables.py``).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets.presentation import column_schema, headline_first
from spira_assets.assets.presentation import data_version as content_version
from spira_assets.storage.tables import TableSpec

TABLE_KINDS = {"parquet", "duckdb"}


def table_out(
    spec: TableSpec, description: str, group: str, code_version: str, **kwargs: Any
) -> dg.AssetOut:
    return dg.AssetOut(
        key=spec.name,
        description=description,
        group_name=group,
        kinds=TABLE_KINDS,
        code_version=code_version,
        metadata={"dagster/column_schema": column_schema(spec), "table": spec.name},
        **kwargs,
    )


def table_result(
    spec: TableSpec,
    written: pl.DataFrame,
    data_version: dg.DataVersion | None = None,
    **metadata: Any,
) -> dg.MaterializeResult:
    """The materialization of a table output: the rows this step wrote (its part); its data
    version is their content unless the caller has a better identity."""
    return dg.MaterializeResult(
        asset_key=spec.name,
        metadata={"dagster/row_count": written.height, "table": spec.name, **metadata},
        data_version=data_version or content_version([written.write_csv()]),
    )


def with_tables(
    result: dg.MaterializeResult, key: str, tables: list[tuple[TableSpec, pl.DataFrame]]
) -> tuple[dg.MaterializeResult, ...]:
    """The step's main result under its own key, then one result per table part it wrote
    (omitted when the step wrote none, e.g. a blocked evaluation: those outputs are optional)."""
    main: dg.MaterializeResult = dg.MaterializeResult(
        asset_key=key,
        metadata=headline_first(dict(result.metadata or {})),
        check_results=result.check_results,
        data_version=result.data_version,
        tags=result.tags,
    )
    return (main, *(table_result(spec, frame) for spec, frame in tables))


def metadata_text(result: dg.MaterializeResult, key: str) -> str:
    """A plain metadata value of a step's result (the model version it made...)."""
    value = (result.metadata or {})[key]
    return str(value.value if isinstance(value, dg.MetadataValue) else value)
