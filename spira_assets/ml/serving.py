"""The MLflow pyfunc of a model version: audio in, probability and decision out.

Every registered model version is this pyfunc, so ``mlflow models serve -m
"models:/<name>@champion"`` answers REST requests with no code of ours beyond the model. Scoring
goes through :class:`~spira_assets.ml.inference.Scorer`, the code behind ``spira predict``:
decode, 16 kHz mono, windows, spectrogram transform, network, mean of the window probabilities,
decision at the threshold recorded with the model.

Input: a table with a column ``audio_base64`` (an encoded audio file, for remote callers) and/or
``path`` (a file readable by the serving process, for batch scoring next to the data), and an
optional ``participant`` (rows with the same value are one person's recordings). Output: one row
per input row with ``probability`` (calibrated), ``decision``, ``windows``, ``threshold``,
``error``, the person's ``participant_probability`` and ``participant_decision`` (the mean of the
person's calibrated probabilities at the threshold; null without a participant) and
``operating_point`` (what the threshold means, as chosen on validation). A
row that cannot be scored (corrupt, empty, silent, clipped or unsupported audio, bad base64, no
input) gets ``probability`` and ``decision`` null and the reason in ``error``: one bad file never
fails the others.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema

from spira_assets.ml.inference import FileScore, ParticipantScore, Scorer, participant_score
from spira_assets.monitoring.recorder import LOG_SWITCH_ENV, recorder_for

MODEL_ARTIFACT = "spira_model"
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "path", required=False),
            ColSpec("string", "audio_base64", required=False),
            ColSpec("string", "participant", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("double", "probability", required=False),
            ColSpec("long", "decision", required=False),
            ColSpec("long", "windows"),
            ColSpec("double", "threshold"),
            ColSpec("string", "error", required=False),
            ColSpec("double", "participant_probability", required=False),
            ColSpec("long", "participant_decision", required=False),
            ColSpec("string", "operating_point"),
        ]
    ),
)
PIP_PACKAGES = ("torch", "torchaudio", "soundfile", "numpy", "polars", "pandas", "mlflow")


def encode_audio(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def example_wav(seconds: float = 4.0, rate: int = 16_000) -> bytes:
    """A short synthetic vowel-like tone (the logged input example; no patient data)."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 150 * t) + 0.1 * np.sin(2 * np.pi * 450 * t)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((signal * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return str(value) != ""


class SpiraAudioModel(PythonModel):
    """Loads the model version folder (weights, configuration, threshold) once."""

    def load_context(self, context: Any) -> None:
        self.scorer = Scorer(Path(context.artifacts[MODEL_ARTIFACT]))
        # the prediction log (monitoring/): on where SPIRA_DATA_DIR is set, unless switched off
        self.recorder = recorder_for(
            self.scorer, Path(context.artifacts[MODEL_ARTIFACT]), "serving", os.environ
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        rows = frame.to_dict(orient="records")
        scores = [self._row(row) for row in rows]
        if self.recorder is not None:  # one log record per scored row, after its score
            for row, score in zip(rows, scores, strict=True):
                self.recorder.record_row(row, score)
        people = self._participants(rows, scores)
        return pd.DataFrame(
            {
                "probability": pd.Series([s.probability for s in scores], dtype="object"),
                "decision": pd.Series([s.decision for s in scores], dtype="object"),
                "windows": [s.windows for s in scores],
                "threshold": [self.scorer.threshold] * len(scores),
                "error": pd.Series([s.error for s in scores], dtype="object"),
                "participant_probability": pd.Series(
                    [p.probability if p else None for p in people], dtype="object"
                ),
                "participant_decision": pd.Series(
                    [p.decision if p else None for p in people], dtype="object"
                ),
                "operating_point": [self.scorer.statement] * len(scores),
            }
        )

    def _participants(
        self, rows: list[dict[str, Any]], scores: list[FileScore]
    ) -> list[ParticipantScore | None]:
        """One decision per person: rows with the same ``participant`` value are one person's
        recordings (the mean of their calibrated probabilities); None without a value."""
        keys = [str(r["participant"]) if _present(r.get("participant")) else None for r in rows]
        groups: dict[str, list[FileScore]] = {}
        for key, score in zip(keys, scores, strict=True):
            if key is not None:
                groups.setdefault(key, []).append(score)
        decided = {k: participant_score(v, self.scorer.threshold) for k, v in groups.items()}
        return [decided[k] if k is not None else None for k in keys]

    def _row(self, row: dict[str, Any]) -> FileScore:
        encoded, path = row.get("audio_base64"), row.get("path")
        if _present(encoded):
            try:
                data = base64.b64decode(str(encoded), validate=True)
            except (binascii.Error, ValueError) as error:
                return FileScore("audio_base64", None, None, 0, f"invalid base64: {error}")
            return self.scorer.audio(data, "audio_base64")
        if _present(path):
            return self.scorer.file(Path(str(path)))
        return FileScore("", None, None, 0, "no input: give audio_base64 or path")


@contextmanager
def prediction_log_off() -> Iterator[None]:
    """No record while the block runs in this process (MLflow scoring the input example when
    a model is logged is no prediction)."""
    saved = os.environ.get(LOG_SWITCH_ENV)
    os.environ[LOG_SWITCH_ENV] = "off"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(LOG_SWITCH_ENV, None)
        else:
            os.environ[LOG_SWITCH_ENV] = saved


def log_pyfunc(
    directory: Path, registered_model: str | None, code_root: Path, requirements: list[str]
) -> Any:
    """Log the model version folder as the pyfunc ``model`` of the active MLflow run and
    register it; returns MLflow's ModelInfo."""
    with prediction_log_off():  # MLflow scores the input example: not a prediction
        return _log_model(directory, registered_model, code_root, requirements)


def _log_model(
    directory: Path, registered_model: str | None, code_root: Path, requirements: list[str]
) -> Any:
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=SpiraAudioModel(),
        artifacts={MODEL_ARTIFACT: str(directory)},
        code_paths=[str(code_root)],
        signature=SIGNATURE,
        input_example=pd.DataFrame({"audio_base64": [encode_audio(example_wav())]}),
        pip_requirements=requirements,
        registered_model_name=registered_model,
    )
