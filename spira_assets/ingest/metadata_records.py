"""Record-level rules of ``metadata.csv``: types, timestamps and the pandera model, each
rejection collected with its row, column, rule and a detail that never quotes free text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandera.errors
import polars as pl

from spira_assets.ingest.metadata_csv import PHI_COLUMNS, ROW_NUMBER, MetadataCsv, shape
from spira_assets.ingest.quarantine import Rejection
from spira_assets.ingest.schemas import MetadataRecord
from spira_assets.storage.tables import UTC_TIME

SOURCE = "metadata.csv"
INT_COLUMNS = ("label", "age", "spo2", "respiratory_rate")
FUTURE_TOLERANCE = timedelta(days=1)


def _rule_for_check(check: str) -> str:
    for prefix, rule in (
        ("not_nullable", "missing_value"),
        ("in_range", "out_of_range"),
        ("isin", "not_allowed"),
        ("str_matches", "invalid_format"),
    ):
        if check.startswith(prefix):
            return rule
    return check


def _describe(column: str, value: object, check: str) -> str:
    if column in PHI_COLUMNS:
        subject = f"{column} (an identifier, not shown)"
    elif isinstance(value, bool | int | float):
        subject = f"{column}={value!r}"
    else:
        subject = f"{column} ({shape(value)})"
    if check.startswith("not_nullable"):
        return f"{column} is required but empty"
    if check.startswith("in_range"):
        bounds = check[len("in_range") :].strip("()").replace(", ", "..")
        return f"{subject} is outside {bounds}"
    if check.startswith("isin"):
        return f"{subject} is not one of {check[len('isin') :].strip('()')}"
    if check.startswith("str_matches"):
        return f"{subject} does not match {check[len('str_matches') :].strip('()')}"
    return f"{subject} fails {check}"


def _parse_timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class Collector:
    def __init__(self) -> None:
        self.items: list[Rejection] = []
        self.rows: set[int] = set()

    def add(self, row: int | None, column: str | None, rule: str, detail: str) -> None:
        item = SOURCE if row is None else f"{SOURCE}:{row}"
        self.items.append(Rejection(item, rule, detail, row, column))
        if row is not None:
            self.rows.add(row)


def typed_records(parsed: MetadataCsv, now: datetime, out: Collector) -> pl.DataFrame:
    frame = parsed.frame
    for column in ("spo2", "respiratory_rate", "hospital_record", "phone"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    frame = frame.with_columns(
        pl.col("sex").str.to_uppercase(),
        pl.col("utterance").str.to_lowercase(),
        pl.col("device").str.to_lowercase(),
    )
    typed = frame.with_columns(
        [pl.col(c).cast(pl.Int64, strict=False).alias(f"__{c}") for c in INT_COLUMNS]
    )
    for column in INT_COLUMNS:
        bad = typed.filter(pl.col(column).is_not_null() & pl.col(f"__{column}").is_null())
        for row, value in bad.select(ROW_NUMBER, column).iter_rows():
            out.add(row, column, "invalid_type", f"{column} is {shape(value)}, not a whole number")
    stamps = [_parse_timestamp(v) for v in frame.get_column("collected_at").to_list()]
    for row, raw, stamp in zip(
        frame.get_column(ROW_NUMBER), frame.get_column("collected_at"), stamps, strict=True
    ):
        if raw is not None and stamp is None:
            out.add(
                row,
                "collected_at",
                "invalid_timestamp",
                f"collected_at is {shape(raw)}, not an ISO 8601 timestamp "
                "(e.g. 2024-05-03T10:22:00-03:00)",
            )
        elif stamp is not None and stamp > now + FUTURE_TOLERANCE:
            out.add(
                row,
                "collected_at",
                "timestamp_in_future",
                f"collected_at {stamp:%Y-%m-%d %H:%M} UTC is in the future",
            )
    typed = typed.with_columns(
        [pl.col(f"__{c}").alias(c) for c in INT_COLUMNS]
        + [pl.Series("collected_at", stamps, dtype=UTC_TIME)]
    ).drop([f"__{c}" for c in INT_COLUMNS])
    return typed


def validate_records(typed: pl.DataFrame, out: Collector) -> None:
    already = {(r.row_number, r.column) for r in out.items}
    try:
        MetadataRecord.validate(typed, lazy=True)
        return
    except pandera.errors.SchemaErrors as errors:
        failures = errors.failure_cases
    rows = typed.get_column(ROW_NUMBER).to_list()
    for case in failures.iter_rows(named=True):
        index = case["index"]
        if index is None:
            continue
        row = rows[index]
        check = str(case["check"])
        if case["schema_context"] == "DataFrameSchema":
            record = typed.row(index, named=True)
            detail = {
                "patient_spo2_below_92": (
                    f"label=1 (patient) needs spo2 below 92, found spo2={record['spo2']!r}"
                ),
                "control_spo2_not_below_92": (
                    f"label=0 (control) with spo2={record['spo2']!r} below 92: mislabelled?"
                ),
            }.get(check, f"record fails {check}")
            out.add(row, "spo2", check, detail)
            continue
        column = str(case["column"])
        if (row, column) in already:
            continue  # the value was unreadable; already reported as such
        out.add(row, column, _rule_for_check(check), _describe(column, case["failure_case"], check))
