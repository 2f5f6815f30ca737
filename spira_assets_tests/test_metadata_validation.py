"""validate_metadata on small hand-written batches: one behaviour per test."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from upath import UPath

from spira_assets.audio.quality import AudioQualityRules
from spira_assets.ingest.metadata import MetadataResult, normalize_audio_path, validate_metadata
from spira_assets.ingest.raw_audio import ingest_raw_audio
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.raw_store import RawStore

HEADER = (
    "participant_id,hospital_record,phone,label,sex,age,spo2,respiratory_rate,collected_at,"
    "device,utterance,audio_path"
)
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def speechlike(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(32_000) / 16_000
    audio = (
        0.3 * np.sin(2 * np.pi * rng.uniform(100, 250) * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    )
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def row(
    pid: str = "SP1",
    label: int = 0,
    spo2: str = "97",
    utt: str = "frase",
    path: str | None = None,
    sex: str = "F",
    age: str = "40",
    when: str = "2026-03-02T10:00:00-03:00",
    record: str = "",
    phone: str = "+55 11 90000-0000",
) -> str:
    path = path or f"a/{pid}_{utt}.wav"
    return f"{pid},{record},{phone},{label},{sex},{age},{spo2},16,{when},web,{utt},{path}"


def run(
    tmp_path: Path,
    lines: list[str],
    files: list[str] | None = None,
    header: str = HEADER,
    raw_bytes: bytes | None = None,
    **options: Any,
) -> MetadataResult:
    """``options``: validate_metadata's keyword options (aliases, earlier, rules)."""
    batch = tmp_path / "batch"
    batch.mkdir(exist_ok=True)
    text = "\n".join([header, *lines]) + "\n"
    data = raw_bytes if raw_bytes is not None else text.encode()
    if files is None:
        files = [ln.split(",")[-1] for ln in lines if ln.count(",") == header.count(",")]
    for i, name in enumerate(files):
        if name and not name.startswith("/") and ".." not in name:
            (batch / name).parent.mkdir(parents=True, exist_ok=True)
            (batch / name).write_bytes(speechlike(i))
    p = Pseudonymizer("k" * 32)
    redactor = Redactor.build(p, ["SP1", "SP2", "SP3"], ["+55 11 90000-0000"])
    raw = ingest_raw_audio(
        "b1",
        UPath(batch),
        RawStore(UPath(tmp_path / "raw")),
        AudioQualityRules(),
        p,
        redactor,
        NOW,
        workers=1,
    )
    return validate_metadata("b1", data, raw.table, p, redactor, NOW, **options)


def rules(result: MetadataResult) -> list[tuple[int | None, str | None, str]]:
    return sorted(
        result.quarantine.select("row_number", "column", "rule").iter_rows(),
        key=lambda r: (r[0] or 0, r[2]),
    )


def test_clean_rows_are_accepted_pseudonymized_and_stripped_of_identifiers(tmp_path: Path) -> None:
    result = run(tmp_path, [row("SP1", 0), row("SP2", 1, spo2="85", record="123X")])
    assert result.rows_in == 2 and result.rows_accepted == 2 and result.quarantine.is_empty()
    table = result.table
    assert set(table.columns).isdisjoint(
        {"participant_id", "hospital_record", "phone", "audio_path"}
    )
    assert table.get_column("participant").str.starts_with("P-").all()
    text = table.write_csv()
    for secret in ("SP1", "SP2", "123X", "90000"):
        assert secret not in text


def test_bom_crlf_and_stray_whitespace_are_tolerated(tmp_path: Path) -> None:
    lines = [row("SP1", 0).replace(",F,", ",  f ,").replace(",frase,", ",frase\t,")]
    data = ("\ufeff" + HEADER + "\r\n" + "\r\n".join(lines) + "\r\n").encode()
    result = run(tmp_path, lines, raw_bytes=data)
    assert result.rows_accepted == 1, rules(result)
    assert result.table.get_column("sex").to_list() == ["F"]


@pytest.mark.parametrize(
    ("changes", "column", "rule"),
    [
        ({"age": "150"}, "age", "out_of_range"),
        ({"age": "abc"}, "age", "invalid_type"),
        ({"age": ""}, "age", "missing_value"),
        ({"sex": "X"}, "sex", "not_allowed"),
        ({"utt": "cantiga"}, "utterance", "not_allowed"),
        ({"spo2": "30"}, "spo2", "out_of_range"),
        ({"when": "ontem"}, "collected_at", "invalid_timestamp"),
        ({"when": "2099-01-01T00:00:00"}, "collected_at", "timestamp_in_future"),
        ({"label": 1, "spo2": "95"}, "spo2", "patient_spo2_below_92"),
        ({"label": 1, "spo2": ""}, "spo2", "patient_spo2_below_92"),
        ({"label": 0, "spo2": "85"}, "spo2", "control_spo2_not_below_92"),
        ({"path": "/etc/passwd.wav"}, "audio_path", "unsafe_path"),
        ({"path": "../other/x.wav"}, "audio_path", "unsafe_path"),
    ],
)
def test_each_rule_rejects_only_its_row_with_a_specific_reason(
    tmp_path: Path, changes: dict[str, object], column: str, rule: str
) -> None:
    good = row("SP2", 0, utt="aceite")
    bad = row("SP1", **changes)  # type: ignore[arg-type]
    result = run(tmp_path, [good, bad])
    assert rules(result) == [(3, column, rule)]
    assert result.rows_accepted == 1 and result.rows_quarantined == 1
    detail = result.quarantine.get_column("detail")[0]
    assert "SP1" not in detail and "90000" not in detail


def test_duplicate_recording_keeps_the_first_row(tmp_path: Path) -> None:
    result = run(tmp_path, [row("SP1", utt="frase"), row("SP1", utt="frase", path="a/retake.wav")])
    assert rules(result) == [(3, "participant_id", "duplicate_recording")]


def test_participant_with_conflicting_labels_is_rejected_whole(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        [
            row("SP1", 0, utt="frase"),
            row("SP1", 1, spo2="80", utt="aceite"),
            row("SP2", 0, utt="frase"),
        ],
    )
    assert rules(result) == [
        (2, "label", "participant_attributes_conflict"),
        (3, "label", "participant_attributes_conflict"),
    ]
    assert result.rows_accepted == 1


def test_missing_audio_and_orphan_audio_are_both_reported(tmp_path: Path) -> None:
    result = run(tmp_path, [row("SP1", path="a/missing.wav")], files=["a/extra.wav"])
    assert rules(result) == [(None, None, "orphan_audio"), (2, "audio_path", "audio_missing")]
    orphan = result.quarantine.filter(pl.col("rule") == "orphan_audio")
    assert orphan.get_column("item").to_list() == ["a/extra.wav"]


def test_ragged_row_is_rejected_alone(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        [row("SP1"), row("SP2", utt="aceite") + ",extra"],
        files=["a/SP1_frase.wav", "a/SP2_aceite.wav"],
    )
    assert (3, None, "malformed_row") in rules(result)
    assert result.rows_accepted == 1 and result.rows_in == 2


def test_missing_required_column_rejects_every_row_with_the_reason(tmp_path: Path) -> None:
    header = HEADER.replace(",age", "")
    lines = [row("SP1").replace(",40,", ","), row("SP2", utt="aceite").replace(",40,", ",")]
    result = run(tmp_path, lines, header=header)
    assert {r for _, _, r in rules(result)} == {"missing_column"}
    assert result.rows_in == 2 and result.rows_quarantined == 2 and result.table.is_empty()
    assert "age" in result.quarantine.get_column("detail")[0]


def test_unreadable_metadata_is_one_file_level_record(tmp_path: Path) -> None:
    result = run(tmp_path, [row("SP1")], raw_bytes="participant_id\nJoão".encode("latin-1"))
    assert result.file_error == "not_utf8"
    assert rules(result)[0] == (None, None, "not_utf8")


def test_unknown_columns_are_reported_and_kept_out(tmp_path: Path) -> None:
    header = HEADER + ",notes"
    result = run(
        tmp_path,
        [row("SP1") + ",paciente Maria S. tossiu"],
        header=header,
        files=["a/SP1_frase.wav"],
    )
    assert result.unknown_columns == ("notes",)
    assert "notes" not in result.table.columns and "Maria" not in result.table.write_csv()


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("a/b.wav", "a/b.wav"),
        ("./a//b.wav", "a/b.wav"),
        ("a\\b.wav", "a/b.wav"),
        ("/abs.wav", None),
        ("C:\\x.wav", None),
        ("a/../../x.wav", None),
        ("s3://b/x.wav", None),
        ("", None),
    ],
)
def test_audio_paths_are_confined_to_the_batch(given: str, normalized: str | None) -> None:
    assert normalize_audio_path(given) == normalized
