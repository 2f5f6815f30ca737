"""The local Dagster instance used by the CLI, ``make demo`` and ``dagster dev``.

``DAGSTER_HOME`` defaults to ``.dagster_home`` in the project checkout so that runs started
from the CLI show up in the UI started by ``make ui``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from spira_assets.environment import setting

INSTANCE_YAML = (Path(__file__).parent / "instance.yaml").read_text(encoding="utf-8")
MANAGED = ("# spira_assets local instance", "# Local instance for the demo and development")


def project_root() -> Path:
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def ensure_dagster_home() -> Path:
    home = Path(setting("DAGSTER_HOME") or project_root() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    current = config.read_text(encoding="utf-8") if config.exists() else None
    # a file someone edited (the first line changed) is left alone
    if current is None or (current.startswith(MANAGED) and current != INSTANCE_YAML):
        config.write_text(INSTANCE_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def local_instance() -> dg.DagsterInstance:
    ensure_dagster_home()
    return dg.DagsterInstance.get()


if __name__ == "__main__":  # `python -m spira_assets.app.instance`: prepare DAGSTER_HOME (make ui)
    print(ensure_dagster_home())
