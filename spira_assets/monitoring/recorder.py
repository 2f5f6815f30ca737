"""What a scorer calls after each score: one prediction record, appended to the log.

``spira predict`` and the served MLflow pyfunc (REST, and batch scoring through the same
pyfunc with a ``path`` column) call :class:`PredictionRecorder` once per scored file, after the
score is computed. It hashes the audio, pseudonymizes the participant id when one is given,
and summarizes the input: duration and level from a decode of the same bytes with the model's
own resampler, and the per-coefficient mean of the model's feature frames (computed as the
feature store computes them, so ``prediction_drift`` can compare them with ``feature_stats``).

The log is switched by ``SPIRA_PREDICTION_LOG`` (``off`` disables it; the served model logs
when it knows the data root, ``SPIRA_DATA_DIR``) and by ``spira predict --no-log``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spira_assets.audio.decode import decode_16k
from spira_assets.audio.quality import AudioDecodeError, AudioQualityRules
from spira_assets.audio.resample import from_int16
from spira_assets.monitoring.prediction_log import (
    LOG_FOLDER,
    InputSummary,
    PredictionLog,
    PredictionRecord,
    new_prediction_id,
)
from spira_assets.privacy import KEY_ENV, KeySource, Pseudonymizer
from spira_assets.storage.layout import as_upath, is_local

if TYPE_CHECKING:
    from spira_assets.features.extract import FeatureExtractor
    from spira_assets.ml.inference import FileScore, Scorer

LOG_SWITCH_ENV = "SPIRA_PREDICTION_LOG"  # off | on (default: on where the data root is known)
DATA_DIR_ENV = "SPIRA_DATA_DIR"
OFF_VALUES = frozenset({"off", "0", "false", "no"})
logger = logging.getLogger(__name__)


def model_version_of(directory: Path) -> str:
    """The version a model folder was saved as (``summary.json``), else its folder name."""
    summary = directory / "summary.json"
    if summary.exists():
        return str(json.loads(summary.read_text()).get("model_version") or directory.name)
    return directory.name


def log_root_from(environ: Mapping[str, str]) -> str | None:
    """The data root to log under, from the served model's environment (the caller passes
    it: the pyfunc runs in MLflow's scoring server, where no Dagster resource or CLI option
    exists); None when the log is switched off or the data root is unknown."""
    if environ.get(LOG_SWITCH_ENV, "").strip().lower() in OFF_VALUES:
        return None
    return environ.get(DATA_DIR_ENV, "").strip() or None


class PredictionRecorder:
    """Appends one record per scored file for one loaded model (``scorer``)."""

    def __init__(
        self, data_root: str, scorer: Scorer, model_version: str, source: str, key: KeySource
    ) -> None:
        self.root = as_upath(data_root)
        self.key = key
        self.log = PredictionLog(self.root / LOG_FOLDER)
        self.scorer, self.model_version, self.source = scorer, model_version, source
        self._pseudonymizer: Pseudonymizer | None = None
        self._extractor: FeatureExtractor | None = None

    def pseudonym(self, participant_id: str) -> str:
        if self._pseudonymizer is None:
            local = Path(str(self.root)) if is_local(self.root) else None
            self._pseudonymizer = Pseudonymizer(self.key.load(local))
        return self._pseudonymizer.participant(participant_id)

    def summary(self, data: bytes) -> InputSummary | None:
        """The input summary of encoded audio; None when it cannot be decoded (the score's
        error says why)."""
        from spira_assets.features.extract import FeatureExtractor

        try:
            stats, samples = decode_16k(
                data, AudioQualityRules(), self.scorer.features.sample_rate, self.scorer.resampler
            )
        except AudioDecodeError:
            return None
        if self._extractor is None:
            self._extractor = self.scorer.featurizer.extractor or FeatureExtractor(
                self.scorer.features, "cpu"
            )
        try:
            frames = self._extractor.tensors([torch.from_numpy(from_int16(samples))])[0]
        except ValueError:  # shorter than one FFT frame
            return None
        means = frames.double().mean(dim=0).cpu().numpy()
        return InputSummary(
            round(float(stats.duration_s), 4),
            round(float(stats.rms_dbfs), 3),
            round(float(stats.peak_dbfs), 3),
            [round(float(v), 5) for v in means if np.isfinite(v)],
        )

    def record(
        self,
        score: FileScore,
        data: bytes | None,
        participant_id: str | None = None,
        now: datetime | None = None,
    ) -> PredictionRecord:
        now = now or datetime.now(UTC)
        summary = self.summary(data) if data is not None and score.error is None else None
        record = PredictionRecord(
            prediction_id=new_prediction_id(now),
            scored_at=now,
            source=self.source,
            model_version=self.model_version,
            audio_sha256=hashlib.sha256(data).hexdigest() if data is not None else None,
            participant=self.pseudonym(participant_id) if participant_id else None,
            probability=score.probability,
            raw_score=score.raw_score,
            decision=score.decision,
            threshold=float(self.scorer.threshold),
            windows=score.windows,
            error=score.error,
            duration_s=summary.duration_s if summary else None,
            rms_dbfs=summary.rms_dbfs if summary else None,
            peak_dbfs=summary.peak_dbfs if summary else None,
            feature_means=summary.feature_means if summary else None,
        )
        self.log.append(record)
        return record

    def record_row(self, row: dict[str, Any], score: FileScore) -> PredictionRecord:
        """A row of the pyfunc's input (``audio_base64`` or ``path``, optional
        ``participant``) and its score."""
        participant = row.get("participant")
        return self.record(
            score,
            _row_bytes(row),
            str(participant) if _present(participant) else None,
        )


def _present(value: Any) -> bool:
    return value is not None and value == value and str(value) != ""  # NaN != NaN


def _row_bytes(row: dict[str, Any]) -> bytes | None:
    encoded, path = row.get("audio_base64"), row.get("path")
    try:
        if _present(encoded):
            return base64.b64decode(str(encoded), validate=True)
        if _present(path):
            return Path(str(path)).read_bytes()
    except (binascii.Error, ValueError, OSError):
        return None
    return None


def recorder_for(
    scorer: Scorer, directory: Path, source: str, environ: Mapping[str, str]
) -> PredictionRecorder | None:
    """The served model's recorder, or None with the log off (said once in its log)."""
    root = log_root_from(environ)
    if root is None:
        logger.info(
            "prediction log off (%s=off, or %s unset): predictions are not recorded",
            LOG_SWITCH_ENV,
            DATA_DIR_ENV,
        )
        return None
    key = KeySource(
        environ.get(KEY_ENV, ""),
        Path(environ.get("XDG_CONFIG_HOME", "").strip() or Path.home() / ".config"),
    )
    return PredictionRecorder(root, scorer, model_version_of(directory), source, key)
