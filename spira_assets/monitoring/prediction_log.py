"""The prediction log: one record per scored file, under the data root.

Layout: ``<root>/predictions/log/<YYYY-MM-DD>/<prediction_id>.json`` (the UTC day it was
scored). One small file per record, because that is the one append that is atomic and free of
locks on both kinds of root: on local disk the record is written to a hidden staging name in
the same folder, flushed and renamed into place (``os.replace``); in object storage a PUT is
atomic. A scorer killed mid-write leaves at most a hidden staging file, which readers skip; two
scorers (REST workers, CLI runs, pods) never share a file, because the name is a fresh random
id, so concurrent appends neither lose nor duplicate a record and need no lock that object
storage could not give. The ``predictions`` asset compacts a day into one Parquet part.

The log never holds a file path (a name can carry an identifier) or a raw participant id:
only the audio's SHA-256 and, when an id was given, its keyed pseudonym.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from upath import UPath

from spira_assets.storage.layout import is_local

LOG_FOLDER = "predictions/log"  # under the data root
RECORD_SUFFIX = ".json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class InputSummary:
    """What the model was given, small enough to log with every prediction: duration and level
    of the decoded audio, and the mean of each feature coefficient over its frames (what
    ``feature_stats`` holds per batch, so drift can compare the two)."""

    duration_s: float
    rms_dbfs: float
    peak_dbfs: float
    feature_means: list[float]


@dataclass(frozen=True)
class PredictionRecord:
    prediction_id: str
    scored_at: datetime
    source: str  # cli, serving (the MLflow pyfunc: REST or batch scoring)
    model_version: str
    audio_sha256: str | None  # None: the file could not be read
    participant: str | None  # the keyed pseudonym, never the raw id
    probability: float | None
    raw_score: float | None
    decision: int | None
    threshold: float
    windows: int
    error: str | None
    duration_s: float | None = None
    rms_dbfs: float | None = None
    peak_dbfs: float | None = None
    feature_means: list[float] | None = field(default=None)
    schema_version: int = SCHEMA_VERSION

    @property
    def day(self) -> date:
        return self.scored_at.astimezone(UTC).date()

    def to_json(self) -> str:
        data = asdict(self)
        data["scored_at"] = self.scored_at.astimezone(UTC).isoformat()
        return json.dumps(data, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PredictionRecord:
        data = json.loads(text)
        data["scored_at"] = datetime.fromisoformat(data["scored_at"])
        return cls(**data)


def new_prediction_id(now: datetime) -> str:
    """Sortable by time (to the microsecond) and unique without coordination."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:16]}"


class PredictionLog:
    """Appends and reads records under ``root`` (``<data root>/predictions/log``)."""

    def __init__(self, root: UPath) -> None:
        self.root = root

    def day_dir(self, day: date) -> UPath:
        return self.root / day.isoformat()

    def append(self, record: PredictionRecord) -> UPath:
        target = self.day_dir(record.day) / f"{record.prediction_id}{RECORD_SUFFIX}"
        payload = (record.to_json() + "\n").encode()
        if is_local(target):
            _write_local(target, payload)
        else:  # object stores: one PUT, atomic; there is no rename
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as handle:
                handle.write(payload)
        return target

    def days(self) -> list[date]:
        if not self.root.exists():
            return []
        found = []
        for entry in self.root.iterdir():
            try:
                found.append(date.fromisoformat(entry.name))
            except ValueError:
                continue
        return sorted(found)

    def files(self, day: date) -> list[UPath]:
        folder = self.day_dir(day)
        if not folder.exists():
            return []
        return sorted(
            p for p in folder.iterdir() if p.name.endswith(RECORD_SUFFIX) and p.name[0] != "."
        )

    def read_day(self, day: date) -> list[PredictionRecord]:
        return [PredictionRecord.from_json(p.read_text()) for p in self.files(day)]

    def __iter__(self) -> Iterator[PredictionRecord]:
        for day in self.days():
            yield from self.read_day(day)


def _write_local(target: UPath, payload: bytes) -> None:
    final = Path(target.path)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())  # the renamed file has its content even after a power cut
    staging.replace(final)
