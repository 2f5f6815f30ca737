"""The `spira` command line, run in-process with click's runner."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from spira_assets.cli import main


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_every_command_documents_its_options() -> None:
    for command in ("demo", "demo-data", "import-spira", "materialize", "sql"):
        code, output = invoke(command, "--help")
        assert code == 0 and "--" in output


def test_demo_data_writes_a_landing_zone_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "landing"
    code, output = invoke(
        "demo-data",
        "--out",
        str(out),
        "--batches",
        "1",
        "--participants",
        "2",
        "--seed",
        "1",
        "--effect-size",
        "0.5",
        "--defect-rate",
        "0",
    )
    assert code == 0, output
    assert (out / "demo-001" / "_READY").exists() and (out / "noise").is_dir()
    code, output = invoke("demo-data", "--out", str(out), "--batches", "1")
    assert code == 1 and "already contains batches" in output


def test_materialize_refuses_bad_and_unknown_batches_with_one_line(tmp_path: Path) -> None:
    code, output = invoke("materialize", "--batch", "../etc", "--data-dir", str(tmp_path))
    assert code == 1 and output.count("\n") == 1 and "refused" in output
    code, output = invoke("materialize", "--batch", "nope", "--data-dir", str(tmp_path))
    assert code == 1 and "no folder" in output


def test_demo_runs_the_graph_and_reports_exact_accounting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    code, output = invoke(
        "demo",
        "--data-dir",
        str(tmp_path / "data"),
        "--batches",
        "1",
        "--participants",
        "8",
        "--defect-rate",
        "0.1",
    )
    assert code == 0, output
    line = next(ln for ln in output.splitlines() if ln.startswith("demo-001") and "run" not in ln)
    files, files_ok, rows, rows_ok, rows_q = (int(v) for v in line.split()[1:6])
    assert rows == rows_ok + rows_q and files >= files_ok
    assert line.split()[-1] == "3/3"
    code, output = invoke(
        "sql", "SELECT count(*) AS n FROM validated_metadata", "--data-dir", str(tmp_path / "data")
    )
    assert code == 0 and str(rows_ok) in output
    code, output = invoke(
        "materialize",
        "--batch",
        "demo-001",
        "--select",
        "raw_audio",
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert code == 0 and "demo-001: run" in output


def write_wav(path: Path, seconds: float = 2.0) -> None:
    t = np.arange(int(16_000 * seconds)) / 16_000
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16_000)


def test_import_spira_converts_rows_and_reports_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "spira"
    for name in ("p1_frase.wav", "p2_parlenda.wav", "c1_aceite.wav", "c2_frase.wav", "n1.wav"):
        write_wav(src / "audios" / name)
    (src / "patients.csv").write_text(
        "file_path,class,sexo,idade\naudios/p1_frase.wav,1,F,60\naudios/p2_parlenda.wav,1,,70\n"
    )
    (src / "controls.csv").write_text(
        "file_path,class,sexo,idade,nivel_falta_de_ar\naudios/c1_aceite.wav,0,M,30,0\n"
        "audios/c2_frase.wav,0,Feminino,41,1\naudios/missing.wav,0,M,20,0\n"
    )
    (src / "noises.csv").write_text("file_path\naudios/n1.wav\n")
    landing = tmp_path / "landing"
    code, output = invoke(
        "import-spira",
        str(src),
        "--batch-id",
        "spira-2021",
        "--landing",
        str(landing),
        "--patient-spo2",
        "89",
    )
    assert code == 0, output
    assert "3 recordings, 1 noise files, 2 rows not converted" in output
    assert "patients.csv:3: cannot derive sex (sexo)" in output
    assert "controls.csv:4: audio file 'audios/missing.wav' not found" in output
    with (landing / "spira-2021" / "metadata.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [
        (r["participant_id"], r["label"], r["sex"], r["spo2"], r["utterance"]) for r in rows
    ] == [
        ("p1_frase", "1", "F", "89", "frase"),
        ("c1_aceite", "0", "M", "", "aceite"),
        ("c2_frase", "0", "F", "", "frase"),
    ]
    assert (landing / "spira-2021" / "_READY").exists()
    assert len(list((landing / "noise").iterdir())) == 1


def test_import_spira_without_spo2_reports_patients_instead_of_inventing(tmp_path: Path) -> None:
    src = tmp_path / "spira"
    write_wav(src / "p1_frase.wav")
    write_wav(src / "c1_frase.wav")
    (src / "patients.csv").write_text("file_path,sexo,idade\np1_frase.wav,F,60\n")
    (src / "controls.csv").write_text("file_path,sexo,idade\nc1_frase.wav,M,30\n")
    code, output = invoke(
        "import-spira", str(src), "--batch-id", "b1", "--landing", str(tmp_path / "landing")
    )
    assert code == 0 and "1 recordings" in output and "--patient-spo2" in output
