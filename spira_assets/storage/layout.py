"""Where things live under the data root (given by the caller: ``environment.py`` reads
``SPIRA_DATA_DIR`` for the Dagster resources and ``spira``).

One object answers every "where is X" question so that no module builds paths by hand and
the root can later be an object-store URL (``s3://bucket/spira``) without touching callers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")


def is_local(path: UPath) -> bool:
    """A path on this machine's filesystem (not an object-store URL)."""
    return path.protocol in LOCAL_PROTOCOLS


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
    - ``waveforms/landed/<batch_id>@<token>.int16`` : raw_audio's 16 kHz PCM of accepted files
    - ``waveforms/16k/<batch_id>@<token>.int16`` : accepted audio at 16 kHz mono, per batch
    - ``waveforms/noise/hospital_noise@<token>.int16`` : the noise set at 16 kHz mono
    - ``features/<config_hash>/<batch_id>@<token>.f32`` : feature frames per config and batch
    - ``lake/<table>/.../<batch_id>.parquet`` : one file per table and batch (the tables)
    - ``warehouse.duckdb``    : DuckDB catalog with one view per table over the lake
    """

    root: UPath
    cache_dir: Path | None = None  # the local mirror of a remote root (SPIRA_CACHE_DIR)
    warehouse_file: UPath | None = None  # the DuckDB catalog (SPIRA_WAREHOUSE_PATH)

    @classmethod
    def from_location(
        cls,
        location: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str] | None = None,
        warehouse_file: str | os.PathLike[str] | None = None,
    ) -> DataLayout:
        return cls(
            as_upath(location),
            Path(cache_dir).expanduser().resolve() if cache_dir else None,
            as_upath(warehouse_file) if warehouse_file else None,
        )

    # -- a root in object storage (s3://, gs://, ...) ---------------------------------------
    # Tables (Parquet), the raw store and the landing zone are read and written through the
    # root's filesystem directly. Shards are memory-mapped and models are loaded by torch, so
    # those live in a local mirror (``local_root``): writers ``publish`` what they made, readers
    # ``fetch`` what they need. Both are no-ops for a local root, where the mirror is the root.
    # Everything mirrored is immutable once written (content-token shard names, one folder per
    # model version), so a file present in the mirror is never stale.

    @property
    def is_remote(self) -> bool:
        return not is_local(self.root)

    @property
    def local_root(self) -> Path:
        if not self.is_remote:
            return Path(str(self.root))
        if self.cache_dir is not None:
            return self.cache_dir
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "spira-cache" / digest

    def publish(self, relative: str) -> None:
        """Upload a file or folder written under ``local_root`` to the same place in the root."""
        if not self.is_remote:
            return
        source = self.local(relative)
        if source.is_file():
            pairs = [(source, self.root / relative)]
        else:
            pairs = [
                (file, self.root / relative / file.relative_to(source).as_posix())
                for file in sorted(source.rglob("*"))
                if file.is_file()
            ]
        for file, target in pairs:
            self.root.fs.put_file(str(file), target.path)

    def fetch(self, relative: str) -> Path:
        """The local copy of a file or folder of the root, downloaded on first use."""
        local = self.local(relative)
        if not self.is_remote or local.exists():
            return local
        remote = self.root / relative
        if not remote.exists():
            raise FileNotFoundError(f"{remote} does not exist")
        staging = local.with_name(f".{local.name}.{os.getpid()}.download")
        if remote.is_dir():
            for path in self.root.fs.find(remote.path):
                target = staging / path[len(remote.path) :].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.root.fs.get_file(path, str(target))
        else:
            staging.parent.mkdir(parents=True, exist_ok=True)
            self.root.fs.get_file(remote.path, str(staging))
        try:
            staging.replace(local)  # atomic; a folder another process placed first wins
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        return local

    def fetch_if_present(self, relative: str) -> Path:
        """Like ``fetch``, but a path that does not exist in the root is simply not fetched."""
        try:
            return self.fetch(relative)
        except FileNotFoundError:
            return self.local(relative)

    def fetch_many(self, relatives: list[str]) -> None:
        for relative in sorted(set(relatives)):
            self.fetch(relative)

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
        from spira_assets.storage.batches import require_valid_batch_id

        return f"waveforms/16k/{require_valid_batch_id(batch_id)}@{token}.int16"

    def landed_shard(self, batch_id: str, token: str) -> str:
        """Relative path of the 16 kHz PCM that ``raw_audio`` made of a batch's accepted files
        (``audio_16k`` copies from it)."""
        from spira_assets.storage.batches import require_valid_batch_id

        return f"waveforms/landed/{require_valid_batch_id(batch_id)}@{token}.int16"

    def noise_shard(self, token: str) -> str:
        return f"waveforms/noise/hospital_noise@{token}.int16"

    def feature_shard(self, config_hash: str, batch_id: str, token: str) -> str:
        from spira_assets.storage.batches import require_valid_batch_id

        return f"features/{config_hash}/{require_valid_batch_id(batch_id)}@{token}.f32"

    def local(self, relative: str) -> Path:
        """The local path of a relative location (in the mirror for a remote root)."""
        return self.local_root / relative

    @property
    def warehouse(self) -> UPath:
        """The DuckDB catalog: ``SPIRA_WAREHOUSE_PATH``, else ``warehouse.duckdb`` under the
        root (under the local mirror for a remote root: DuckDB writes a local file)."""
        if self.warehouse_file is not None:
            return self.warehouse_file
        return UPath(self.local_root / "warehouse.duckdb")

    @property
    def reports(self) -> UPath:
        return self.root / "reports"

    def batch_dir(self, batch_id: str) -> UPath:
        from spira_assets.storage.batches import require_valid_batch_id

        return self.landing / require_valid_batch_id(batch_id)
