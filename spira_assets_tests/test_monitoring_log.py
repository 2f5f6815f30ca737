"""The prediction log: concurrent scorers lose and duplicate nothing, a killed writer leaves
nothing a reader takes for a record, and no raw id or file path is ever written."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from upath import UPath

from spira_assets.monitoring.prediction_log import (
    PredictionLog,
    PredictionRecord,
    new_prediction_id,
)

WRITERS = 6
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


def test_concurrent_scorers_append_every_record_exactly_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=append_many, args=(str(tmp_path), w, start)) for w in range(WRITERS)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    records = list(PredictionLog(UPath(tmp_path)))
    hashes = [r.audio_sha256 for r in records]
    expected = {f"{w:032x}{n:032x}" for w in range(WRITERS) for n in range(PER_WRITER)}
    assert len(hashes) == WRITERS * PER_WRITER  # nothing duplicated
    assert set(hashes) == expected  # nothing lost
    assert len({r.prediction_id for r in records}) == len(records)
    assert len(PredictionLog(UPath(tmp_path)).days()) == 2


def test_a_writer_killed_mid_append_leaves_no_record(tmp_path: Path) -> None:
    log = PredictionLog(UPath(tmp_path))
    kept = record(0, 0, datetime.now(UTC))
    log.append(kept)
    # what a scorer killed before its rename leaves: a hidden staging file, half written
    folder = tmp_path / kept.day.isoformat()
    (folder / f".{new_prediction_id(kept.scored_at)}.json.4242.tmp").write_text('{"predic')
    assert [r.prediction_id for r in log] == [kept.prediction_id]


def test_the_log_is_on_where_the_data_root_is_known_and_can_be_switched_off() -> None:
    from spira_assets.monitoring.recorder import log_root_from  # torch: not in the writers

    assert log_root_from({"SPIRA_DATA_DIR": "/data"}) == "/data"
    assert log_root_from({}) is None
    assert log_root_from({"SPIRA_DATA_DIR": "/data", "SPIRA_PREDICTION_LOG": "off"}) is None
