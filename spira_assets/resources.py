"""Dagster resources: typed configuration around the core's storage, keys and rules."""

from dataclasses import fields

import dagster as dg
import torch
from pydantic import Field

from spira_assets.audio.quality import AudioQualityRules
from spira_assets.features.config import FeatureConfig
from spira_assets.layout import DataLayout
from spira_assets.privacy import Pseudonymizer, load_pseudonym_key
from spira_assets.storage.lake import Lake
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.warehouse import Warehouse

_RULES = AudioQualityRules()


class StorageResource(dg.ConfigurableResource):
    """Where data lives. Empty ``data_dir`` means ``$SPIRA_DATA_DIR`` or ``./data``."""

    data_dir: str = Field(default="", description="Data root (local path or URL).")

    def layout(self) -> DataLayout:
        return DataLayout.from_location(self.data_dir or None)

    def lake(self) -> Lake:
        return Lake(self.layout().lake)

    def raw_store(self) -> RawStore:
        return RawStore(self.layout().raw_store)

    def warehouse(self) -> Warehouse:
        layout = self.layout()
        return Warehouse(layout.warehouse, Lake(layout.lake))


class PseudonymResource(dg.ConfigurableResource):
    """The pseudonym key. Leave ``key`` empty to use ``$SPIRA_PSEUDONYM_KEY`` (or, for the
    demo, a key generated once under ~/.config); set it with ``dg.EnvVar`` in deployments so
    the secret never appears in run configuration."""

    key: str = Field(default="", description="Secret; prefer dg.EnvVar('SPIRA_PSEUDONYM_KEY').")

    def pseudonymizer(self) -> Pseudonymizer:
        return Pseudonymizer(load_pseudonym_key(self.key or None))


class IngestPolicy(dg.ConfigurableResource):
    """Acceptance rules for audio and the share of a batch that may be quarantined."""

    min_sample_rate: int = _RULES.min_sample_rate
    max_sample_rate: int = _RULES.max_sample_rate
    max_channels: int = _RULES.max_channels
    min_duration_s: float = _RULES.min_duration_s
    max_duration_s: float = _RULES.max_duration_s
    silence_frame_dbfs: float = _RULES.silence_frame_dbfs
    max_silence_ratio: float = _RULES.max_silence_ratio
    clip_level: float = _RULES.clip_level
    max_clipping_ratio: float = _RULES.max_clipping_ratio
    max_quarantine_share: float = Field(
        default=0.25, description="A batch fails its blocking check above this share."
    )
    decode_workers: int = Field(default=2, description="Threads decoding audio in parallel.")

    def audio_rules(self) -> AudioQualityRules:
        return AudioQualityRules(
            **{f.name: getattr(self, f.name) for f in fields(AudioQualityRules)}
        )


_FEATURES = FeatureConfig()


class FeatureSettings(dg.ConfigurableResource):
    """The feature configuration (SPIRA's defaults). Its hash names the stored features, so a
    change produces features side by side with the old ones, never over them."""

    kind: str = Field(default=_FEATURES.kind, description="mfcc, mel or linear")
    n_mfcc: int = _FEATURES.n_mfcc
    n_mels: int = _FEATURES.n_mels
    n_fft: int = _FEATURES.n_fft
    win_length: int = _FEATURES.win_length
    hop_length: int = _FEATURES.hop_length
    f_min: float = _FEATURES.f_min
    f_max: float | None = _FEATURES.f_max
    log_mels: bool = _FEATURES.log_mels
    normalized: bool = _FEATURES.normalized
    batch_seconds: float = Field(
        default=240.0, description="Audio per device batch during extraction (memory bound)."
    )

    def config(self) -> FeatureConfig:
        values = {
            f.name: getattr(self, f.name) for f in fields(FeatureConfig) if hasattr(self, f.name)
        }
        return FeatureConfig(**values)


class ComputeResource(dg.ConfigurableResource):
    """Where tensors run: ``auto`` picks CUDA when present and allowed, else the CPU."""

    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    allow_cuda: bool = True

    def torch_device(self) -> torch.device:
        if self.device != "auto":
            return torch.device(self.device)
        if self.allow_cuda and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
