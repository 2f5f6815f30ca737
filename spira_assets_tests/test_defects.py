"""Every defect the demo generator injects is quarantined with exactly the expected reason,
and nothing else in the batch is lost (core stages, no Dagster)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from spira_assets.demo.corpus import MANIFEST_FILE
from spira_assets.demo.defects import DEFECT_KINDS, EXPECTED
from spira_assets.demo.verify import verify_batch
from spira_assets.ingest.metadata import MetadataResult
from spira_assets.ingest.raw_audio import RawAudioResult
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.layout import DataLayout
from spira_assets_tests.conftest import TEST_KEY, all_quarantine

Results = tuple[RawAudioResult, MetadataResult, DataLayout]


def manifest(layout: DataLayout) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        (layout.batch_dir("demo-001") / MANIFEST_FILE).read_text()
    )
    return loaded


def test_corpus_contains_every_defect_kind_once(defect_stage_results: Results) -> None:
    kinds = [d["kind"] for d in manifest(defect_stage_results[2])["defects"]]  # type: ignore[index, union-attr]
    assert sorted(kinds) == sorted(DEFECT_KINDS)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_is_quarantined_with_its_exact_reason(
    defect_stage_results: Results, kind: str
) -> None:
    raw, meta, layout = defect_stage_results
    defect = next(d for d in manifest(layout)["defects"] if d["kind"] == kind)  # type: ignore[union-attr]
    quarantine = all_quarantine(raw, meta)
    path, row = defect["audio_path"], defect["row_number"]
    # a file no metadata row names is shown by its keyed tag, never by its name
    shown = [path, Redactor.withholding(Pseudonymizer(TEST_KEY)).path(str(path))]
    same_row = pl.col("row_number") == row if row is not None else pl.lit(False)
    records = quarantine.filter(
        pl.col("item").is_in(shown) | ((pl.col("stage") == "validated_metadata") & same_row)
    )
    actual = sorted(records.select("stage", "rule", "column").iter_rows(), key=str)
    expected = sorted(((e.stage, e.rule, e.column) for e in EXPECTED[kind]), key=str)
    assert actual == expected


def test_no_rejection_is_unexplained_and_accounting_is_exact(defect_stage_results: Results) -> None:
    raw, meta, layout = defect_stage_results
    verification = verify_batch(
        manifest(layout), all_quarantine(raw, meta), Pseudonymizer(TEST_KEY)
    )
    assert verification.ok, verification.problems
    assert meta.rows_in == meta.rows_accepted + meta.rows_quarantined
    files_quarantined = raw.quarantine.get_column("item").n_unique()
    assert raw.files_in == raw.accepted + files_quarantined
    # Every row without a defect made it through.
    m = manifest(layout)
    assert meta.rows_in == m["rows"]
    defective_rows = {d["row_number"] for d in m["defects"] if d["expected"] and d["row_number"]}  # type: ignore[union-attr]
    assert meta.rows_quarantined == len(defective_rows)


def test_quarantined_audio_never_reaches_the_raw_store(defect_stage_results: Results) -> None:
    raw, _, layout = defect_stage_results
    stored = {p.name.split(".")[0] for p in layout.raw_store.rglob("*") if p.is_file()}
    accepted = set(raw.table.filter(pl.col("accepted")).get_column("audio_sha256").to_list())
    assert stored == accepted
