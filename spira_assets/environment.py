"""The one place environment variables are read (application and Dagster layer; the core
takes every setting as an argument, the pseudonym key included: ``pseudonym_key``).

A Dagster resource field left empty falls back to its variable here, when the resource is
used, not when the definitions are loaded: ``dg.EnvVar`` fails on an unset variable, while
these are optional (``./data`` without ``SPIRA_DATA_DIR``), and tests and ``spira`` set them
after importing the definitions. A deployment may still give a field as ``dg.EnvVar``.
"""

from __future__ import annotations

import os
from pathlib import Path

from spira_assets.privacy import KEY_ENV, load_pseudonym_key
from spira_assets.storage.layout import DataLayout

DATA_DIR_ENV = "SPIRA_DATA_DIR"
DEFAULT_DATA_DIR = "data"
WAREHOUSE_ENV = "SPIRA_WAREHOUSE_PATH"  # the DuckDB catalog file (default: under the data root)
CACHE_ENV = "SPIRA_CACHE_DIR"  # local copies of shards and model folders for a remote root
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # a shared MLflow server (default: SQLite in the root)


def setting(name: str) -> str:
    """The variable's value, stripped; empty when unset."""
    return os.environ.get(name, "").strip()


def data_dir(given: str | None = None) -> str:
    """The data root: ``given``, else ``SPIRA_DATA_DIR``, else ``./data``."""
    return (given or "").strip() or setting(DATA_DIR_ENV) or DEFAULT_DATA_DIR


def data_layout(
    location: str | os.PathLike[str] | None = None,
    cache_dir: str | None = None,
    warehouse_path: str | None = None,
) -> DataLayout:
    """The layout of ``location`` (else the environment's data root), with the local mirror
    and the catalog file given, else from the environment."""
    root = os.fspath(location) if location else data_dir()
    cache = (cache_dir or "").strip() or setting(CACHE_ENV)
    warehouse = (warehouse_path or "").strip() or setting(WAREHOUSE_ENV)
    return DataLayout.from_location(root, cache or None, warehouse or None)


def config_home() -> Path:
    """Where per-user files live (``$XDG_CONFIG_HOME``, else ``~/.config``)."""
    return Path(setting("XDG_CONFIG_HOME") or Path.home() / ".config")


def pseudonym_key_setting() -> str:
    """``SPIRA_PSEUDONYM_KEY`` as set (empty when unset): what a deployment gives."""
    return setting(KEY_ENV)


def pseudonym_key(explicit: str | None = None, data_root: Path | None = None) -> str:
    """The key this process pseudonymizes with: ``explicit`` (a resource field), else
    ``SPIRA_PSEUDONYM_KEY``, else the demo key of a data root the demo generated, else the local
    key under the config home (``privacy.load_pseudonym_key`` checks and refuses)."""
    return load_pseudonym_key(explicit or pseudonym_key_setting(), data_root, config_home())


def tracking_uri(local_root: Path) -> str:
    """The MLflow store: ``MLFLOW_TRACKING_URI``, else SQLite under the local data root."""
    from spira_assets.ml.tracking import default_tracking_uri

    return setting(TRACKING_URI_ENV) or default_tracking_uri(local_root)
