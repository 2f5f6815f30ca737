"""The prediction log: concurrent scorers lose and duplicate nothing, a killed writer leaves
nothing a reader takes for a record, and no raw id or file path is ever written."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from upath import UPath

from spira_assets.monitoring.prediction_log import (
    PredictionLog,
    new_prediction_id,
)
from spira_assets_tests.log_writers import PER_WRITER, append_many, record
from spira_assets_tests.test_object_storage import s3_endpoint, s3_root  # noqa: F401  (fixtures)

WRITERS = 6


def test_concurrent_scorers_append_every_record_exactly_once(tmp_path: Path) -> None:
    run_writers(str(tmp_path), WRITERS)
    records = list(PredictionLog(UPath(tmp_path)))
    hashes = [r.audio_sha256 for r in records]
    expected = {f"{w:032x}{n:032x}" for w in range(WRITERS) for n in range(PER_WRITER)}
    assert len(hashes) == WRITERS * PER_WRITER  # nothing duplicated
    assert set(hashes) == expected  # nothing lost
    assert len({r.prediction_id for r in records}) == len(records)
    assert len(PredictionLog(UPath(tmp_path)).days()) == 2


def run_writers(root: str, writers: int) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=append_many, args=(root, w, start)) for w in range(writers)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0


@pytest.mark.slow
def test_scorers_appending_to_an_object_store_root_lose_and_duplicate_nothing(
    s3_root: str,  # noqa: F811  (the fixture imported above)
) -> None:
    log_root = f"{s3_root}/predictions/log"
    run_writers(log_root, 3)
    records = list(PredictionLog(UPath(log_root)))
    expected = {f"{w:032x}{n:032x}" for w in range(3) for n in range(PER_WRITER)}
    assert sorted(r.audio_sha256 for r in records) == sorted(expected)


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


def test_the_outcomes_folder_of_the_landing_zone_is_no_batch(tmp_path: Path) -> None:
    from spira_assets.storage.batches import scan_landing

    (tmp_path / "outcomes").mkdir()
    (tmp_path / "outcomes" / "ward.csv").write_text("prediction_id,spo2,measured_at\n")
    (tmp_path / "b1").mkdir()
    (tmp_path / "b1" / "_READY").touch()
    scan = scan_landing(UPath(tmp_path))
    assert (scan.complete, scan.incomplete, scan.refused) == (("b1",), (), ())
