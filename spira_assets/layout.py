"""Where things live under the data root (``SPIRA_DATA_DIR``).

One object answers every "where is X" question so that no module builds paths by hand and
the root can later be an object-store URL (``s3://bucket/spira``) without touching callers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from upath import UPath

DATA_DIR_ENV = "SPIRA_DATA_DIR"
DEFAULT_DATA_DIR = "data"


def default_data_dir() -> str:
    """The data root from ``SPIRA_DATA_DIR``, else ``./data`` (resolved against the cwd)."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return value or DEFAULT_DATA_DIR


def as_upath(location: str | os.PathLike[str]) -> UPath:
    """A UPath for a local path or URL; local relative paths become absolute."""
    text = os.fspath(location)
    if "://" in text:
        return UPath(text)
    return UPath(Path(text).expanduser().resolve())


@dataclass(frozen=True)
class DataLayout:
    """Folders and files under one data root.

    - ``landing/<batch_id>/`` : what the collection app uploads (raw zone, contains PHI)
    - ``landing/noise/``      : hospital ambience for augmentation
    - ``raw/<aa>/<sha256>.<ext>`` : immutable content-addressed copy of accepted audio
    - ``waveforms/16k/<batch_id>@<token>.int16`` : accepted audio at 16 kHz mono, per batch
    - ``waveforms/noise/hospital_noise@<token>.int16`` : the noise set at 16 kHz mono
    - ``features/<config_hash>/<batch_id>@<token>.f32`` : feature frames per config and batch
    - ``lake/<table>/.../<batch_id>.parquet`` : one file per table and batch (the tables)
    - ``warehouse.duckdb``    : DuckDB catalog with one view per table over the lake
    """

    root: UPath

    @classmethod
    def from_location(cls, location: str | os.PathLike[str] | None = None) -> DataLayout:
        return cls(as_upath(location if location is not None else default_data_dir()))

    @property
    def landing(self) -> UPath:
        return self.root / "landing"

    @property
    def noise(self) -> UPath:
        return self.landing / "noise"

    @property
    def raw_store(self) -> UPath:
        return self.root / "raw"

    @property
    def lake(self) -> UPath:
        return self.root / "lake"

    @property
    def waveforms(self) -> UPath:
        return self.root / "waveforms"

    def waveform_shard(self, batch_id: str, token: str) -> str:
        """Relative path of a batch's 16 kHz shard; ``token`` names its content version
        (``@`` cannot occur in a batch id, so one batch's files never match another's)."""
        from spira_assets.batches import require_valid_batch_id

        return f"waveforms/16k/{require_valid_batch_id(batch_id)}@{token}.int16"

    def noise_shard(self, token: str) -> str:
        return f"waveforms/noise/hospital_noise@{token}.int16"

    def feature_shard(self, config_hash: str, batch_id: str, token: str) -> str:
        from spira_assets.batches import require_valid_batch_id

        return f"features/{config_hash}/{require_valid_batch_id(batch_id)}@{token}.f32"

    def local(self, relative: str) -> Path:
        """A local filesystem path for a relative location (shards are memory-mapped)."""
        return Path(str(self.root / relative))

    @property
    def warehouse(self) -> UPath:
        return self.root / "warehouse.duckdb"

    @property
    def reports(self) -> UPath:
        return self.root / "reports"

    def batch_dir(self, batch_id: str) -> UPath:
        from spira_assets.batches import require_valid_batch_id

        return self.landing / require_valid_batch_id(batch_id)
