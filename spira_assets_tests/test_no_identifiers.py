"""No raw participant id, hospital record or phone leaves the raw zone: not in any warehouse
table, not in the lake files, not in the Dagster event log (metadata and log lines)."""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from spira_assets.layout import DataLayout
from spira_assets.runner import materialize_batch
from spira_assets.storage.lake import Lake
from spira_assets.storage.warehouse import Warehouse


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
