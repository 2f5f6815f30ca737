"""A private copy of a trained data root with an empty prediction log: other tests score
files against the shared ``champion_root`` (``spira predict``, the served model), and those
scores are logged in it."""

from __future__ import annotations

import shutil
from pathlib import Path

from spira_assets.monitoring.prediction_log import LOG_FOLDER
from spira_assets_tests.conftest import copy_data_root


def fresh_copy(source: Path, target: Path) -> Path:
    root = copy_data_root(source, target)
    shutil.rmtree(root / LOG_FOLDER, ignore_errors=True)
    return root
