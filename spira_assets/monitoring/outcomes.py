"""Clinical outcomes: measured SpO2 for scored recordings, arriving later as CSV files in
``landing/outcomes/``.

A file has a header row and the columns ``spo2`` (integer %), ``measured_at`` (ISO 8601) and
a reference to what was scored: ``prediction_id`` (from the log) and/or ``audio_sha256``
(either column may be absent, not both). Like every other input, nothing is dropped
silently: each rejected file or row becomes a quarantine record with its rule. Rules:

- ``missing_column`` / ``unreadable_file``: the whole file is quarantined;
- ``no_prediction_reference``: a row with neither a prediction id nor an audio hash;
- ``invalid_value``: SpO2 that is not an integer, a time that is not ISO 8601;
- ``impossible_value``: SpO2 outside 50..100 %, a measurement in the future (pandera);
- ``unknown_prediction``: the id or hash is not in the prediction log;
- ``duplicate_outcome``: the recording already has an outcome (an earlier row, or an earlier
  file: files are taken in name order, so the first one wins every time).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import pandera.errors
import pandera.polars as pa
import polars as pl
from pandera.api.polars.model_config import BaseConfig
from upath import UPath

from spira_assets.ingest.quarantine import Rejection
from spira_assets.ingest.schemas import SPO2_BOUNDS
from spira_assets.monitoring.tables import OUTCOMES
from spira_assets.storage.batches import OUTCOMES_FOLDER
from spira_assets.storage.tables import UNPARTITIONED, UTC_TIME

STAGE = "outcomes"  # the quarantine stage
REFERENCES = ("prediction_id", "audio_sha256")
REQUIRED = ("spo2", "measured_at")
FUTURE_TOLERANCE = timedelta(minutes=5)
ROW = "__row"
__all__ = ["OUTCOMES_FOLDER", "STAGE", "outcome_files", "resolve_outcomes"]


class OutcomeRecord(pa.DataFrameModel):
    """One outcome after type parsing."""

    prediction_id: str = pa.Field(nullable=True)
    audio_sha256: str = pa.Field(nullable=True, str_matches=r"^[0-9a-f]{64}$")
    spo2: int = pa.Field(in_range=SPO2_BOUNDS)
    measured_at: Annotated[pl.Datetime, "us", "UTC"]

    @pa.dataframe_check(name="no_prediction_reference")
    @classmethod
    def has_reference(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("prediction_id").is_not_null() | pl.col("audio_sha256").is_not_null()
        )

    class Config(BaseConfig):
        strict = False
        coerce = False


@dataclass(frozen=True)
class OutcomeResult:
    accepted: pl.DataFrame  # OUTCOMES rows
    rejections: list[Rejection]
    files: list[str]


def outcome_files(folder: UPath) -> list[UPath]:
    if not folder.exists():
        return []
    return sorted(
        (p for p in folder.iterdir() if p.name.endswith(".csv") and p.name[0] not in "._"),
        key=lambda p: p.name,
    )


def _typed(raw: pl.DataFrame, name: str, out: list[Rejection]) -> pl.DataFrame:
    """Strings to types; a value that does not parse is quarantined as ``invalid_value``."""
    raw = raw.with_columns(
        [pl.lit(None, pl.String).alias(c) for c in REFERENCES if c not in raw.columns]
    ).with_columns(
        pl.col(*REFERENCES).str.strip_chars().replace("", None),
        pl.col("spo2").str.strip_chars().cast(pl.Int64, strict=False).alias("__spo2"),
        pl.col("measured_at")
        .str.strip_chars()
        .str.to_datetime(time_zone="UTC", strict=False)
        .dt.cast_time_unit("us")
        .alias("__measured_at"),
    )
    for column in REQUIRED:
        bad = raw.filter(pl.col(f"__{column}").is_null())
        for row, value in bad.select(ROW, column).iter_rows():
            expected = "an integer %" if column == "spo2" else "an ISO 8601 time"
            shown = "empty" if not value else f"{len(value)} characters"
            out.append(
                Rejection(
                    name, "invalid_value", f"{column} is {shown}, not {expected}", row, column
                )
            )
    good = raw.filter(pl.col("__spo2").is_not_null() & pl.col("__measured_at").is_not_null())
    return good.select(
        ROW,
        *REFERENCES,
        pl.col("__spo2").alias("spo2"),
        pl.col("__measured_at").cast(UTC_TIME).alias("measured_at"),
    )


def _validated(typed: pl.DataFrame, name: str, now: datetime, out: list[Rejection]) -> pl.DataFrame:
    """pandera's rules, then a measurement in the future; the failing rows are quarantined."""
    failed: set[int] = set()
    try:
        OutcomeRecord.validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        rows = typed.get_column(ROW).to_list()
        for case in errors.failure_cases.iter_rows(named=True):
            if case["index"] is None:
                continue
            row = rows[case["index"]]
            if case["schema_context"] == "DataFrameSchema":
                rule, column, detail = (
                    "no_prediction_reference",
                    None,
                    "neither prediction_id nor audio_sha256 is given",
                )
            elif case["column"] == "spo2":
                rule, column = "impossible_value", "spo2"
                low, high = SPO2_BOUNDS["min_value"], SPO2_BOUNDS["max_value"]
                detail = f"spo2={case['failure_case']} is outside {low}..{high} %"
            else:
                rule, column = "invalid_value", str(case["column"])
                detail = f"{column} fails {case['check']}"
            out.append(Rejection(name, rule, detail, row, column))
            failed.add(row)
    future = typed.filter(pl.col("measured_at") > now + FUTURE_TOLERANCE)
    for (row,) in future.select(ROW).iter_rows():
        out.append(
            Rejection(name, "impossible_value", "measured_at is in the future", row, "measured_at")
        )
        failed.add(row)
    return typed.filter(~pl.col(ROW).is_in(sorted(failed)))


def read_outcome_file(path: UPath, now: datetime, out: list[Rejection]) -> pl.DataFrame:
    """The file's rows that pass every rule of their own (references are resolved later)."""
    name = path.name
    try:
        raw = pl.read_csv(io.BytesIO(path.read_bytes()), infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as error:
        out.append(
            Rejection(name, "unreadable_file", f"not a readable CSV: {type(error).__name__}")
        )
        return pl.DataFrame()
    missing = [c for c in REQUIRED if c not in raw.columns]
    if not any(c in raw.columns for c in REFERENCES):
        missing.append(" or ".join(REFERENCES))
    if missing:
        for column in missing:
            out.append(
                Rejection(
                    name,
                    "missing_column",
                    f"the file has no {column} column; the whole file is quarantined "
                    "(fix the header and land it again under a new name)",
                    column=column,
                )
            )
        return pl.DataFrame()
    raw = raw.with_row_index(ROW, offset=2).with_columns(pl.col(ROW).cast(pl.Int64))
    return _validated(_typed(raw, name, out), name, now, out)


def resolve_outcomes(
    files: list[UPath], predictions: pl.DataFrame, spo2_threshold: int, now: datetime | None = None
) -> OutcomeResult:
    """Every file's outcomes, each resolved to the recording it is about through the log
    (``predictions``: prediction_id, audio_sha256), with unknown and duplicate ones rejected."""
    now = now or datetime.now(UTC)
    by_id = dict(predictions.select("prediction_id", "audio_sha256").iter_rows())
    known_audio = set(predictions.get_column("audio_sha256").drop_nulls().to_list())
    rejections: list[Rejection] = []
    accepted: list[dict[str, object]] = []
    seen: dict[str, str] = {}  # audio -> where its outcome came from
    for path in files:
        rows = read_outcome_file(path, now, rejections)
        for row in rows.iter_rows(named=True) if rows.height else ():
            given_id, given_audio = row["prediction_id"], row["audio_sha256"]
            audio = by_id.get(given_id) if given_id else given_audio
            if (given_id and given_id not in by_id) or (
                not given_id and given_audio not in known_audio
            ):
                what = f"prediction_id {given_id}" if given_id else f"audio_sha256 {given_audio}"
                rejections.append(
                    Rejection(
                        path.name,
                        "unknown_prediction",
                        f"{what} is not in the prediction log (scored elsewhere, or a typo)",
                        row[ROW],
                        "prediction_id" if given_id else "audio_sha256",
                    )
                )
                continue
            if audio is None:  # the prediction's file could not be read: nothing to judge
                rejections.append(
                    Rejection(
                        path.name,
                        "unknown_prediction",
                        "the prediction has no audio hash",
                        row[ROW],
                        "prediction_id",
                    )
                )
                continue
            where = f"{path.name} row {row[ROW]}"
            if audio in seen:
                rejections.append(
                    Rejection(
                        path.name,
                        "duplicate_outcome",
                        f"the recording already has an outcome ({seen[audio]}); the first is kept",
                        row[ROW],
                    )
                )
                continue
            seen[audio] = where
            accepted.append(
                {
                    "batch_id": UNPARTITIONED,
                    "source_file": path.name,
                    "row_number": row[ROW],
                    "prediction_id": given_id,
                    "audio_sha256": audio,
                    "spo2": row["spo2"],
                    "measured_at": row["measured_at"],
                    "label": int(row["spo2"] < spo2_threshold),
                }
            )
    frame = OUTCOMES.conform(pl.DataFrame(accepted)) if accepted else OUTCOMES.empty()
    return OutcomeResult(frame, rejections, [p.name for p in files])
