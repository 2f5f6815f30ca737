"""Ingest that cannot hang, lose a file or let one recording in twice: float samples beyond
full scale, link loops and bounded listings, names starting with '_' or '.', and the same
audio in other bytes (core stages, no Dagster; each fault planted)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from upath import UPath

from spira_assets.app.runner import materialize_batch
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
from spira_assets.storage.tables import AUDIO_16K, DATASET_SPLIT, QUARANTINE, RAW_AUDIO
from spira_assets.storage.warehouse import Warehouse
from spira_assets_tests.small_batches import GOOD, INGEST, land, latest_metadata, speech

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
    # OS litter is skipped, not free: a folder of '._*' files is bounded too
    litter = tmp_path / "litter"
    tone(litter / "a.wav")
    for i in range(5):
        (litter / f"._{i}.wav").write_bytes(b"\0\5\26\7")
    listing = list_batch_files(UPath(litter), max_entries=3)
    assert [f.relative_path for f in listing.files] == ["._3.wav"]  # listed in byte order
    assert listing.files[0].fault is not None and listing.files[0].fault.rule == "listing_limit"
    assert listing.ignored == ("._0.wav", "._1.wav", "._2.wav")


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
    (second / "again.wav").write_bytes(original.read_bytes() + b"\x01\x02")
    later, _ = ingest(
        second,
        pseudonymizer,
        batch_id="b2",
        elsewhere=first_occurrences(lake, "b2"),
        elsewhere_pcm=first_occurrences(lake, "b2", by="pcm_sha256"),
    )
    assert rules_of(later) == {"again.flac": "duplicate_audio", "again.wav": "duplicate_audio"}
    assert all("a.flac in batch b1, accepted there first" in d for d in later.quarantine["detail"])
    assert later.accepted == 0


def test_parts_written_before_the_samples_hash_read_it_as_null(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    """Lake parts (and the table's schema file) written before ``pcm_sha256`` existed stay
    readable, in Python and in DuckDB; their audio is known by its bytes only."""
    for spec in (RAW_AUDIO, AUDIO_16K, DATASET_SPLIT):
        assert spec.conform(spec.empty().drop("pcm_sha256"))["pcm_sha256"].dtype == pl.String
    lake = Lake(UPath(tmp_path / "lake"))
    folder = lake.table_dir(RAW_AUDIO)
    folder.mkdir(parents=True)
    RAW_AUDIO.empty().drop("pcm_sha256").write_parquet(str(folder / "_schema.parquet"))
    tone(tmp_path / "landing" / "b0" / "a.wav")
    old, _ = ingest(tmp_path / "landing" / "b0", pseudonymizer, batch_id="b0")
    old.table.drop("pcm_sha256").write_parquet(str(lake.part_path(RAW_AUDIO, "b0")))
    assert lake.read_part(RAW_AUDIO, "b0")["pcm_sha256"].to_list() == [None]
    assert first_occurrences(lake, "b2", by="pcm_sha256") == {}
    assert [o.batch_id for o in first_occurrences(lake, "b2").values()] == ["b0"]

    tone(tmp_path / "landing" / "b1" / "b.wav", 300.0)
    new, _ = ingest(tmp_path / "landing" / "b1", pseudonymizer)
    lake.write_part(RAW_AUDIO, "b1", new.table)
    warehouse = Warehouse(UPath(tmp_path / "warehouse.duckdb"), lake)
    warehouse.ensure_views()
    rows = warehouse.query(
        "SELECT batch_id, pcm_sha256 IS NULL AS unknown FROM raw_audio ORDER BY batch_id"
    )
    assert rows.rows() == [("b0", True), ("b1", False)]


def test_the_raw_audio_asset_finds_a_re_encoded_recording_of_an_earlier_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assets as Dagster runs them: a later batch's FLAC of an earlier batch's WAV is
    quarantined naming the first, a reserved name is quarantined, OS litter is counted in the
    asset's metadata, and audio_16k stores the very hash raw_audio compared (the one the
    split's leak checks read)."""
    root = tmp_path / "data"
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    instance = dg.DagsterInstance.ephemeral()
    layout = land(root, "b1", GOOD)
    assert materialize_batch(instance, layout, "b1", (*INGEST, "audio_16k")).ok
    lake = Lake(layout.lake)
    raw = lake.read_part(RAW_AUDIO, "b1").filter(pl.col("accepted"))
    stored = lake.read_part(AUDIO_16K, "b1")
    assert raw["pcm_sha256"].null_count() == 0 and raw.height == len(GOOD)
    assert sorted(stored.select("audio_sha256", "pcm_sha256").rows()) == sorted(
        raw.select("audio_sha256", "pcm_sha256").rows()
    )

    land(root, "b2", [replace(r, pid=r.pid.replace("SP", "SQ")) for r in GOOD])
    folder = root / "landing" / "b2"
    samples, rate = sf.read(root / "landing" / "b1" / "audio" / "002.wav", dtype="int16")
    sf.write(folder / "audio" / "again.flac", samples, rate, format="FLAC")
    (folder / "audio" / "_take2.wav").write_bytes(speech(7))
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert materialize_batch(instance, layout, "b2", ("raw_audio",)).ok
    found = lake.read_part(QUARANTINE, "b2", sub="raw_audio")
    assert sorted(found["rule"]) == ["duplicate_audio", "reserved_name"]
    (detail,) = found.filter(pl.col("rule") == "duplicate_audio")["detail"]
    assert "the same audio as audio/002.wav in batch b1, accepted there first" in detail
    metadata = latest_metadata(instance, "raw_audio")
    assert metadata["quarantined_by_rule"] == {"duplicate_audio": 1, "reserved_name": 1}
    assert metadata["os_files_ignored"] == 1 and metadata["files_in"] == len(GOOD) + 2


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


def test_the_listing_limits_are_settings_of_the_ingest_policy() -> None:
    from spira_assets.ingest.listing import ListingLimits
    from spira_assets.resources import IngestPolicy

    assert IngestPolicy().listing_limits() == ListingLimits()
    assert IngestPolicy(max_listing_depth=3, max_listing_entries=9).listing_limits() == (
        ListingLimits(3, 9)
    )
