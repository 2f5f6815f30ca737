"""The warehouse tables and their column types: one source of truth for writers and readers."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC_TIME = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its name (= the asset that writes it), columns, and the sub-key its files
    are further split by, if any (``quarantine`` by stage, so each stage replaces only its own
    rejections; feature tables by configuration hash, so configurations never mix)."""

    name: str
    schema: dict[str, pl.DataType]
    split_by: str | None = None
    # columns added after parts were written: the value those older parts stand for
    added: tuple[tuple[str, str | bool | None], ...] = ()

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Exactly the declared columns, in order, with the declared types."""
        older = {c: v for c, v in self.added if c not in frame.columns}
        if older:
            frame = frame.with_columns(pl.lit(v).alias(c) for c, v in older.items())
        missing = [c for c in self.schema if c not in frame.columns]
        if missing:
            raise ValueError(f"table {self.name}: frame lacks columns {missing}")
        return frame.select([pl.col(c).cast(t) for c, t in self.schema.items()])


QUARANTINE = TableSpec(
    "quarantine",
    {
        "batch_id": pl.String(),
        "stage": pl.String(),
        "item": pl.String(),
        "row_number": pl.Int64(),
        "column": pl.String(),
        "rule": pl.String(),
        "detail": pl.String(),
        "quarantined_at": UTC_TIME,
    },
    split_by="stage",
)

RAW_AUDIO = TableSpec(
    "raw_audio",
    {
        "batch_id": pl.String(),
        "source_path": pl.String(),
        "path_key": pl.String(),
        "accepted": pl.Boolean(),
        "rejection_rule": pl.String(),
        "audio_sha256": pl.String(),
        "pcm_sha256": pl.String(),  # of the accepted file's 16 kHz int16 samples
        "size_bytes": pl.Int64(),
        "container": pl.String(),
        "codec": pl.String(),
        "sample_rate": pl.Int64(),
        "channels": pl.Int64(),
        "frames": pl.Int64(),
        "duration_s": pl.Float64(),
        "peak_dbfs": pl.Float64(),
        "rms_dbfs": pl.Float64(),
        "clipping_ratio": pl.Float64(),
        "silence_ratio": pl.Float64(),
        "raw_uri": pl.String(),
        "ingested_at": UTC_TIME,
    },
    added=(("pcm_sha256", None),),  # parts written before: duplicates known by bytes only
)

VALIDATED_METADATA = TableSpec(
    "validated_metadata",
    {
        "batch_id": pl.String(),
        "row_number": pl.Int64(),
        "participant": pl.String(),
        # keyed hash of the id without separators (privacy.Pseudonymizer.id_fingerprint): a
        # later batch spelling the id otherwise is found without keeping a raw id
        "id_fingerprint": pl.String(),
        "label": pl.Int64(),
        "sex": pl.String(),
        "age": pl.Int64(),
        "spo2": pl.Int64(),
        "respiratory_rate": pl.Int64(),
        "collected_at": UTC_TIME,
        "device": pl.String(),
        "utterance": pl.String(),
        "audio_sha256": pl.String(),
        "raw_uri": pl.String(),
        "container": pl.String(),
        "codec": pl.String(),
        "sample_rate": pl.Int64(),
        "channels": pl.Int64(),
        "duration_s": pl.Float64(),
        "pseudonym_key_id": pl.String(),
        "speaker_grouping": pl.String(),  # how participants were identified (provenance.py)
        "published_split": pl.String(),  # the dataset's own split, when the import kept it
        "utterance_assumed": pl.Boolean(),  # the import's --utterance, not the list's
    },
    added=(("utterance_assumed", False), ("id_fingerprint", None)),
)

AUDIO_16K = TableSpec(
    "audio_16k",
    {
        "batch_id": pl.String(),
        "row_number": pl.Int64(),  # the recording's row in metadata.csv (list order)
        "audio_sha256": pl.String(),
        "participant": pl.String(),
        "label": pl.Int64(),
        "sex": pl.String(),
        "age": pl.Int64(),
        "device": pl.String(),
        "utterance": pl.String(),
        "pseudonym_key_id": pl.String(),
        "speaker_grouping": pl.String(),
        "published_split": pl.String(),
        "pcm_sha256": pl.String(),  # of the stored samples: the same audio however encoded
        "sample_offset": pl.Int64(),
        "samples": pl.Int64(),
        "duration_s": pl.Float64(),
        "shard": pl.String(),
        "resampler": pl.String(),
    },
    # parts written before the resampler was recorded were all made with torchaudio's sinc
    added=(("resampler", "torchaudio-sinc-hann-6"), ("pcm_sha256", None)),
)

# raw_audio's 16 kHz PCM of the files it accepted, from the decode that measured them
# (``waveforms/landed/<batch>@<token>.int16``): audio_16k copies from it instead of decoding.
RAW_AUDIO_16K = TableSpec(
    "raw_audio_16k",
    {
        "batch_id": pl.String(),
        "audio_sha256": pl.String(),
        "resampler": pl.String(),
        "sample_offset": pl.Int64(),
        "samples": pl.Int64(),
        "shard": pl.String(),
    },
)

HOSPITAL_NOISE = TableSpec(
    "hospital_noise",
    {
        "batch_id": pl.String(),  # always "all": the noise set is not partitioned
        "noise_sha256": pl.String(),
        "source": pl.String(),
        "sample_offset": pl.Int64(),
        "samples": pl.Int64(),
        "duration_s": pl.Float64(),
        "shard": pl.String(),
    },
)

SPECTROGRAM_FEATURES = TableSpec(
    "spectrogram_features",
    {
        "batch_id": pl.String(),
        "config_hash": pl.String(),
        "feature_kind": pl.String(),
        "audio_sha256": pl.String(),
        "participant": pl.String(),
        "label": pl.Int64(),
        "utterance": pl.String(),
        "frame_offset": pl.Int64(),
        "frames": pl.Int64(),
        "windows": pl.Int64(),
        "shard": pl.String(),
    },
    split_by="config_hash",
)

FEATURE_STATS = TableSpec(
    "feature_stats",
    {
        "batch_id": pl.String(),
        "config_hash": pl.String(),
        "coefficient": pl.Int64(),
        "mean": pl.Float64(),
        "std": pl.Float64(),
        "min": pl.Float64(),
        "max": pl.Float64(),
        "frames": pl.Int64(),
    },
    split_by="config_hash",
)

DATASET_SPLIT = TableSpec(
    "dataset_split",
    {
        "batch_id": pl.String(),  # always "all"
        "source_batch": pl.String(),  # the collection batch of the recording
        "audio_sha256": pl.String(),
        "pcm_sha256": pl.String(),  # the 16 kHz samples' hash (null: stored before it was)
        "participant": pl.String(),
        "label": pl.Int64(),
        "speaker_grouping": pl.String(),
        "split": pl.String(),
        "assigned_by": pl.String(),  # hash (of the participant) or published (kept from import)
        "split_settings": pl.String(),  # the SplitConfig it was assigned with (JSON)
    },
    # a split written before: the run's settings apply; its audio is known by bytes only
    added=(("split_settings", None), ("pcm_sha256", None)),
)

BATCH_CHECKS = TableSpec(
    "batch_checks",
    {
        "batch_id": pl.String(),
        "asset": pl.String(),
        "check_name": pl.String(),
        "passed": pl.Boolean(),
        "blocking": pl.Boolean(),
        "description": pl.String(),
        "evaluated_at": UTC_TIME,
    },
    split_by="asset",
)

MODEL_VERSIONS = TableSpec(
    "model_versions",
    {
        "batch_id": pl.String(),  # the model version (one part per version)
        "model_version": pl.String(),
        "trained_at": UTC_TIME,
        "best_seed": pl.Int64(),
        "seeds": pl.String(),
        "val_loss": pl.Float64(),
        "val_auroc": pl.Float64(),
        "val_auroc_mean": pl.Float64(),
        "val_auroc_std": pl.Float64(),
        "best_epoch": pl.Int64(),
        "device": pl.String(),
        "feature_config_hash": pl.String(),
        "code_version": pl.String(),
        "mlflow_run_id": pl.String(),
        "registered_version": pl.String(),
        "directory": pl.String(),
    },
)

EVALUATION_METRICS = TableSpec(
    "evaluation_metrics",
    {
        "batch_id": pl.String(),  # the evaluated model version
        "model_version": pl.String(),
        "role": pl.String(),  # candidate or champion (evaluated on the same test set)
        "condition": pl.String(),  # clean or noisy
        "level": pl.String(),  # recording or participant
        "metric": pl.String(),
        "value": pl.Float64(),
        "ci_low": pl.Float64(),
        "ci_high": pl.Float64(),
        "threshold": pl.Float64(),
    },
)

EVALUATION_SUBGROUPS = TableSpec(
    "evaluation_subgroups",
    {
        "batch_id": pl.String(),
        "model_version": pl.String(),
        "subgroup": pl.String(),
        "value": pl.String(),
        "participants": pl.Int64(),
        "positives": pl.Int64(),
        "negatives": pl.Int64(),
        "rows": pl.Int64(),
        "judgeable": pl.Boolean(),
        "accuracy": pl.Float64(),
        "sensitivity": pl.Float64(),
        "specificity": pl.Float64(),
        "precision": pl.Float64(),
        "f1": pl.Float64(),
        "auroc": pl.Float64(),
        "auprc": pl.Float64(),
        "brier": pl.Float64(),
        "ece": pl.Float64(),
    },
)

EVALUATION_COMPARISONS = TableSpec(
    "evaluation_comparisons",
    {
        "batch_id": pl.String(),  # the candidate model version (one part per candidate)
        "model_version": pl.String(),
        "reference_version": pl.String(),  # a model that held the title
        "role": pl.String(),  # champion or past champion
        "participants": pl.Int64(),  # unseen by both models
        "recordings": pl.Int64(),
        "from_splits": pl.String(),  # which split of each model the participants came from
        "candidate_auroc": pl.Float64(),
        "reference_auroc": pl.Float64(),
        "difference": pl.Float64(),  # candidate - reference, same recordings
        "ci_low": pl.Float64(),  # paired participant bootstrap, 95 %
        "ci_high": pl.Float64(),
        "error": pl.String(),  # why the reference could not be compared
    },
)

PROMOTIONS = TableSpec(
    "promotions",
    {
        "batch_id": pl.String(),  # the decision id
        "decided_at": UTC_TIME,
        "candidate_version": pl.String(),
        "candidate_registered": pl.String(),
        "champion_version": pl.String(),  # the champion before the decision
        "passed": pl.Boolean(),
        "reasons": pl.String(),
        "candidate_auroc": pl.Float64(),  # on the candidate's own test set
        "candidate_sensitivity": pl.Float64(),
        "champion_auroc": pl.Float64(),  # on the participants unseen by both (null: none)
        "auroc_difference": pl.Float64(),  # candidate - champion, same participants
        "difference_ci_low": pl.Float64(),
        "difference_ci_high": pl.Float64(),
        "compared_with": pl.String(),  # JSON: every reference and its lower bound
        "test_recordings": pl.Int64(),
        "code_version": pl.String(),
    },
)

BATCH_DRIFT = TableSpec(
    "batch_drift",
    {
        "batch_id": pl.String(),
        "reference_model": pl.String(),  # the champion whose training batches are the reference
        "kind": pl.String(),  # metadata or features
        "feature": pl.String(),
        "statistic": pl.String(),  # psi, ks_d or shift_sd
        "value": pl.Float64(),
        "threshold": pl.Float64(),
        "drifted": pl.Boolean(),
        "detail": pl.String(),
    },
)

# the champion's drift reference (assets ``drift_reference``, ``drift_reference_features``):
# what every batch outside the champion's training data is compared with, declared so that a
# re-run reference batch or a new champion makes the batches' drift results out of date
DRIFT_REFERENCE = TableSpec(
    "drift_reference",
    {
        "reference_model": pl.String(),  # the champion whose training batches these are
        "reference_batch": pl.String(),  # the recording's batch (one of the champion's)
        "participant": pl.String(),
        "label": pl.Int64(),
        "sex": pl.String(),
        "age": pl.Int64(),
        "device": pl.String(),
        "utterance": pl.String(),
        "duration_s": pl.Float64(),
    },
)

DRIFT_REFERENCE_FEATURES = TableSpec(
    "drift_reference_features",
    {
        "reference_model": pl.String(),
        "config_hash": pl.String(),
        "coefficient": pl.Int64(),
        "mean": pl.Float64(),  # pooled over the reference batches' frames
        "std": pl.Float64(),
        "frames": pl.Int64(),
    },
)

UNPARTITIONED = "all"

ALL_TABLES: tuple[TableSpec, ...] = (
    RAW_AUDIO,
    RAW_AUDIO_16K,
    VALIDATED_METADATA,
    QUARANTINE,
    BATCH_CHECKS,
    AUDIO_16K,
    HOSPITAL_NOISE,
    SPECTROGRAM_FEATURES,
    FEATURE_STATS,
    BATCH_DRIFT,
    DRIFT_REFERENCE,
    DRIFT_REFERENCE_FEATURES,
    DATASET_SPLIT,
    MODEL_VERSIONS,
    EVALUATION_METRICS,
    EVALUATION_SUBGROUPS,
    EVALUATION_COMPARISONS,
    PROMOTIONS,
)
