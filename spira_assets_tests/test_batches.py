from pathlib import Path

import pytest
from upath import UPath

from spira_assets.storage.batches import (
    InvalidBatchIdError,
    is_valid_batch_id,
    require_valid_batch_id,
    scan_landing,
)


@pytest.mark.parametrize("name", ["demo-001", "HC.2026_03", "a", "9" * 64])
def test_accepts_contract_batch_ids(name: str) -> None:
    assert is_valid_batch_id(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../etc", "a/b", "-leading", "_hidden", "a b", "ção", "9" * 65, "x\n"]
)
def test_refuses_names_that_are_not_batch_ids(name: str) -> None:
    assert not is_valid_batch_id(name)
    with pytest.raises(InvalidBatchIdError, match="refused"):
        require_valid_batch_id(name)


def test_scan_separates_complete_incomplete_and_refused(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    for name in ("b-complete", "b-incomplete", "bad name", "noise", "_tmp"):
        (landing / name).mkdir(parents=True)
    (landing / "b-complete" / "_READY").touch()
    (landing / "bad name" / "_READY").touch()
    (landing / "stray.csv").touch()
    scan = scan_landing(UPath(landing))
    assert scan.complete == ("b-complete",)
    assert scan.incomplete == ("b-incomplete",)
    assert scan.refused == ("bad name",)


def test_scan_of_missing_landing_is_empty(tmp_path: Path) -> None:
    scan = scan_landing(UPath(tmp_path / "nothing"))
    assert scan.complete == scan.incomplete == scan.refused == ()
