"""Dagster resources: typed configuration around the core's storage, keys and rules."""

import os
from dataclasses import fields
from pathlib import Path

import dagster as dg
import mlflow
import torch
from pydantic import Field

from spira_assets.audio.quality import AudioQualityRules
from spira_assets.features.augment import AugmentConfig
from spira_assets.features.config import FeatureConfig
from spira_assets.layout import DataLayout
from spira_assets.ml.drift import DriftThresholds
from spira_assets.ml.gate import GateConfig
from spira_assets.ml.split import SplitConfig
from spira_assets.ml.tracking import (
    EXPERIMENT,
    REGISTERED_MODEL,
    default_tracking_uri,
    ensure_experiment,
)
from spira_assets.ml.train import TrainConfig
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
        default=0.0,
        description="Audio per transform chunk during extraction (bounds memory); 0 = the "
        "measured default of the device (2 s on CPU).",
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


_TRAIN = TrainConfig()
_SPLIT = SplitConfig()


class TrainingSettings(dg.ConfigurableResource):
    """Training configuration; defaults are SPIRA's published ones (SPIRA.md)."""

    seeds: list[int] = Field(default=[42, 43, 46], description="One model per seed; best kept.")
    norm: str = Field(default=_TRAIN.norm, description="group (SpiraConv v2) or batch (v1)")
    dropout: float = _TRAIN.dropout
    learning_rate: float = _TRAIN.learning_rate
    weight_decay: float = _TRAIN.weight_decay
    warmup_steps: int = _TRAIN.warmup_steps
    batch_size: int = _TRAIN.batch_size
    max_epochs: int = _TRAIN.max_epochs
    patience: int = _TRAIN.patience
    window_s: float = Field(default=_TRAIN.window_s, description="Window length in seconds.")
    step_s: float = Field(default=_TRAIN.step_s, description="Hop between windows in seconds.")
    noise_slices_control: int = _TRAIN.augment.k_control
    noise_slices_patient: int = _TRAIN.augment.k_patient
    mixup_alpha: float = _TRAIN.augment.mixup_alpha
    validation_share: float = _SPLIT.validation
    test_share: float = _SPLIT.test

    def train_config(self) -> TrainConfig:
        if self.norm not in ("group", "batch"):
            raise ValueError("norm must be 'group' or 'batch'")
        return TrainConfig(
            norm=self.norm,  # type: ignore[arg-type]
            dropout=self.dropout,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            patience=self.patience,
            window_s=self.window_s,
            step_s=self.step_s,
            augment=AugmentConfig(
                k_control=self.noise_slices_control,
                k_patient=self.noise_slices_patient,
                mixup_alpha=self.mixup_alpha,
            ),
        )

    def split_config(self) -> SplitConfig:
        return SplitConfig(validation=self.validation_share, test=self.test_share)


class MlflowTracking(dg.ConfigurableResource):
    """MLflow for training runs. Wraps what dagster-mlflow's legacy resource does (one MLflow
    run per Dagster run, ended by dagster-mlflow's ``end_mlflow_on_run_finished`` hook) but
    creates the experiment with its artifact root under the data root: the legacy resource
    lets MLflow default it to ``./mlruns`` of whichever process started the run."""

    tracking_uri: str = Field(
        default="", description="Empty: $MLFLOW_TRACKING_URI, else SQLite under the data root."
    )
    experiment: str = EXPERIMENT
    registered_model: str = REGISTERED_MODEL
    data_dir: str = Field(default="", description="Data root (empty: $SPIRA_DATA_DIR or ./data).")

    def _root(self) -> Path:
        return DataLayout.from_location(self.data_dir or None).local_root

    def resolved_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        if (
            DataLayout.from_location(self.data_dir or None).is_remote
            and not os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        ):
            # a SQLite file in one pod's local mirror would give every pod its own registry
            raise ValueError(
                "a data root in object storage needs a shared MLflow tracking server: "
                "set MLFLOW_TRACKING_URI"
            )
        return default_tracking_uri(self._root())

    def start(self, dagster_run_id: str) -> str:
        """Start (or resume) the MLflow run of this Dagster run; returns its id."""
        uri = self.resolved_uri()
        artifacts = self._root() / "mlartifacts" if uri.startswith("sqlite") else None
        experiment_id = ensure_experiment(uri, self.experiment, artifacts)
        mlflow.set_experiment(experiment_id=experiment_id)  # nested runs follow it
        runs = mlflow.search_runs(
            [experiment_id],
            filter_string=f"tags.`dagster.run_id` = '{dagster_run_id}'",
            output_format="list",
        )
        if mlflow.active_run() is not None:
            mlflow.end_run()
        if runs:
            return mlflow.start_run(run_id=runs[0].info.run_id).info.run_id
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=dagster_run_id[:8],
            tags={"dagster.run_id": dagster_run_id},
        )
        return run.info.run_id

    def end_run(self, status: str = "FINISHED") -> None:
        """Called by dagster-mlflow's end_mlflow_on_run_finished hook."""
        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)


_GATE = GateConfig()


class EvaluationSettings(dg.ConfigurableResource):
    """Evaluation and promotion-gate settings."""

    bootstrap_resamples: int = 1000
    min_subgroup_participants: int = 10
    min_subgroup_per_class: int = 3
    noisy_seed: int = Field(default=1, description="Seed family of the fixed noisy test set.")
    min_auroc: float = _GATE.min_auroc
    min_sensitivity: float = _GATE.min_sensitivity
    non_inferiority_margin: float = Field(
        default=_GATE.non_inferiority_margin,
        description="Largest AUROC loss against any champion, past or present, that the lower "
        "95% bound of the paired difference may show.",
    )
    subgroup_min_auroc: float = _GATE.subgroup_min_auroc
    max_subgroup_gap: float = _GATE.max_subgroup_gap

    def gate(self) -> GateConfig:
        return GateConfig(
            self.min_auroc,
            self.min_sensitivity,
            self.non_inferiority_margin,
            self.subgroup_min_auroc,
            self.max_subgroup_gap,
        )


class DriftSettings(dg.ConfigurableResource):
    """When a new batch counts as drifted from the champion's training data."""

    psi: float = Field(default=0.25, description="PSI at or above which a category drifted.")
    feature_shift_sd: float = Field(
        default=0.5, description="Batch mean shift of a coefficient, in reference SDs."
    )
    min_rows: int = Field(default=20, description="Smaller batches are reported, never failed.")

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(self.psi, self.feature_shift_sd, self.min_rows)


class RetrainingPolicy(dg.ConfigurableResource):
    """When the retraining sensor starts ``train_model``, and how often a failed run is
    retried (Dagster run retries, bounded: a failure never loops)."""

    min_new_batches: int = Field(
        default=2, description="Accepted batches since the last model that start a retraining."
    )
    retrain_on_drift: bool = Field(
        default=True, description="A new batch failing its drift check starts a retraining."
    )
    max_retries: int = Field(default=1, description="Automatic retries of a failed training run.")
