"""The `spira` command line, run in-process with click's runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spira_assets.cli import main
from spira_assets_tests.conftest import copy_data_root
from spira_assets_tests.fresh_demo import DEMO_GROUP, FreshDemo
from spira_assets_tests.servers import free_port


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


def test_materialize_through_a_webserver_that_does_not_answer_says_so(tmp_path: Path) -> None:
    (tmp_path / "landing" / "b-1").mkdir(parents=True)
    (tmp_path / "landing" / "b-1" / "_READY").touch()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, output = invoke("materialize", "--batch", "b-1", "--dagster-url", url,
                          "--data-dir", str(tmp_path))  # fmt: skip
    assert code == 1 and f"Dagster webserver {url}/graphql" in output, output
    code, output = invoke("materialize", "--batch", "b-1", "--select", "hospital_noise",
                          "--dagster-url", url, "--data-dir", str(tmp_path))  # fmt: skip
    assert code == 1 and f"Dagster webserver {url}/graphql" in output, output


@pytest.mark.xdist_group(DEMO_GROUP)
def test_demo_runs_the_graph_and_reports_exact_accounting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_demo: FreshDemo
) -> None:
    """`spira demo` on a fresh machine (the session's ``fresh_demo``: 16 people, a tenth of
    the files defective, seeds 42 and 43, two epochs each)."""
    output = fresh_demo.output
    assert fresh_demo.exit_code == 0, output
    assert "seeds [42, 43], up to 2 epochs each" in output
    # the first thing a user sees after the demo says where the UI shows its runs
    assert "these runs are on its first screen, Overview's timeline" in output
    line = next(ln for ln in output.splitlines() if ln.startswith("demo-001") and "run" not in ln)
    files, files_ok, rows, rows_ok, rows_q = (int(v) for v in line.split()[1:6])
    assert rows == rows_ok + rows_q and files >= files_ok
    caught, planted = (int(v) for v in line.split()[-1].split("/"))
    assert caught == planted > 0  # every planted defect caught
    data = copy_data_root(fresh_demo.data, tmp_path / "data")  # the shared root stays as it is
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    code, output = invoke(
        "sql", "SELECT count(*) AS n FROM validated_metadata", "--data-dir", str(data)
    )
    assert code == 0 and str(rows_ok) in output
    code, output = invoke(
        "materialize",
        "--batch",
        "demo-001",
        "--select",
        "raw_audio",
        "--data-dir",
        str(data),
    )
    assert code == 0 and "demo-001: run" in output
