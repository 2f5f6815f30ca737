"""The one Definitions object of the code location (loaded by workspace.yaml)."""

import dagster as dg

from spira_assets.assets.evaluation import evaluation_report
from spira_assets.assets.features import spectrogram_features
from spira_assets.assets.ingest_tables import batch_checks, quarantine
from spira_assets.assets.landing import landing_batch, landing_noise
from spira_assets.assets.live import live_performance, prediction_drift
from spira_assets.assets.monitoring import batch_drift, drift_reference
from spira_assets.assets.predictions import (
    MonitoringSettings,
    landing_outcomes,
    outcomes,
    prediction_log,
    predictions,
)
from spira_assets.assets.promotion import champion
from spira_assets.assets.raw_audio import raw_audio
from spira_assets.assets.split import dataset_split
from spira_assets.assets.sweep import sweep_trial, sweep_trials_job
from spira_assets.assets.training import spira_model
from spira_assets.assets.validated_metadata import validated_metadata
from spira_assets.assets.waveforms import audio_16k, hospital_noise
from spira_assets.automation.conditions import stale_batches_sensor, with_conditions
from spira_assets.automation.jobs import (
    DEPLOYMENT,
    daily_predictions_job,
    prepare_noise_job,
    process_batch_job,
    record_outcomes_job,
    train_model_job,
    weekly_live_job,
)
from spira_assets.automation.schedules import (
    daily_predictions_schedule,
    nightly_reconcile,
    weekly_live_schedule,
    weekly_retraining,
)
from spira_assets.automation.sensors import (
    landing_zone_sensor,
    live_after_outcomes,
    noise_folder_sensor,
    outcomes_sensor,
    retraining_sensor,
)
from spira_assets.environment import pseudonym_key_setting
from spira_assets.privacy import refuse_unusable_key
from spira_assets.resources import (
    ComputeResource,
    DriftSettings,
    EvaluationSettings,
    FeatureSettings,
    IngestPolicy,
    MlflowTracking,
    PseudonymResource,
    RetrainingPolicy,
    StorageResource,
    TrainingSettings,
)

# a deployment's key (an example's placeholder, a short one) stops the code location here,
# before a sensor or a run can pseudonymize anything with it
refuse_unusable_key(pseudonym_key_setting())

_STORAGE = StorageResource()

RESOURCES = {
    "storage": _STORAGE,
    "pseudonyms": PseudonymResource(),
    "policy": IngestPolicy(decode_workers=DEPLOYMENT.decode_workers),
    "features": FeatureSettings(),
    "compute": ComputeResource(),
    "training": TrainingSettings(),
    "evaluation": EvaluationSettings(),
    "drift": DriftSettings(),
    "retraining": RetrainingPolicy(),
    "mlflow_tracking": MlflowTracking(storage=_STORAGE),
    "monitoring": MonitoringSettings(),
}

defs = dg.Definitions(
    assets=with_conditions(
        [
            landing_batch,
            landing_noise,
            raw_audio,
            validated_metadata,
            quarantine,
            batch_checks,
            audio_16k,
            spectrogram_features,
            batch_drift,
            hospital_noise,
            dataset_split,
            spira_model,
            evaluation_report,
            champion,
            drift_reference,
            sweep_trial,
            prediction_log,
            landing_outcomes,
            predictions,
            outcomes,
            live_performance,
            prediction_drift,
        ]
    ),
    jobs=[
        process_batch_job,
        prepare_noise_job,
        train_model_job,
        sweep_trials_job,
        record_outcomes_job,
        daily_predictions_job,
        weekly_live_job,
    ],
    sensors=[
        landing_zone_sensor,
        noise_folder_sensor,
        retraining_sensor,
        stale_batches_sensor,
        outcomes_sensor,
        live_after_outcomes,
    ],
    schedules=[
        nightly_reconcile,
        weekly_retraining,
        daily_predictions_schedule,
        weekly_live_schedule,
    ],
    resources=RESOURCES,
)
