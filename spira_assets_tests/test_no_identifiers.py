"""No raw participant id, hospital record or phone leaves the raw zone: not in any warehouse
table, not in the lake files, not in the Dagster event log (metadata and log lines)."""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from spira_assets.app.runner import materialize_batch
from spira_assets.privacy import Pseudonymizer
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import QUARANTINE, RAW_AUDIO
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.conftest import TEST_KEY
from spira_assets_tests.small_batches import (
    INGEST,
    Row,
    land,
    latest_metadata,
    leaving_the_raw_zone,
)
from spira_assets_tests.test_identity import GOOD


def identifiers(layout: DataLayout) -> set[str]:
    found: set[str] = set()
    with (layout.batch_dir("demo-001") / "metadata.csv").open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            for column in ("participant_id", "hospital_record", "phone", "notes"):
                value = (row.get(column) or "").strip()
                if len(value) >= 5:
                    found.add(value)
    return found


def test_identifiers_appear_nowhere_downstream(
    demo_layout: DataLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPIRA_DATA_DIR", str(demo_layout.root))
    instance = dg.DagsterInstance.ephemeral()
    materialize_batch(instance, demo_layout, "demo-001", console_log_level="DEBUG")
    secrets = identifiers(demo_layout)
    assert len(secrets) > 20

    warehouse = Warehouse(demo_layout.warehouse, Lake(demo_layout.lake))
    texts = []
    for table in ("raw_audio", "validated_metadata", "quarantine"):
        texts.append(warehouse.query(f"SELECT * FROM {table}").write_csv())
    parts = list(Path(str(demo_layout.lake)).rglob("*.parquet"))
    assert len(parts) >= 4
    texts += [pl.read_parquet(path).write_csv() for path in parts]
    for run in instance.get_runs():
        texts += [str(e) for e in instance.all_logs(run.run_id)]
    blob = "\n".join(texts)
    leaked = sorted(s for s in secrets if s in blob)
    assert not leaked
    assert "P-" in blob  # the pseudonyms are there instead


# Each fault below used to put an identifier into a table, a quarantine detail or the asset's
# Dagster metadata; the batch is materialized for real and everything outside the raw zone
# searched for it.


def test_a_decomposed_file_name_carrying_an_id_is_stored_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS writes file names decomposed (NFD); the CSV row names the file composed."""
    root = tmp_path / "data"
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    composed = "audio/Jo\u00e3o-17_frase.wav"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    rows = [Row("Jo\u00e3o-17", 1, path=composed), *GOOD]
    layout = land(root, "b1", rows, silent=frozenset({composed}), names={composed: decomposed})
    instance = dg.DagsterInstance.ephemeral()
    materialize_batch(instance, layout, "b1", INGEST)
    blob = leaving_the_raw_zone(layout, instance)
    for spelling in (composed, decomposed):
        assert spelling.split("/")[1][:7] not in blob  # "João-17" either way
    assert "Jo\u00e3o" not in blob and "Joa\u0303o" not in blob
    participant = Pseudonymizer(TEST_KEY).participant("jo\u00e3o-17")
    raw = Lake(layout.lake).read_part(RAW_AUDIO, "b1")
    assert f"audio/{participant}_frase.wav" in raw.get_column("source_path").to_list()


@pytest.mark.parametrize(
    "planted",
    [
        "headerless",  # the first data row read as a header: unknown columns
        "headerless, record and phone alike",  # ... with two equal cells: a bad header
    ],
)
def test_a_headerless_metadata_csv_never_shows_its_first_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    root = tmp_path / "data"
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    phone = "91234-5678" if planted == "headerless" else "4455667"
    first = Row("SP0001", 1, record="4455667", phone=phone)
    rows = [first, *GOOD]
    lines = [r.line(n) for n, r in enumerate(rows, start=2)]
    layout = land(root, "b1", rows, metadata="\n".join(lines) + "\n")
    instance = dg.DagsterInstance.ephemeral()
    materialize_batch(instance, layout, "b1", INGEST)
    blob = leaving_the_raw_zone(layout, instance)
    for secret in ("SP0001", "4455667", "91234-5678"):
        assert secret not in blob, secret
    quarantine = Lake(layout.lake).read_part(QUARANTINE, "b1", sub="validated_metadata")
    if planted == "headerless":
        dropped = latest_metadata(instance, "validated_metadata")["unknown_columns_dropped"]
        assert isinstance(dropped, list) and len(dropped) == len(first.line(2).split(","))
        assert dropped[0] == "column 1 (a 6-character text (letters, digits))"
        assert set(quarantine.get_column("rule")) >= {"missing_column"}
    else:
        (detail,) = quarantine.filter(pl.col("rule") == "bad_header").get_column("detail")
        assert "duplicate names in columns [2, 3]" in detail
        assert "is the header row missing?" in detail


def test_a_file_named_with_an_id_its_row_misspells_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    rows = [
        Row("SP0017", 0, path="audio/SP0071_frase.wav"),  # digits swapped in the row
        Row("SP0018", 1, path="audio/SP-0018_aceite.wav"),  # the file spells it with a hyphen
        *GOOD,
    ]
    layout = land(root, "b1", rows)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_batch(instance, layout, "b1", INGEST).ok
    blob = leaving_the_raw_zone(layout, instance)
    for secret in ("SP0071", "SP-0018", "SP0018", "SP0017"):
        assert secret not in blob, secret
    shown = set(Lake(layout.lake).read_part(RAW_AUDIO, "b1").get_column("source_path"))
    participant = Pseudonymizer(TEST_KEY).participant("SP0018")
    assert {"audio/[redacted]_frase.wav", f"audio/{participant}_aceite.wav"} <= shown
