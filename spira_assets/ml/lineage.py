"""What a model was made from: enough to rebuild it, and a fingerprint that names it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchaudio", "numpy", "polars", "soundfile", "dagster", "mlflow")


def code_version(root: Path | None = None) -> str:
    """Git commit of the checkout (with ``-dirty`` when files differ), else the package version."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "spira_assets-" + metadata.version("spira_assets")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def fingerprint(inputs: dict[str, Any]) -> str:
    """A stable name for a training input set (excludes package versions and device, which
    are recorded but do not decide whether to retrain)."""
    payload = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def pinned_requirements(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each installed package (the serving environment of a model)."""
    return [f"{name}=={metadata.version(name)}" for name in names]
