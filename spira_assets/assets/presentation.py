"""Turning core results into Dagster metadata people can read in the UI."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

import dagster as dg
import polars as pl

from spira_assets.storage.tables import TableSpec

MAX_TABLE_ROWS = 50


def image(png: bytes, title: str) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def markdown_table(frame: pl.DataFrame, limit: int = MAX_TABLE_ROWS) -> dg.MetadataValue:
    if frame.is_empty():
        return dg.MetadataValue.md("_none_")
    shown = frame.head(limit)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    body = [
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |"
        for row in shown.iter_rows()
    ]
    more = (
        [f"\n_{frame.height - limit} more rows: query the warehouse_"]
        if frame.height > limit
        else []
    )
    return dg.MetadataValue.md("\n".join([header, rule, *body, *more]))


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
