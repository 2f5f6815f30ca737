"""Turning core results into Dagster metadata people can read in the UI."""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable
from typing import Any

import dagster as dg
import polars as pl

from spira_assets.storage.tables import TableSpec

MAX_TABLE_ROWS = 50


# Plot keys name what they show: the UI lists metadata by key, and a plot is a "[Show Markdown]"
# link beside it. The browser test (test_continuous_training.py) opens each one by this name.
PLOT = "plot: "
PLOT_RAW_AUDIO = PLOT + "duration, loudness and quarantined files by rule"
PLOT_CLASS_BALANCE = PLOT + "accepted recordings by utterance and class"
PLOT_EXAMPLES = PLOT + "features of one recording per class (z-score per coefficient)"
PLOT_TRAINING = PLOT + "training curves (loss, validation AUROC, kept epoch starred)"
PLOT_DRIFT = PLOT + "drift against the champion's data (statistic / threshold)"


def plot_evaluation(condition: str) -> str:
    return PLOT + f"ROC, calibration and confusion ({condition} test set)"


def headline_first(metadata: dict[str, Any]) -> dict[str, Any]:
    """The order the UI shows: headline numbers and texts, links, tables (rejections, metrics,
    gate criteria), plots, then file paths. Stable within each group."""

    def rank(item: tuple[str, Any]) -> int:
        key, value = item
        if key.startswith(PLOT):
            return 3
        if isinstance(value, dg.UrlMetadataValue):
            return 1
        if isinstance(value, dg.TableMetadataValue):
            return 2
        if isinstance(value, dg.PathMetadataValue):
            return 4
        return 0

    return dict(sorted(metadata.items(), key=rank))


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
