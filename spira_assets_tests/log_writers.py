"""Writers for the prediction-log concurrency tests: a module of its own, light to import,
because every spawned writer process imports the module of its target function."""

from __future__ import annotations

import multiprocessing.synchronize
from datetime import UTC, datetime, timedelta

from upath import UPath

from spira_assets.monitoring.prediction_log import (
    PredictionLog,
    PredictionRecord,
    new_prediction_id,
)

PER_WRITER = 40


def record(n: int, writer: int, when: datetime) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=new_prediction_id(when),
        scored_at=when,
        source=f"writer-{writer}",
        model_version="abc",
        audio_sha256=f"{writer:032x}{n:032x}",
        participant=None,
        probability=0.25,
        raw_score=0.3,
        decision=0,
        threshold=0.5,
        windows=3,
        error=None,
        feature_means=[1.0, 2.0],
    )


def append_many(root: str, writer: int, start: multiprocessing.synchronize.Event) -> None:
    log = PredictionLog(UPath(root))
    start.wait()  # every writer appends at the same moment
    now = datetime.now(UTC)
    for n in range(PER_WRITER):
        # two days: writers also race to create each day's folder
        log.append(record(n, writer, now + timedelta(days=n % 2)))
