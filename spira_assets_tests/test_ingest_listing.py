"""Ingest that cannot hang, lose a file or let one recording in twice: float samples beyond
full scale, link loops and bounded listings, names starting with '_' or '.', and the same
audio in other bytes (core stages, no Dagster; each fault planted)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from upath import UPath

from spira_assets.assets.raw_audio import first_occurrences
from spira_assets.audio.decode import decode_16k
from spira_assets.audio.quality import AudioDecodeError, AudioQualityRules
from spira_assets.ingest.listing import list_batch_files
from spira_assets.ingest.raw_audio import RawAudioResult, ingest_raw_audio
from spira_assets.ml.split import audio_in_two_places, unseen_by
from spira_assets.ml.split import test_set_leaks as leaks_of
from spira_assets.privacy import Pseudonymizer, Redactor
from spira_assets.storage.lake import Lake
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.tables import RAW_AUDIO

NOW = datetime(2026, 1, 5, tzinfo=UTC)


def tone(path: Path, f0: float = 220.0, subtype: str = "PCM_16", rate: int = 16_000) -> Path:
    t = np.arange(2 * rate) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    sf.write(path, wave, rate, subtype=subtype, format="WAV")
    return path


def ingest(
    folder: Path,
    pseudonymizer: Pseudonymizer,
    rules: AudioQualityRules | None = None,
    batch_id: str = "b1",
    **kw: object,
) -> tuple[RawAudioResult, dict[str, np.ndarray]]:
    """The stage as the asset runs it: with a sink for the 16 kHz PCM it keeps."""
    kept: dict[str, np.ndarray] = {}
    result = ingest_raw_audio(
        batch_id,
        UPath(folder),
        RawStore(UPath(folder.parent / "raw")),
        rules or AudioQualityRules(),
        pseudonymizer,
        Redactor(),
        NOW,
        workers=1,
        pcm_sink=kept.__setitem__,
        **kw,  # type: ignore[arg-type]
    )
    return result, kept


def rules_of(result: RawAudioResult) -> dict[str, str]:
    return dict(result.quarantine.select("item", "rule").rows())


def test_float_samples_beyond_full_scale_are_quarantined_never_stored_as_zeros(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    """+3e38 beside -3e38 in a float WAV overflowed the resampler into NaN, stored as 531
    zero samples with only a numpy warning (main of 2026-12-04)."""
    batch = tmp_path / "b1"
    tone(batch / "ok.wav")
    wild = (0.3 * np.sin(np.arange(48_000) / 7)).astype(np.float32)
    wild[10_000], wild[10_001] = 3e38, -3e38
    sf.write(batch / "wild.wav", wild, 48_000, subtype="FLOAT")
    result, kept = ingest(batch, pseudonymizer)
    assert rules_of(result) == {"wild.wav": "beyond_full_scale"}
    assert "first at 0.208 s" in result.quarantine["detail"][0]
    assert len(kept) == 1 and all(np.abs(pcm).max() > 0 for pcm in kept.values())
    # planted: the limit switched off; the resampler's own guard refuses what would be NaN
    data = (batch / "wild.wav").read_bytes()
    with pytest.raises(AudioDecodeError, match="non_finite: resampling"):
        decode_16k(data, AudioQualityRules(max_sample_magnitude=float("inf")))
    # lossy decoders overshoot full scale a little: that is still audio
    loud = np.clip(1.3 * np.sin(np.arange(32_000) / 5), -1.2, 1.2).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, loud, 16_000, subtype="FLOAT", format="WAV")
    stats, _ = decode_16k(buffer.getvalue(), AudioQualityRules())
    assert stats.peak_dbfs > 0


@pytest.mark.timeout(30)
def test_a_link_loop_is_listed_once_and_the_listing_is_bounded(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    """`ln -s . x` inside a batch made the listing run without end (main of 2026-12-04)."""
    batch = tmp_path / "b1"
    tone(batch / "a.wav")
    tone(batch / "sub" / "b.wav", 300.0)
    (batch / "x").symlink_to(".")  # the batch folder itself
    (batch / "sub" / "up").symlink_to("..")  # its parent: the batch folder again
    (batch / "twin").symlink_to("sub")  # a second path to the same files
    (batch / "self").symlink_to("self")  # a link to itself
    result, _ = ingest(batch, pseudonymizer)
    assert rules_of(result) == {
        "self": "dangling_link",
        "sub/up": "link_loop",
        "twin": "link_loop",
        "x": "link_loop",
    }
    assert result.accepted == 2
    deep = tmp_path / "deep"
    tone(deep / "1" / "2" / "3" / "c.wav")
    listing = list_batch_files(UPath(deep), max_depth=2)
    assert [(f.relative_path, f.fault and f.fault.rule) for f in listing.files] == [
        ("1/2/3", "listing_limit")
    ]
    many = tmp_path / "many"
    for i in range(5):
        tone(many / f"{i}.wav")
    listing = list_batch_files(UPath(many), max_entries=3)
    assert [f.fault and f.fault.rule for f in listing.files] == [None, None, None, "listing_limit"]


def test_every_file_ends_accepted_quarantined_or_counted(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    """Names starting with '_' or '.' were skipped with no row, no quarantine record and no
    orphan report (main of 2026-12-04): only the batch's own control files are skipped now,
    operating-system litter is counted, and everything else is judged."""
    batch = tmp_path / "b1"
    tone(batch / "ok.wav")
    for name in ("_READY", "_import.json", "_import_report.txt", "_demo_manifest.json"):
        (batch / name).write_text("control\n")
    tone(batch / "_take2.wav", 300.0)
    tone(batch / ".hidden.wav", 330.0)
    tone(batch / "sub" / "_READY", 360.0)  # a control name below the top is no control file
    (batch / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (batch / "sub" / "._ok.wav").write_bytes(b"\0\5\26\7AppleDouble")
    result, _ = ingest(batch, pseudonymizer)
    assert rules_of(result) == {
        ".hidden.wav": "reserved_name",
        "_take2.wav": "reserved_name",
        "sub/_READY": "reserved_name",
    }
    assert result.accepted == 1 and result.files_in == 4
    assert result.ignored == (".DS_Store", "sub/._ok.wav")


def test_the_same_audio_in_other_bytes_is_a_duplicate_within_and_across_batches(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    """The same WAV with two bytes appended, or re-encoded losslessly as FLAC, was accepted as
    new and could sit in two splits (main of 2026-12-04)."""
    first = tmp_path / "b1"
    original = tone(first / "a.wav")
    (first / "a_padded.wav").write_bytes(original.read_bytes() + b"\0\0")
    samples, rate = sf.read(original, dtype="int16")
    sf.write(first / "a.flac", samples, rate, format="FLAC")
    tone(first / "other.wav", 300.0)
    result, _ = ingest(first, pseudonymizer)
    # listed in byte order: a.flac comes first and stays
    assert rules_of(result) == {"a.wav": "duplicate_audio", "a_padded.wav": "duplicate_audio"}
    assert all("the same audio as a.flac in this batch" in d for d in result.quarantine["detail"])
    accepted = result.table.filter(pl.col("accepted"))
    assert accepted["pcm_sha256"].null_count() == 0 and accepted.height == 2

    lake = Lake(UPath(tmp_path / "lake"))
    lake.write_part(RAW_AUDIO, "b1", result.table)
    second = tmp_path / "b2"
    second.mkdir()
    sf.write(second / "again.flac", samples, rate, format="FLAC", subtype="PCM_24")
    later, _ = ingest(
        second,
        pseudonymizer,
        batch_id="b2",
        elsewhere=first_occurrences(lake, "b2"),
        elsewhere_pcm=first_occurrences(lake, "b2", by="pcm_sha256"),
    )
    assert rules_of(later) == {"again.flac": "duplicate_audio"}
    assert "a.flac in batch b1, accepted there first" in later.quarantine["detail"][0]


def _split(rows: list[tuple[str, str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema=["audio_sha256", "pcm_sha256", "participant", "split"], orient="row"
    )


def test_the_leak_checks_see_the_same_samples_under_other_bytes() -> None:
    """One recording stored twice in two encodings, under two ids and in two splits."""
    split = _split(
        [
            ("f1", "p1", "P-a", "train"),
            ("f2", "p1", "P-b", "test"),  # the same samples as f1, other bytes
            ("f3", "p3", "P-c", "test"),
        ]
    )
    assert audio_in_two_places(split) == ["decoded audio p1: 2 participant ids, 2 splits"]
    assert leaks_of(split) == ["test audio also trained on: f2"]
    unseen = unseen_by(split.filter(pl.col("split") == "test"), split)
    assert unseen["audio_sha256"].to_list() == ["f3"]
    # a split stored before the samples' hash was recorded is read as before
    old = split.drop("pcm_sha256")
    assert audio_in_two_places(old) == [] and leaks_of(old) == []
