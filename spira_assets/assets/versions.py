"""Dagster code versions of the assets: what a materialization was computed with.

Each is made of the version constants that live beside the code they describe (quality rules,
resampler, validation, feature extraction...). When one changes, Dagster shows the affected
partitions as stale (code version differs from the one their latest materialization recorded)
and ``automation.STALE_BATCH`` re-materializes them. Data versions stay content digests (what
was written), so an unchanged input does not make its downstream stale.
"""

from __future__ import annotations

from spira_assets.audio.quality import QUALITY_RULES_VERSION
from spira_assets.audio.resample import RESAMPLER_VERSION
from spira_assets.features.config import FEATURE_CODE_VERSION
from spira_assets.ingest.schemas import VALIDATION_VERSION
from spira_assets.privacy import PSEUDONYM_SCHEME

INGEST_VERSION = "3"  # 3: 16 kHz sample hash and duplicates by it; every listed file judged
RAW_AUDIO = f"ingest-{INGEST_VERSION}+quality-{QUALITY_RULES_VERSION}+{RESAMPLER_VERSION}"
VALIDATED_METADATA = f"validation-{VALIDATION_VERSION}+{PSEUDONYM_SCHEME}"
QUARANTINE = "quarantine-1"
BATCH_CHECKS = "batch-checks-1"
AUDIO_16K = f"store-2+{RESAMPLER_VERSION}"  # 2: pcm_sha256
HOSPITAL_NOISE = f"noise-1+quality-{QUALITY_RULES_VERSION}+{RESAMPLER_VERSION}"
SPECTROGRAM_FEATURES = f"features-{FEATURE_CODE_VERSION}"
BATCH_DRIFT = "drift-3"  # 3: against the declared drift_reference; never its own training data
DRIFT_REFERENCE = "drift-reference-1"
DATASET_SPLIT = f"split-3+{PSEUDONYM_SCHEME}"  # records its split settings
SPIRA_MODEL = "training-4"  # 4: bf16 where the CPU has it, PCG64 dropout masks (ml/speed.py)
EVALUATION = "evaluation-3"  # bootstrap intervals need 95 % defined draws; blocked batches left out
CHAMPION = "gate-3"  # evidence per class, history agrees with the registry, pool without blocks
SWEEP_TRIAL = "sweep-trial-2"  # inputs and split guard of the training core
