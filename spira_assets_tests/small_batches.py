"""Small hand-written landing batches for tests that materialize the ingest assets, and the
text of everything that leaves the raw zone (tables, lake parts, Dagster events)."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import soundfile as sf

from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.warehouse import Warehouse

HEADER = (
    "participant_id,hospital_record,phone,label,sex,age,spo2,collected_at,device,utterance,"
    "audio_path"
)
INGEST = ("raw_audio", "validated_metadata")


def speech(seed: int, silent: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(32_000) / 16_000
    audio = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 250) * t) * (1 + 0.3 * np.sin(6 * np.pi * t))
    buffer = io.BytesIO()
    sf.write(buffer, audio * (0 if silent else 1), 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@dataclass(frozen=True)
class Row:
    pid: str
    label: int = 0
    sex: str = "F"
    age: int = 40
    utterance: str = "frase"
    path: str = ""  # default: audio/<n>.wav
    record: str = ""
    phone: str = "+55 11 90000-0000"

    def line(self, number: int) -> str:
        spo2 = "88" if self.label == 1 else ""
        return (
            f"{self.pid},{self.record},{self.phone},{self.label},{self.sex},{self.age},{spo2},"
            f"2026-03-02T10:00:00-03:00,web,{self.utterance},{self.file(number)}"
        )

    def file(self, number: int) -> str:
        return self.path or f"audio/{number:03d}.wav"


# four people of both classes, two utterances each: a batch that passes every ingest check
GOOD = [
    Row("SP0002", 0, utterance="frase"),
    Row("SP0002", 0, utterance="aceite"),
    Row("SP0003", 1, "M", 60, "frase"),
    Row("SP0003", 1, "M", 60, "aceite"),
    Row("SP0004", 0, "M", 35, "frase"),
    Row("SP0004", 0, "M", 35, "aceite"),
    Row("SP0005", 1, "F", 70, "frase"),
    Row("SP0005", 1, "F", 70, "aceite"),
]


def land(
    root: Path,
    batch: str,
    rows: list[Row],
    metadata: str | None = None,
    silent: frozenset[str] = frozenset(),
    names: dict[str, str] | None = None,
) -> DataLayout:
    """``landing/<batch>/`` with one audio file per row (distinct content in every batch),
    its metadata.csv (``metadata``: instead of the rows' own) and ``_READY``. ``silent``: files
    written as silence (quarantined by raw_audio); ``names``: a file's name on disk when it is
    not the one its row gives (a decomposed name, say)."""
    folder = root / "landing" / batch
    for number, row in enumerate(rows, start=2):
        name = row.file(number)
        on_disk = (names or {}).get(name, name)
        (folder / on_disk).parent.mkdir(parents=True, exist_ok=True)
        seed = zlib.crc32(f"{batch}/{name}".encode())
        (folder / on_disk).write_bytes(speech(seed, silent=name in silent))
    if metadata is None:
        metadata = "\n".join([HEADER, *(r.line(n) for n, r in enumerate(rows, start=2))]) + "\n"
    (folder / "metadata.csv").write_text(metadata, encoding="utf-8")
    (folder / "_READY").write_text("ok\n")
    return DataLayout.from_location(root)


def leaving_the_raw_zone(layout: DataLayout, instance: dg.DagsterInstance) -> str:
    """Every warehouse table, every lake part, every Dagster event (metadata, log lines)."""
    warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
    texts = [
        warehouse.query(f"SELECT * FROM {table}").write_csv()
        for table in ("raw_audio", "validated_metadata", "quarantine", "batch_checks")
    ]
    texts += [pl.read_parquet(p).write_csv() for p in Path(str(layout.lake)).rglob("*.parquet")]
    for run in instance.get_runs():
        texts += [str(e) for e in instance.all_logs(run.run_id)]
    return "\n".join(texts)


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict[str, object]:
    record = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert record is not None and record.asset_materialization is not None
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def step_failures(instance: dg.DagsterInstance, run_id: str) -> str:
    """The step failure messages of a run, as the UI shows them."""
    return "\n".join(
        str(e.dagster_event.step_failure_data.error)
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_step_failure
    )
