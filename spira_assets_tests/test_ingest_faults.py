"""Bad input is normal input: every fault below is planted in a batch and must end as one
specific quarantine record while the rest of the batch goes on (core stages, no Dagster)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from upath import UPath

from spira_assets.assets.raw_audio import first_occurrences
from spira_assets.audio.quality import AudioDecodeError, AudioQualityRules, measure
from spira_assets.ingest.metadata import validate_metadata
from spira_assets.ingest.raw_audio import BatchFile, ingest_raw_audio, inspect_file
from spira_assets.privacy import Pseudonymizer, Redactor, normalize_identifier
from spira_assets.storage.lake import Lake
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.tables import RAW_AUDIO

NOW = datetime(2026, 1, 5, tzinfo=UTC)
RULES = AudioQualityRules()


def wav(
    path: Path, f0: float = 220.0, subtype: str = "PCM_16", values: np.ndarray | None = None
) -> Path:
    t = np.arange(32_000) / 16_000
    audio = values if values is not None else (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, 16_000, subtype=subtype)
    return path


def ingest(folder: Path, pseudonymizer: Pseudonymizer, redactor: Redactor | None = None, **kw):  # type: ignore[no-untyped-def]
    return ingest_raw_audio(
        "b1",
        UPath(folder),
        RawStore(UPath(folder.parent / "raw")),
        RULES,
        pseudonymizer,
        redactor or Redactor(),
        NOW,
        workers=1,
        **kw,
    )


def rules_of(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(result.quarantine.select("item", "rule").rows())


def test_nan_or_infinite_float_audio_is_quarantined_not_stored_as_zeros(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    batch = tmp_path / "b1"
    wav(batch / "ok.wav")
    nan = np.full(32_000, np.nan, dtype=np.float32)
    wav(batch / "nan.wav", subtype="FLOAT", values=nan)
    spike = (0.3 * np.sin(np.arange(32_000) / 10)).astype(np.float32)
    spike[20_000] = np.inf
    wav(batch / "inf.wav", subtype="FLOAT", values=spike)
    result = ingest(batch, pseudonymizer)
    assert rules_of(result) == {"inf.wav": "non_finite", "nan.wav": "non_finite"}
    assert "first at 1.250 s" in result.quarantine.filter(pl.col("item") == "inf.wav")["detail"][0]
    assert result.accepted == 1
    stored = [p.name for p in (tmp_path / "raw").rglob("*.wav")]
    assert len(stored) == 1  # only ok.wav reached the raw store
    with pytest.raises(AudioDecodeError, match="non_finite"):
        measure((batch / "nan.wav").read_bytes(), RULES)


def test_dangling_links_special_files_and_odd_names_are_quarantined_one_by_one(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    batch = tmp_path / "b1"
    wav(batch / "ok.wav")
    (batch / "gone.wav").symlink_to(batch / "never-uploaded.wav")
    os.mkfifo(batch / "pipe.wav")  # reading it would block the batch forever
    (batch / "line\nbreak.wav").write_bytes(wav(tmp_path / "x.wav", 300.0).read_bytes())
    name = os.fsencode(batch) + b"/latin1-\xe9.wav"  # a name that is not UTF-8
    fd = os.open(name, os.O_WRONLY | os.O_CREAT)
    os.write(fd, wav(tmp_path / "y.wav", 350.0).read_bytes())
    os.close(fd)
    result = ingest(batch, pseudonymizer)
    found = rules_of(result)
    assert found == {
        "gone.wav": "dangling_link",
        "pipe.wav": "not_a_file",
        "line\\nbreak.wav": "unsafe_name",
        "latin1-\\xe9.wav": "undecodable_name",
    }
    assert result.accepted == 1 and result.files_in == 5
    RAW_AUDIO.conform(result.table).write_parquet(tmp_path / "part.parquet")  # storable


def test_a_file_that_vanishes_between_listing_and_reading_is_quarantined(tmp_path: Path) -> None:
    path = wav(tmp_path / "b1" / "soon-gone.wav")
    listed = BatchFile("soon-gone.wav", UPath(path))
    path.unlink()
    outcome = inspect_file(listed, RULES)
    assert [f.rule for f in outcome.findings] == ["vanished"]


UNREADABLE = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from upath import UPath
    from spira_assets.audio.quality import AudioQualityRules
    from spira_assets.ingest.raw_audio import ingest_raw_audio
    from spira_assets.privacy import Pseudonymizer, Redactor
    from spira_assets.storage.raw_store import RawStore
    folder, raw = sys.argv[1], sys.argv[2]
    result = ingest_raw_audio("b1", UPath(folder), RawStore(UPath(raw)), AudioQualityRules(),
        Pseudonymizer("k" * 32), Redactor(), datetime.now(UTC), workers=1)
    print(sorted(result.quarantine.select("item", "rule").rows()), result.accepted)
    """
)


def test_permission_errors_are_quarantined_per_file(tmp_path: Path) -> None:
    """Root reads anything, so the stage runs as an unprivileged user (util-linux setpriv)."""
    shared = Path("/tmp") / f"spira-perm-{os.getpid()}"
    shutil.rmtree(shared, ignore_errors=True)
    try:
        batch = shared / "b1"
        wav(batch / "ok.wav")
        wav(batch / "locked.wav", 300.0).chmod(0o000)
        (batch / "private").mkdir()
        wav(batch / "private" / "inside.wav", 400.0)
        (batch / "private").chmod(0o000)
        (shared / "raw").mkdir()
        for path in (shared, batch, shared / "raw"):
            path.chmod(0o777)
        (batch / "ok.wav").chmod(0o644)
        command = [sys.executable, "-c", UNREADABLE, str(batch), str(shared / "raw")]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = {**os.environ, "HOME": str(shared), "XDG_CONFIG_HOME": str(shared)}
        out = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "[('locked.wav', 'unreadable'), ('private', 'unreadable')] 1"
    finally:
        for path in (shared / "b1" / "private", shared / "b1" / "locked.wav"):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)


def test_the_same_audio_in_a_later_batch_is_quarantined_naming_the_first(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    first = tmp_path / "landing" / "b0"
    wav(first / "audio" / "a.wav")
    lake = Lake(UPath(tmp_path / "lake"))
    earlier = ingest_raw_audio(
        "b0", UPath(first), RawStore(UPath(tmp_path / "raw")), RULES, pseudonymizer,
        Redactor(), NOW, workers=1,
    )  # fmt: skip
    lake.write_part(RAW_AUDIO, "b0", earlier.table)
    later = tmp_path / "landing" / "b1"
    shutil.copytree(first / "audio", later / "renamed")
    wav(later / "new.wav", 500.0)
    result = ingest(later, pseudonymizer, elsewhere=first_occurrences(lake, "b1"))
    (detail,) = result.quarantine.filter(pl.col("rule") == "duplicate_content")["detail"]
    assert detail.startswith("same bytes as audio/a.wav in batch b0, accepted there first")
    assert result.accepted == 1
    assert first_occurrences(lake, "b0") == {}  # a batch is never a duplicate of itself


def test_one_person_is_one_pseudonym_whatever_the_spelling() -> None:
    p = Pseudonymizer("k" * 32)
    composed, decomposed = "Jo\u00e3o-17", unicodedata.normalize("NFD", "Jo\u00e3o-17")
    assert composed != decomposed
    spellings = [composed, decomposed, " JOÃO-17 ", "joão-17\t", "Jo\u00e3o-17\u00a0"]
    assert {p.participant(s) for s in spellings} == {p.participant("joão-17")}
    assert normalize_identifier("  A  b ") == "a b"
    assert p.participant("SP01") != p.participant("SP02")


def metadata_csv(*rows: str) -> bytes:
    header = "participant_id,label,sex,age,spo2,collected_at,device,utterance,audio_path\n"
    return (header + "".join(f"{r}\n" for r in rows)).encode()


def raw_table(tmp_path: Path, pseudonymizer: Pseudonymizer, names: list[str]) -> pl.DataFrame:
    for i, name in enumerate(names):
        wav(tmp_path / "b1" / name, 200.0 + 30 * i)
    return ingest(tmp_path / "b1", pseudonymizer).table


def test_two_spellings_of_one_id_are_one_participant_within_a_batch(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    raw = raw_table(tmp_path, pseudonymizer, ["a.wav", "b.wav", "c.wav"])
    result = validate_metadata(
        "b1",
        metadata_csv(
            "SP01,1,F,60,88,2024-05-03T10:00:00,web,frase,a.wav",
            " sp01 ,1,F,60,88,2024-05-03T10:00:00,web,frase,b.wav",
            "SP02,0,M,30,,2024-05-03T10:00:00,web,frase,c.wav",
        ),
        raw,
        pseudonymizer,
        Redactor(),
        NOW,
    )
    assert result.quarantine.filter(pl.col("rule") == "duplicate_recording").height == 1
    assert result.table.get_column("participant").n_unique() == 2


def test_quarantine_details_never_quote_free_text(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    raw = raw_table(tmp_path, pseudonymizer, ["a.wav", "b.wav", "c.wav"])
    result = validate_metadata(
        "b1",
        metadata_csv(
            "SP01,1,F,60,88,2024-05-03T10:00:00,Maria Silva 99999-1234,frase,a.wav",
            "SP02,1,feminina,60,88,2024-05-03T10:00:00,web,frase,b.wav",
            "SP03,0,M,Joao Souza,,ontem as 10h,web,frase,c.wav",
        ),
        raw,
        pseudonymizer,
        Redactor(),
        NOW,
    )
    details = "\n".join(result.quarantine.get_column("detail"))
    for text in ("Maria", "Silva", "99999", "feminina", "Joao", "ontem"):
        assert text not in details
    assert "device (a 22-character text (letters, digits, spaces, other characters))" in details
    assert "age is a 10-character text (letters, spaces), not a whole number" in details


def test_file_names_are_withheld_when_the_identifiers_cannot_be_known(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    from spira_assets.ingest.batch_source import BatchSource
    from spira_assets.storage.layout import DataLayout

    batch = tmp_path / "data" / "landing" / "b1"
    wav(batch / "SP0001_frase.wav")
    (batch / "SP0002_frase.txt").write_text("not audio")
    (batch / "_READY").write_text("")
    layout = DataLayout.from_location(tmp_path / "data")
    for metadata in (None, b"\xff\xfe not utf-8", b'participant_id\n"unterminated'):
        if metadata is None:
            (batch / "metadata.csv").unlink(missing_ok=True)
        else:
            (batch / "metadata.csv").write_bytes(metadata)
        redactor = BatchSource.open(layout, "b1").redactor(pseudonymizer)
        result = ingest(batch, pseudonymizer, redactor)
        shown = result.table.write_csv() + result.quarantine.write_csv()
        assert "SP000" not in shown
        assert "[name withheld " in shown and ".txt" in shown


def test_withheld_names_can_be_looked_up_inside_the_raw_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from spira_assets.cli import main
    from spira_assets.ingest.quarantine import Rejection, quarantine_frame
    from spira_assets.storage.tables import QUARANTINE
    from spira_assets_tests.conftest import TEST_KEY

    batch = tmp_path / "data" / "landing" / "b1"
    wav(batch / "SP0001_frase.wav")
    item = Redactor.withholding(Pseudonymizer(TEST_KEY)).path("SP0001_frase.wav")
    Lake(UPath(tmp_path / "data" / "lake")).write_part(
        QUARANTINE, "b1", quarantine_frame("b1", "raw_audio", [Rejection(item, "x", "y")], NOW),
        sub="raw_audio",
    )  # fmt: skip
    result = CliRunner().invoke(
        main, ["quarantine-paths", "--batch", "b1", "--data-dir", str(tmp_path / "data")]
    )
    tag = re.search(r"withheld ([0-9a-f]{10})", item)
    assert tag is not None and result.exit_code == 0
    assert result.output.split() == [tag.group(1), "SP0001_frase.wav"]
