"""A deprecation warning raised from our own code fails the test that triggers it; one from a
library does not (pyproject.toml, ``filterwarnings``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLANTED = """
import warnings


def test_ours():
    warnings.warn_explicit("old API", DeprecationWarning, "x.py", 1, module="spira_assets.x")


def test_a_library():
    warnings.warn_explicit("old API", DeprecationWarning, "y.py", 1, module="torch.y")
"""


def test_our_deprecations_fail_and_libraries_do_not(tmp_path: Path) -> None:
    (tmp_path / "test_planted.py").write_text(PLANTED)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "1 failed, 1 passed" in result.stdout, result.stdout[-2000:]
    assert "test_ours" in result.stdout and "DeprecationWarning: old API" in result.stdout
