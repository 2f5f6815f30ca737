"""`spira import-spira`: speakers grouped or refused, paths confined to the source, every
rejection recorded; and the leak it prevents, measured."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from spira_assets.cli import main
from spira_assets.demo.voice import Speaker, breathing_for, synthesize
from spira_assets.environment import config_home
from spira_assets.features.config import FeatureConfig
from spira_assets.ingest.provenance import PER_FILE, PROVENANCE_FILE, BatchProvenance
from spira_assets.ml.metrics import auroc
from spira_assets.ml.split import SplitConfig, assign_splits
from spira_assets.privacy import Pseudonymizer, local_key_file
from spira_assets.storage.layout import DataLayout
from spira_assets_tests.conftest import TEST_KEY, run_core_stages


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def write_wav(path: Path, seconds: float = 2.0, f0: float | None = None) -> None:
    """A tone with a little noise seeded by the file name: no two files share their bytes."""
    seed = int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)
    f0 = f0 or 100.0 + seed % 200
    t = np.arange(int(16_000 * seconds)) / 16_000
    hiss = np.random.default_rng(seed).normal(0, 0.01, t.shape[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * f0 * t) + hiss).astype(np.float32), 16_000)


def spira_source(root: Path) -> Path:
    """A small source in SPIRA's v3 layout: controls named <id>_<utterance>.wav."""
    for name in ("c01_frase.wav", "c01_aceite.wav", "c02_frase.wav", "c02_parlenda.wav"):
        write_wav(root / "audios" / name)
    for name in ("p01_frase.wav", "p01_aceite.wav", "p02_parlenda.wav", "n1.wav"):
        write_wav(root / "audios" / name)
    (root / "patients.csv").write_text(
        "file_path,class,sexo,idade\naudios/p01_frase.wav,1,F,60\naudios/p01_aceite.wav,1,F,60\n"
        "audios/p02_parlenda.wav,1,,70\n"
    )
    (root / "controls.csv").write_text(
        "file_path,class,sexo,idade,nivel_falta_de_ar\naudios/c01_frase.wav,0,M,30,0\n"
        "audios/c01_aceite.wav,0,M,30,0\naudios/c02_frase.wav,0,Feminino,41,1\n"
        "audios/c02_parlenda.wav,0,F,41,1\naudios/missing.wav,0,M,20,0\n"
    )
    (root / "noises.csv").write_text("file_path\naudios/n1.wav\n")
    return root


def test_without_speaker_grouping_the_import_refuses_and_proposes_a_pattern(
    tmp_path: Path,
) -> None:
    src = spira_source(tmp_path / "spira")
    landing = tmp_path / "landing"
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "b1", "--landing", str(landing),
        "--patient-spo2", "89",
    )  # fmt: skip
    assert code == 1
    assert "cannot tell which recordings belong to the same person" in output
    assert "--participant-pattern '([^/]+)_[^/_]*$'" in output
    assert "4 participants; files per participant: min 1, median 2, max 2" in output
    assert "'p01_frase.wav' -> 'p01'" in output
    assert not (landing / "b1").exists()  # nothing written before the refusal


def test_a_pattern_groups_speakers_and_unconvertible_rows_are_reported(tmp_path: Path) -> None:
    src = spira_source(tmp_path / "spira")
    landing = tmp_path / "landing"
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "spira-2021", "--landing", str(landing),
        "--patient-spo2", "89", "--participant-pattern", r"([^/_]+)_[^/]*$",
    )  # fmt: skip
    assert code == 0, output
    assert "6 recordings grouped by import-pattern, 1 noise files, 2 rows not converted" in output
    assert "patients.csv:4: import_missing_field: cannot derive sex (sexo)" in output
    assert "controls.csv:6: import_audio_missing" in output
    with (landing / "spira-2021" / "metadata.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["participant_id"], r["label"], r["utterance"]) for r in rows] == [
        ("p01", "1", "frase"),
        ("p01", "1", "aceite"),
        ("c01", "0", "frase"),
        ("c01", "0", "aceite"),
        ("c02", "0", "frase"),
        ("c02", "0", "parlenda"),
    ]
    record = BatchProvenance.from_json((landing / "spira-2021" / PROVENANCE_FILE).read_text())
    assert record.grouping == "import-pattern" and record.per_file_paths == ()
    assert [(r.item, r.rule) for r in record.rejections] == [
        ("patients.csv:4", "import_missing_field"),
        ("controls.csv:6", "import_audio_missing"),
    ]
    assert all("audios/" not in r.detail for r in record.rejections)  # no path leaves the zone
    assert len(list((landing / "noise").iterdir())) == 1


def test_one_participant_per_file_is_explicit_recorded_and_carried_to_the_split(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    src = spira_source(tmp_path / "spira")
    landing = tmp_path / "data" / "landing"
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "b1", "--landing", str(landing),
        "--patient-spo2", "89", "--one-participant-per-file",
    )  # fmt: skip
    assert code == 0, output
    assert "warning: 6 recordings are grouped one-participant-per-file" in output
    record = BatchProvenance.from_json((landing / "b1" / PROVENANCE_FILE).read_text())
    assert record.grouping == PER_FILE and len(record.per_file_paths) == 6
    _, meta = run_core_stages(DataLayout.from_location(tmp_path / "data"), "b1", pseudonymizer)
    assert meta.table.get_column("speaker_grouping").unique().to_list() == [PER_FILE]
    assert meta.table.get_column("participant").n_unique() == 6


def test_a_participant_map_or_column_says_who_spoke(tmp_path: Path) -> None:
    src = spira_source(tmp_path / "spira")
    mapping = tmp_path / "who.csv"
    mapping.write_text(
        "file_path,participant_id\n"
        + "".join(f"audios/{n}.wav,{n[:3].upper()}\n" for n in ("c01_frase", "c01_aceite"))
    )
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "m1", "--landing", str(tmp_path / "landing"),
        "--patient-spo2", "89", "--participant-map", str(mapping),
        "--one-participant-per-file",
    )  # fmt: skip
    assert code == 0, output
    record = BatchProvenance.from_json((tmp_path / "landing" / "m1" / PROVENANCE_FILE).read_text())
    assert record.grouping == "import-map" and len(record.per_file_paths) == 4
    with (tmp_path / "landing" / "m1" / "metadata.csv").open() as handle:
        ids = [r["participant_id"] for r in csv.DictReader(handle)]
    assert ids.count("C01") == 2

    column = tmp_path / "column"
    for name in ("a.wav", "b.wav"):
        write_wav(column / name)
    (column / "controls.csv").write_text(
        "file_path,speaker,sexo,idade\na.wav,S9,M,30\nb.wav,S9,M,30\n"
    )
    code, output = invoke(
        "import-spira", str(column), "--batch-id", "k1", "--landing", str(tmp_path / "landing"),
        "--utterance", "frase",
    )  # fmt: skip
    assert code == 0 and "2 recordings grouped by import-column" in output


def test_nothing_outside_the_source_is_read_or_copied(tmp_path: Path) -> None:
    src = tmp_path / "spira"
    write_wav(src / "c01_frase.wav")
    outside = tmp_path / "elsewhere" / "secret_frase.wav"
    write_wav(outside, f0=333.0)
    (src / "link_frase.wav").symlink_to(outside)
    key = local_key_file(config_home())
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(TEST_KEY + "\n")
    (src / "controls.csv").write_text(
        "file_path,sexo,idade\n"
        "c01_frase.wav,M,30\n"
        f"{key},M,30\n"  # an absolute path: the pseudonym key
        "/etc/hostname,M,30\n"
        "../elsewhere/secret_frase.wav,M,30\n"  # leaves the folder
        "link_frase.wav,M,30\n"  # a link leading out of the folder
    )
    (src / "patients.csv").symlink_to(tmp_path / "elsewhere" / "patients.csv")
    (tmp_path / "elsewhere" / "patients.csv").write_text("file_path\nc01_frase.wav\n")
    landing = tmp_path / "landing"
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "b1", "--landing", str(landing),
        "--one-participant-per-file",
    )  # fmt: skip
    assert code == 0, output
    assert "1 recordings" in output and "5 rows not converted" in output
    record = BatchProvenance.from_json((landing / "b1" / PROVENANCE_FILE).read_text())
    assert [(r.item, r.rule) for r in record.rejections] == [
        ("patients.csv", "import_path_outside_source"),
        ("controls.csv:3", "import_path_outside_source"),
        ("controls.csv:4", "import_path_outside_source"),
        ("controls.csv:5", "import_path_outside_source"),
        ("controls.csv:6", "import_path_outside_source"),
    ]
    copied = {p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    for forbidden in (key, Path("/etc/hostname"), outside):
        assert forbidden.read_bytes() not in copied


@pytest.mark.slow
def test_import_rejections_reach_the_quarantine_table(tmp_path: Path) -> None:
    src = spira_source(tmp_path / "spira")
    data = tmp_path / "data"
    code, _ = invoke(
        "import-spira", str(src), "--batch-id", "b1", "--data-dir", str(data),
        "--patient-spo2", "89", "--participant-pattern", r"([^/_]+)_[^/]*$",
    )  # fmt: skip
    assert code == 0
    code, output = invoke(
        "materialize", "--batch", "b1", "--select", "raw_audio", "--data-dir", str(data)
    )
    assert code == 0, output
    code, output = invoke(
        "sql",
        "SELECT item, rule, detail FROM quarantine WHERE stage = 'import' ORDER BY item",
        "--data-dir",
        str(data),
    )
    assert "controls.csv:6" in output and "import_audio_missing" in output
    assert "patients.csv:4" in output and "import_missing_field" in output
    assert "missing.wav" not in output


def _kind_id_k(root: Path, speakers: int = 20, recordings: int = 4) -> None:
    """``<kind>_<id>_<k>.wav``, several recordings per speaker, no participant column."""
    rows: dict[str, list[str]] = {"patients.csv": [], "controls.csv": []}
    for s in range(speakers):
        kind = "patient" if s % 2 else "control"
        for k in range(recordings):
            name = f"{kind}_{s:04d}_{k}.wav"
            write_wav(root / name, seconds=0.6)
            rows["patients.csv" if s % 2 else "controls.csv"].append(f"{name},F,{30 + s}")
    for name, listed in rows.items():
        (root / name).write_text("file_path,sexo,idade\n" + "\n".join(listed) + "\n")


def test_the_proposal_is_the_id_like_prefix_and_groupings_that_merge_or_split_are_refused(
    tmp_path: Path,
) -> None:
    src = tmp_path / "corpus"
    _kind_id_k(src)
    landing = tmp_path / "landing"
    common = ["--batch-id", "b1", "--landing", str(landing), "--patient-spo2", "89",
              "--utterance", "frase"]  # fmt: skip
    code, output = invoke("import-spira", str(src), *common)
    assert code == 1
    assert "pass --participant-pattern '([^/]+)_[^/_]*$'" in output
    assert "20 participants; files per participant: min 4, median 4, max 4" in output
    assert "'patient_0001_0.wav' -> 'patient_0001'" in output
    # planted fault: the proposal of the main of 2026-12-04, which cut at the first
    # underscore: every patient one participant, every control another
    code, output = invoke(
        "import-spira", str(src), *common, "--participant-pattern", r"([^/_]+)_[^/]*$"
    )
    assert code == 1, output
    assert "puts 40 of 80 files into one participant (at most 8 allowed" in output
    assert "2 participants" in output and "merges different people" in output
    # planted fault: a pattern that keeps the recording number (one file per participant)
    # where the names look grouped; --one-participant-per-file does not make it acceptable
    code, output = invoke(
        "import-spira", str(src), *common, "--participant-pattern", r"([^/]+)\.wav$",
        "--one-participant-per-file",
    )  # fmt: skip
    assert code == 1, output
    assert "gives every file its own participant" in output and "look grouped" in output
    assert "80 participants; files per participant: min 1, median 1, max 1" in output
    mapping = tmp_path / "map.csv"
    mapping.write_text(
        "file_path,participant_id\n"
        + "".join(f"{p.name},{'P' if 'patient' in p.name else 'C'}\n" for p in src.glob("*.wav"))
    )
    code, output = invoke("import-spira", str(src), *common, "--participant-map", str(mapping))
    assert code == 1 and "--participant-map puts 40 of 80 files into one participant" in output
    # the share is a setting: a corpus of two people is possible, on purpose
    code, output = invoke(
        "import-spira", str(src), *common, "--participant-map", str(mapping),
        "--max-participant-share", "0.5",
    )  # fmt: skip
    assert code == 0, output
    assert not list(landing.glob(".*"))  # no staging folder left behind


def test_a_pattern_that_gives_every_file_its_own_participant_is_recorded_as_such(
    tmp_path: Path,
) -> None:
    """Names that share no id (SPIRA-ACL2021's controls, <uuid>_1.wav): a pattern that matches
    every file once groups nothing. On the main of 2026-12-04 it bypassed
    --one-participant-per-file and was recorded as grouped (speaker-safe)."""
    src = tmp_path / "acl"
    for i in range(6):
        write_wav(src / f"{i}a{i}f-uuid_1.wav", seconds=0.6)
    (src / "controls.csv").write_text(
        "file_path,sexo,idade\n" + "".join(f"{i}a{i}f-uuid_1.wav,M,40\n" for i in range(6))
    )
    landing = tmp_path / "landing"
    common = ["--landing", str(landing), "--utterance", "frase",
              "--participant-pattern", r"([^/_]+)_[^/]*$"]  # fmt: skip
    code, output = invoke("import-spira", str(src), "--batch-id", "a", *common)
    assert code == 1 and "that is no grouping" in output, output
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "b", *common, "--one-participant-per-file"
    )
    assert code == 0, output
    record = BatchProvenance.from_json((landing / "b" / PROVENANCE_FILE).read_text())
    assert record.grouping == PER_FILE and len(record.per_file_paths) == 6
    assert "warning: 6 recordings are grouped one-participant-per-file" in output


def test_a_row_that_cannot_be_read_is_refused_and_a_batch_appears_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One list row with a NUL byte, one naming a 300-byte file name and one file that
    cannot be read: each is a rejection, the rest is imported. On the main of 2026-12-04 each
    aborted the import and left a half-written landing batch that blocked a re-run."""
    src = tmp_path / "src"
    for name in ("c01_frase.wav", "c01_aceite.wav", "c02_frase.wav", "c02_aceite.wav"):
        write_wav(src / name, seconds=0.6)
    (src / "controls.csv").write_bytes(
        b"file_path,sexo,idade\n"
        b"c01_frase.wav,M,30\n"
        b"c01_aceite.wav,M,30\n"
        b"c02_\x00frase.wav,F,41\n"  # a NUL byte
        + ("x" * 300 + "_frase.wav,F,41\n").encode()  # a name longer than a file system allows
        + b"c02_aceite.wav,F,41\n"
        b"c02_frase.wav,F,41\n"
    )
    import shutil as shutil_module

    copy = shutil_module.copyfile

    def unreadable(source: object, target: object, *args: object, **kwargs: object) -> object:
        if Path(str(source)).name == "c02_frase.wav":  # planted: the OS refuses to read it
            raise PermissionError(13, "Permission denied")
        return copy(source, target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil_module, "copyfile", unreadable)
    landing = tmp_path / "landing"
    common = ["--landing", str(landing), "--participant-pattern", r"([^/]+)_[^/_]*$"]
    code, output = invoke("import-spira", str(src), "--batch-id", "b1", *common)
    assert code == 0, output
    record = BatchProvenance.from_json((landing / "b1" / PROVENANCE_FILE).read_text())
    assert [(r.item, r.rule) for r in record.rejections] == [
        ("controls.csv:4", "import_malformed_row"),
        ("controls.csv:5", "import_audio_unreadable"),
        ("controls.csv:7", "import_audio_unreadable"),
    ]
    assert "3 recordings grouped by import-pattern" in output

    def dies(source: object, target: object, *args: object, **kwargs: object) -> object:
        if Path(str(source)).name == "c02_aceite.wav":  # planted: the import stops half-way
            raise RuntimeError("the process was stopped")
        return copy(source, target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil_module, "copyfile", dies)
    with pytest.raises(RuntimeError, match="stopped"):
        invoke("import-spira", str(src), "--batch-id", "b2", *common)
    assert not (landing / "b2").exists() and not list(landing.glob(".*"))
    monkeypatch.setattr(shutil_module, "copyfile", copy)
    code, output = invoke("import-spira", str(src), "--batch-id", "b2", *common)
    assert code == 0 and "4 recordings" in output, output  # the same id, once whole


def test_an_imported_batch_without_its_import_record_is_not_speaker_safe(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    src = spira_source(tmp_path / "spira")
    landing = tmp_path / "data" / "landing"
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "b1", "--landing", str(landing),
        "--patient-spo2", "89", "--participant-pattern", r"([^/]+)_[^/_]*$",
    )  # fmt: skip
    assert code == 0, output
    (landing / "b1" / PROVENANCE_FILE).unlink()  # planted: the record is lost
    _raw, meta = run_core_stages(DataLayout.from_location(tmp_path / "data"), "b1", pseudonymizer)
    assert meta.table.get_column("speaker_grouping").unique().to_list() == [PER_FILE]
    from spira_assets.ingest.batch_source import BatchSource

    source = BatchSource.open(DataLayout.from_location(tmp_path / "data"), "b1")
    assert source.provenance_rule == "import_record_missing"
    assert "is missing" in str(source.provenance_error)


def test_takes_of_an_assumed_utterance_are_kept_and_a_known_one_is_still_unique(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    """Three recordings of one speaker whose list names no utterance (--utterance frase): three
    takes, not two duplicates of the first (on the main of 2026-12-04 two were quarantined as
    duplicate_recording). Where the utterance is known, one per participant still holds."""
    import pandera.errors

    from spira_assets.ingest.schemas import ValidatedMetadataTable

    src = tmp_path / "src"
    for k in range(3):
        write_wav(src / f"s01_{k}.wav", seconds=0.6)
        write_wav(src / f"s02_{k}.wav", seconds=0.6)
    (src / "controls.csv").write_text(
        "file_path,sexo,idade\n"
        + "".join(f"s0{p}_{k}.wav,M,40\n" for p in (1, 2) for k in range(3))
    )
    landing = tmp_path / "data" / "landing"
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "b1", "--landing", str(landing),
        "--utterance", "frase", "--participant-pattern", r"([^/]+)_[^/_]*$",
    )  # fmt: skip
    assert code == 0, output
    _, meta = run_core_stages(DataLayout.from_location(tmp_path / "data"), "b1", pseudonymizer)
    assert meta.table.height == 6 and meta.quarantine.is_empty()
    assert meta.table.get_column("utterance_assumed").all()
    ValidatedMetadataTable.validate(meta.table)
    known = meta.table.with_columns(pl.lit(False).alias("utterance_assumed"))  # planted
    with pytest.raises(pandera.errors.SchemaError, match="one_recording_per_participant"):
        ValidatedMetadataTable.validate(known)


# -- the leak the refusal prevents ----------------------------------------------------------


def _speaker_corpus(root: Path, speakers: int, seed: int) -> None:
    """SPIRA's layout with several recordings per speaker, named <id>_<utterance>.wav, and no
    class signal at all: the label is a coin flip per speaker, breathing is drawn the same way
    in both classes. Voices differ as much as real ones (pitch 85-300 Hz, vocal tract length
    +-20 %), so a voice is recognizable across utterances, as it is in real speech."""
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"patients.csv": [], "controls.csv": []}
    pitches = rng.permutation(np.linspace(85.0, 300.0, speakers))
    for s in range(speakers):
        label = int(rng.integers(0, 2))
        voice = Speaker(
            f0_hz=float(pitches[s]),
            formant_scale=float(rng.uniform(0.85, 1.25)),
            syllables_per_s=float(rng.uniform(3.5, 5.5)),
            jitter=0.005,
            shimmer=0.04,
        )
        breathing = breathing_for(label, 0.0, rng)
        for utterance in ("aceite", "frase", "parlenda", "sustentada"):
            name = f"s{s:03d}_{utterance}.wav"
            sf.write(root / name, synthesize(utterance, voice, breathing, rng), 16_000)
            lists["patients.csv" if label else "controls.csv"].append(f"{name},F,50")
    for name, rows in lists.items():
        (root / name).write_text("file_path,sexo,idade\n" + "\n".join(rows) + "\n")


def _held_out_auroc_of_a_voice_matcher(
    data: Path, batch: str, pseudonymizer: Pseudonymizer
) -> float:
    """A 1-nearest-neighbour 'model' on per-recording MFCC means: it can only score above
    chance on test recordings whose speaker it met in training."""
    _, meta = run_core_stages(DataLayout.from_location(data), batch, pseudonymizer)
    split = assign_splits(
        meta.table.with_columns(pl.lit(batch).alias("batch_id")),
        SplitConfig(validation=0.0, test=0.4),
    )
    transform = FeatureConfig().build_transform()
    vectors = {}
    for sha, uri in meta.table.select("audio_sha256", "raw_uri").iter_rows():
        wave, _ = sf.read(data / uri, dtype="float32")
        mfcc = transform(torch.from_numpy(wave)).numpy()
        voiced = mfcc[0] > np.percentile(mfcc[0], 50)  # the louder half: the voice, not pauses
        vectors[sha] = mfcc[1:, voiced].mean(axis=1)
    rows = split.select("audio_sha256", "label", "split").rows()
    features = np.stack([vectors[sha] for sha, _, _ in rows])
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-9)
    train = [i for i, (_, _, s) in enumerate(rows) if s == "train"]
    test = [i for i, (_, _, s) in enumerate(rows) if s == "test"]
    scores, labels = [], []
    for i in test:
        distances = np.linalg.norm(features[train] - features[i], axis=1)
        scores.append(float(rows[train[int(np.argmin(distances))]][1]))
        labels.append(rows[i][1])
    return auroc(np.asarray(labels), np.asarray(scores))


@pytest.mark.slow
def test_a_speaker_leak_can_no_longer_beat_chance_on_spiras_layout(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    src = tmp_path / "spira"
    src.mkdir()
    _speaker_corpus(src, speakers=40, seed=3)
    data = tmp_path / "data"
    landing = data / "landing"
    common = ["--landing", str(landing), "--patient-spo2", "89", "--collected-at", "2024-05-03"]
    # a newcomer's first attempt: refused, with the grouping proposed
    code, output = invoke("import-spira", str(src), "--batch-id", "naive", *common)
    assert code == 1 and "--participant-pattern" in output
    # forcing one participant per file: the voice leaks across splits and a voice matcher
    # scores far above chance with no class signal in the audio
    code, _ = invoke(
        "import-spira", str(src), "--batch-id", "perfile", *common, "--one-participant-per-file"
    )
    assert code == 0
    leaked = _held_out_auroc_of_a_voice_matcher(data, "perfile", pseudonymizer)
    # grouped as proposed: every speaker in one split, the matcher is back at chance
    code, _ = invoke(
        "import-spira", str(src), "--batch-id", "grouped", *common,
        "--participant-pattern", r"([^/_]+)_[^/]*$",
    )  # fmt: skip
    assert code == 0
    grouped = _held_out_auroc_of_a_voice_matcher(data, "grouped", pseudonymizer)
    assert leaked > 0.85, (leaked, grouped)  # 0.908 measured
    assert 0.3 < grouped < 0.7, (leaked, grouped)  # 0.588 measured
    stamp = json.loads((landing / "perfile" / PROVENANCE_FILE).read_text())
    assert stamp["grouping"] == PER_FILE
    assert datetime(2024, 5, 3, tzinfo=UTC).isoformat(timespec="seconds")[:10] in (
        (landing / "grouped" / "metadata.csv").read_text()
    )
    assert (landing / "grouped" / "_import_report.txt").exists()


# -- SPIRA-ACL2021's own files, read as published ---------------------------------------------

ACL_HEADER = "file_path,class,sexo,idade,nivel_falta_de_ar\n"


def acl2021_source(root: Path) -> dict[str, list[str]]:
    """Three metadata files with the published header and a headerless noise_data.csv:
    patients are WhatsApp notes with no speaker id, controls <uuid>_<k>.wav."""
    lists: dict[str, list[str]] = {}
    for name, count in (
        ("metadata_train.csv", 4),
        ("metadata_eval.csv", 2),
        ("metadata_test.csv", 2),
    ):
        rows = []
        for i in range(count):
            patient = f"pacientes/PTT-2020051{i}-WA00{len(lists)}{i}.wav"
            control = f"controle/{len(lists)}{i}aa-uuid_1.wav"
            write_wav(root / patient, seconds=6.0)
            write_wav(root / control, seconds=6.0)
            rows += [f"{patient},1,M,55,5", f"{control},0,F,43,0"]
        (root / name).write_text(ACL_HEADER + "\n".join(rows) + "\n")
        lists[name] = [r.split(",")[0] for r in rows]
    write_wav(root / "ruidos" / "n1.wav", seconds=20.0)
    write_wav(root / "ruidos" / "n2.wav", seconds=20.0, f0=90.0)
    (root / "noise_data.csv").write_text("ruidos/n1.wav\nruidos/n2.wav\n")
    return lists


def test_acl2021_lists_need_their_utterance_and_spo2_named_once(tmp_path: Path) -> None:
    src = tmp_path / "SPIRA_Dataset_V2"
    acl2021_source(src)
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "acl", "--landing", str(tmp_path / "landing"),
        "--one-participant-per-file",
    )  # fmt: skip
    assert code == 1 and output.count("spira: error:") == 1
    assert "pass --utterance U" in output and "pass --patient-spo2 N" in output
    assert not (tmp_path / "landing" / "acl").exists()


@pytest.mark.slow
def test_acl2021_imports_as_published_and_keeps_its_test_set(tmp_path: Path) -> None:
    src = tmp_path / "SPIRA_Dataset_V2"
    lists = acl2021_source(src)
    data = tmp_path / "data"
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "acl", "--data-dir", str(data),
        "--utterance", "frase", "--patient-spo2", "91", "--keep-published-split",
        "--participant-pattern", r"([^/_]+)_[^/]*$", "--one-participant-per-file",
    )  # fmt: skip
    assert code == 0, output
    assert "16 recordings" in output and "2 noise files" in output
    assert "kept the published split of 16 recordings" in output
    assert len(list((data / "landing" / "noise").iterdir())) == 2  # every listed noise file
    code, output = invoke("materialize", "--batch", "acl", "--data-dir", str(data))
    assert code == 0, output
    code, output = invoke(
        "materialize", "--batch", "acl", "--select", "dataset_split", "--data-dir", str(data)
    )
    assert code == 0, output
    from upath import UPath

    from spira_assets.storage.lake import Lake
    from spira_assets.storage.tables import DATASET_SPLIT, VALIDATED_METADATA

    lake = Lake(UPath(data / "lake"))
    split = lake.read_part(DATASET_SPLIT, "all")
    metadata = lake.read_part(VALIDATED_METADATA, "acl")
    landing = (data / "landing" / "acl" / "metadata.csv").read_text().splitlines()[1:]
    test_rows = {
        i + 2 for i, line in enumerate(landing) if line.split(",")[-1].startswith("audio/")
    }
    by_row = dict(metadata.select("audio_sha256", "row_number").rows())
    in_test = sorted(by_row[s] for s in split.filter(pl.col("split") == "test")["audio_sha256"])
    # the importer writes train, eval, test rows in list order: test = the last 4 rows
    assert in_test == sorted(test_rows)[-len(lists["metadata_test.csv"]) :]
    assert set(split.get_column("assigned_by")) == {"published"}
    assert split.group_by("split").len().sort("split").rows() == [
        ("test", 4),
        ("train", 8),
        ("validation", 4),
    ]
