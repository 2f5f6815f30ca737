"""Dagster resources: typed configuration around the core's storage, keys and rules.

Every resource that carries a core configuration uses the core's field names and choices and
takes its defaults from the core's instances (``AudioQualityRules()``, ``FeatureConfig()``,
``TrainConfig`` profiles, ``SplitConfig()``, ``GateConfig()``, ``EvaluationConfig()``,
``DriftThresholds()``); a choice the core types as a ``Literal`` is an enum of exactly its
values (``resource_fields.py``), so the launchpad offers the choices and refuses anything else.
``test_settings_parity.py`` compares each resource with its core config, field by field.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from spira_assets import environment
from spira_assets.audio.quality import AudioQualityRules
from spira_assets.evaluation.config import EvaluationConfig
from spira_assets.evaluation.drift import DriftThresholds
from spira_assets.evaluation.gate import GateConfig
from spira_assets.features.augment_config import AugmentConfig
from spira_assets.features.config import FeatureConfig
from spira_assets.ingest.identity import ParticipantRules
from spira_assets.ingest.listing import ListingLimits
from spira_assets.ml.protocol import PLATFORM, PROFILE_SEEDS, PROFILES, profile_config
from spira_assets.ml.split import SplitConfig
from spira_assets.ml.tracking import EXPERIMENT, REGISTERED_MODEL, ensure_experiment
from spira_assets.ml.train_config import TrainConfig
from spira_assets.mlflow_session import open_run
from spira_assets.privacy import Pseudonymizer
from spira_assets.resource_fields import (
    CalibrationChoice,
    FeatureKindChoice,
    InputScalingChoice,
    NoiseScaleChoice,
    NormChoice,
    ProfileChoice,
    ThresholdRuleChoice,
    TransformUnitChoice,
    WindowRuleChoice,
    core_values,
    plain,
)
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.raw_store import RawStore
from spira_assets.storage.warehouse import Warehouse

if TYPE_CHECKING:
    import torch

# torch and mlflow are imported by the methods that use them: the code location loads without


_RULES = AudioQualityRules()
_LIMITS = ListingLimits()
_PARTICIPANT = ParticipantRules()
_FEATURES = FeatureConfig()
_SPLIT = SplitConfig()
_GATE = GateConfig()
_EVALUATION = EvaluationConfig()
_DRIFT = DriftThresholds()
TRAINING_RETRIES = 1  # automatic retries of a failed training run (sensor and schedule)


class StorageResource(dg.ConfigurableResource):
    """Where data lives. Empty fields take ``$SPIRA_DATA_DIR`` (else ``./data``),
    ``$SPIRA_CACHE_DIR`` and ``$SPIRA_WAREHOUSE_PATH`` (``environment.py``)."""

    data_dir: str = Field(default="", description="Data root (local path or URL).")
    cache_dir: str = Field(default="", description="Local mirror of a root in object storage.")
    warehouse_path: str = Field(default="", description="The DuckDB catalog file.")

    def layout(self) -> DataLayout:
        return environment.data_layout(self.data_dir or None, self.cache_dir, self.warehouse_path)

    def lake(self) -> Lake:
        return Lake(self.layout().lake)

    def raw_store(self) -> RawStore:
        return RawStore(self.layout().raw_store)

    def warehouse(self) -> Warehouse:
        layout = self.layout()
        return Warehouse(layout.warehouse, Lake(layout.lake))


class PseudonymResource(dg.ConfigurableResource):
    """The pseudonym key and how the site spells participant ids. Leave ``key`` empty to use
    ``$SPIRA_PSEUDONYM_KEY`` (or, for the demo, a key generated once under ~/.config); set it
    with ``dg.EnvVar`` in deployments so the secret never appears in run configuration."""

    key: str = Field(default="", description="Secret; prefer dg.EnvVar('SPIRA_PSEUDONYM_KEY').")
    participant_id_format: str | None = Field(
        default=None,
        description="A regular expression every participant id must match (ignoring case), "
        "e.g. 'SP-?\\d{4}'; ids outside it are quarantined, file-name tokens redacted.",
    )

    def pseudonymizer(self) -> Pseudonymizer:
        layout = environment.data_layout()
        demo_root = None if layout.is_remote else layout.local_root  # where a demo key may be
        return Pseudonymizer(
            environment.pseudonym_key(self.key or None, demo_root),
            self.participant_id_format or None,
        )


class IngestPolicy(dg.ConfigurableResource):
    """Acceptance rules for audio (``AudioQualityRules``), listing limits (``ListingLimits``),
    participant rules (``ParticipantRules``) and the share of a batch that may be quarantined."""

    min_sample_rate: int = _RULES.min_sample_rate
    max_sample_rate: int = _RULES.max_sample_rate
    max_channels: int = _RULES.max_channels
    min_duration_s: float = _RULES.min_duration_s
    max_duration_s: float = _RULES.max_duration_s
    silence_frame_dbfs: float = _RULES.silence_frame_dbfs
    max_silence_ratio: float = _RULES.max_silence_ratio
    clip_level: float = _RULES.clip_level
    max_clipping_ratio: float = _RULES.max_clipping_ratio
    max_sample_magnitude: float = Field(
        default=_RULES.max_sample_magnitude,
        description="Float samples beyond this magnitude (1.0 = full scale) refuse the file.",
    )
    max_listing_depth: int = Field(
        default=_LIMITS.max_listing_depth, description="Folder levels of a batch that are listed."
    )
    max_listing_entries: int = Field(
        default=_LIMITS.max_listing_entries,
        description="Files and folders of a batch that are listed.",
    )
    max_age_spread_years: int = Field(
        default=_PARTICIPANT.max_age_spread_years,
        description="Largest age difference between a participant's rows of one batch.",
    )
    max_quarantine_share: float = Field(
        default=0.25, description="A batch fails its blocking check above this share."
    )
    decode_workers: int = Field(default=2, description="Threads decoding audio in parallel.")

    def audio_rules(self) -> AudioQualityRules:
        return AudioQualityRules(**core_values(self, AudioQualityRules))

    def listing_limits(self) -> ListingLimits:
        return ListingLimits(**core_values(self, ListingLimits))

    def participant_rules(self) -> ParticipantRules:
        return ParticipantRules(**core_values(self, ParticipantRules))


class FeatureSettings(dg.ConfigurableResource):
    """The feature configuration (SPIRA's defaults). Its hash names the stored features, so a
    change produces features side by side with the old ones, never over them."""

    kind: FeatureKindChoice = Field(default=_FEATURES.kind, description="mfcc, mel or linear")
    sample_rate: int = _FEATURES.sample_rate  # of the stored audio (the 16 kHz store)
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
        default=0.0, description="Audio per transform chunk (bounds memory); 0: 2 s on CPU."
    )

    def config(self) -> FeatureConfig:
        return FeatureConfig(**core_values(self, FeatureConfig))


class ComputeResource(dg.ConfigurableResource):
    """Where tensors run: ``auto`` picks CUDA when present and allowed, else the CPU."""

    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    allow_cuda: bool = True

    def torch_device(self) -> torch.device:
        import torch

        if self.device != "auto":
            return torch.device(self.device)
        if self.allow_cuda and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")


class SplitSettings(dg.Config):
    """Shares of participants in validation and test (``SplitConfig``)."""

    validation: float = _SPLIT.validation
    test: float = _SPLIT.test
    salt: str = Field(
        default=_SPLIT.salt, description="Hash salt of the assignment (a new one reshuffles)."
    )


# TrainConfig fields a training run does not take from the resource: the profile is its own
# field, the augment fields are flat (profile_config takes them by name)
_NOT_OVERRIDDEN = ("profile", "augment")


class TrainingSettings(dg.ConfigurableResource):
    """The training protocol: a profile (``platform``, or ``spira-acl2021``: SPIRA's published
    experiment 3.5, docs/MODELS.md) and, optionally, ``TrainConfig``/``AugmentConfig`` fields
    overriding it by their own names (empty: the profile's value); the split's shares."""

    profile: ProfileChoice = Field(default=PLATFORM, description=f"One of {sorted(PROFILES)}.")
    seeds: list[int] | None = Field(
        default=None, description="One model per seed (empty: the profile's 42, 43, 46)."
    )
    norm: NormChoice | None = Field(default=None, description="group (SpiraConv v2) or batch (v1)")
    dropout: float | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    batch_size: int | None = Field(default=None, description="Recordings per batch.")
    drop_last: bool | None = None
    max_epochs: int | None = None
    patience: int | None = Field(default=None, description="0: no early stopping.")
    max_loss: float | None = None
    window_s: float | None = Field(default=None, description="Window length in seconds.")
    step_s: float | None = Field(default=None, description="Hop between windows in seconds.")
    window_rule: WindowRuleChoice | None = None
    transform_unit: TransformUnitChoice | None = None
    validation_noise: bool | None = None
    validate_every_steps: int | None = None
    threshold_rule: ThresholdRuleChoice | None = Field(
        default=None, description="sensitivity (reaching target_sensitivity), youden or fixed"
    )
    target_sensitivity: float | None = Field(
        default=None, description="The operating point's validation sensitivity (0.90)."
    )
    fixed_threshold: float | None = None
    input_scaling: InputScalingChoice | None = Field(
        default=None, description="Standardize coefficients with training-split statistics."
    )
    calibration: CalibrationChoice | None = Field(
        default=None, description="Platt scaling fitted on validation (the platform's) or none."
    )
    keep_all_seeds: bool | None = None
    mixed_precision: bool | None = Field(default=None, description="bf16 autocast on CUDA.")
    eval_batch_size: int | None = None
    k_control: int | None = None  # noise slices per control
    k_patient: int | None = None  # noise slices per patient
    min_peak: float | None = None
    max_peak: float | None = None
    scale: NoiseScaleChoice | None = Field(default=None, description="peak or signed_max")
    mixup_alpha: float | None = None
    skip_noise_list_header: bool | None = Field(
        default=None, description="Leave out line 1 of an imported noise_data.csv, as SPIRA."
    )
    split: SplitSettings = Field(default_factory=SplitSettings)

    def train_config(self) -> TrainConfig:
        names = [f.name for f in fields(TrainConfig) if f.name not in _NOT_OVERRIDDEN]
        names += [f.name for f in fields(AugmentConfig)]
        return profile_config(plain(self.profile), **{n: plain(getattr(self, n)) for n in names})

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds else list(PROFILE_SEEDS[plain(self.profile)])

    def split_config(self) -> SplitConfig:
        return SplitConfig(**core_values(self.split, SplitConfig))


class MlflowTracking(dg.ConfigurableResource):
    """MLflow for training runs: one MLflow run per Dagster run (found again by the tag
    ``dagster.run_id``), with the experiment's artifact root under the data root. Each step
    that logs ends the run when it is done (``finished``), so no run stays RUNNING whatever
    step a Dagster run stops at."""

    storage: StorageResource
    tracking_uri: str = Field(
        default="", description="Empty: $MLFLOW_TRACKING_URI, else SQLite under the data root."
    )
    experiment: str = EXPERIMENT
    registered_model: str = REGISTERED_MODEL

    def _root(self) -> Path:
        return self.storage.layout().local_root

    def resolved_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        if self.storage.layout().is_remote and not environment.setting(
            environment.TRACKING_URI_ENV
        ):
            # a SQLite file in one pod's local mirror would give every pod its own registry
            raise ValueError(
                "a data root in object storage needs a shared MLflow tracking server: "
                f"set {environment.TRACKING_URI_ENV}"
            )
        return environment.tracking_uri(self._root())

    def start(self, dagster_run_id: str) -> str:
        """Start (or resume) the MLflow run of this Dagster run through dagster-mlflow."""
        from mlflow.tracking import MlflowClient

        uri = self.resolved_uri()
        artifacts = self._root() / "mlartifacts" if uri.startswith("sqlite") else None
        experiment_id = ensure_experiment(uri, self.experiment, artifacts)
        client, tag = MlflowClient(uri), {"dagster.run_id": dagster_run_id}
        found = client.search_runs([experiment_id], f"tags.`dagster.run_id` = '{dagster_run_id}'")
        run = found[0] if found else client.create_run(experiment_id, None, tag, dagster_run_id[:8])
        open_run(uri, self.experiment, run.info.run_id)
        return run.info.run_id

    @contextmanager
    def run(self, dagster_run_id: str) -> Iterator[str]:
        """This Dagster run's MLflow run for a step: ended FINISHED, or FAILED if it raises."""
        run_id = self.start(dagster_run_id)
        try:
            yield run_id
        except BaseException:
            self.finish("FAILED")
            raise
        self.finish()

    def finish(self, status: str = "FINISHED") -> None:
        """End the active MLflow run (a step that logged calls it, FAILED on an error)."""
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)


class EvaluationSettings(dg.ConfigurableResource):
    """Evaluation (``EvaluationConfig``) and promotion-gate (``GateConfig``) settings."""

    bootstrap_resamples: int = _EVALUATION.bootstrap_resamples
    min_subgroup_participants: int = _EVALUATION.min_subgroup_participants
    min_subgroup_per_class: int = _EVALUATION.min_subgroup_per_class
    noisy_seed: int = Field(
        default=_EVALUATION.noisy_seed, description="Seed family of the fixed noisy test set."
    )
    min_auroc: float = _GATE.min_auroc
    min_sensitivity: float = _GATE.min_sensitivity
    non_inferiority_margin: float = Field(
        default=_GATE.non_inferiority_margin,
        description="Largest AUROC loss vs any champion the paired difference's lower bound shows.",
    )
    subgroup_min_auroc: float = _GATE.subgroup_min_auroc
    max_subgroup_gap: float = _GATE.max_subgroup_gap
    min_unseen_per_class: int = Field(
        default=_GATE.min_unseen_per_class,
        description="Patients and controls (each) unseen by both models a comparison needs.",
    )
    min_defined_draws: float = Field(
        default=_GATE.min_defined_draws,
        description="Share of bootstrap draws that must define a statistic for its interval.",
    )

    def gate(self) -> GateConfig:
        return GateConfig(**core_values(self, GateConfig))

    def config(self) -> EvaluationConfig:
        return EvaluationConfig(**core_values(self, EvaluationConfig))


class DriftSettings(dg.ConfigurableResource):
    """When a new batch counts as drifted from the champion's training data."""

    psi: float = _DRIFT.psi  # PSI at or above which a category drifted
    feature_shift_sd: float = _DRIFT.feature_shift_sd  # mean shift of a coefficient, in SDs
    min_rows: int = _DRIFT.min_rows  # smaller batches are reported, never failed

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(**core_values(self, DriftThresholds))


class RetrainingPolicy(dg.ConfigurableResource):
    """When the retraining sensor starts ``train_model``, and how often a failed run is
    retried (Dagster run retries, bounded: a failure never loops)."""

    min_new_batches: int = 2  # accepted batches since the last model that start a retraining
    retrain_on_drift: bool = True  # a new batch failing its drift check starts a retraining
    max_retries: int = Field(
        default=TRAINING_RETRIES, description="Automatic retries of a failed training run."
    )
