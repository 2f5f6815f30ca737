"""Turning core results into Dagster metadata people can read in the UI."""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable

import dagster as dg
import polars as pl

from spira_assets.storage.tables import TableSpec

MAX_TABLE_ROWS = 50


def image(png: bytes, title: str) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def _cell(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return str(value)


def table_metadata(frame: pl.DataFrame, limit: int = MAX_TABLE_ROWS) -> dg.MetadataValue:
    """A structured table for the UI (``MetadataValue.table``): columns that are empty in every
    row are left out, floats rounded to 4 digits, at most ``limit`` rows."""
    shown = frame.select(
        [c for c in frame.columns if frame.get_column(c).null_count() < frame.height]
    )
    kinds = {
        name: "float" if dtype.is_float() else "int" if dtype.is_integer() else
        "bool" if dtype == pl.Boolean else "string"
        for name, dtype in shown.schema.items()
    }  # fmt: skip
    records = [
        dg.TableRecord({k: _cell(v) for k, v in row.items()})
        for row in shown.head(limit).iter_rows(named=True)
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kinds[name]) for name in shown.columns])
    return dg.MetadataValue.table(records=records, schema=schema)


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in spec.schema.items()]
    )


def data_version(parts: Iterable[object]) -> dg.DataVersion:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return dg.DataVersion(digest.hexdigest()[:24])


def quarantine_summary(quarantine: pl.DataFrame) -> pl.DataFrame:
    if quarantine.is_empty():
        return quarantine
    return quarantine.select("item", "row_number", "column", "rule", "detail").sort(
        "row_number", "item", nulls_last=True
    )
