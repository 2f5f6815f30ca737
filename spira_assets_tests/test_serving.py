"""The registered model is an MLflow pyfunc that scores audio: loaded in-process and served by
`mlflow models serve` (MLflow's own scoring server, no code of ours), it gives exactly the
probabilities of `spira predict`."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from upath import UPath

from spira_assets.cli import main
from spira_assets.ml.inference import score_files
from spira_assets.ml.serving import encode_audio
from spira_assets.ml.tracking import REGISTERED_MODEL, champion_model_version
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import VALIDATED_METADATA
from spira_assets_tests.servers import free_port, server

ROOT = Path(__file__).resolve().parents[1]
CHAMPION = f"models:/{REGISTERED_MODEL}@champion"


def _demo_files(root: Path) -> tuple[Path, Path]:
    """One WAV and one Opus (Ogg) recording accepted by ingest."""
    meta = Lake(UPath(root / "lake")).read_table(VALIDATED_METADATA)
    uris = sorted(meta.get_column("raw_uri").to_list())
    wav = next(root / u for u in uris if u.endswith(".wav"))
    opus = next(root / u for u in uris if u.endswith((".ogg", ".opus")))
    return wav, opus


def _predict_json(root: Path, files: list[Path]) -> list[dict[str, object]]:
    result = CliRunner().invoke(
        main, ["predict", "--json", *map(str, files), "--data-dir", str(root)]
    )
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def _corrupt(tmp_path: Path, wav: Path) -> Path:
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(wav.read_bytes()[:200])  # a RIFF header promising far more data
    return bad


def test_pyfunc_in_process_accepts_bytes_and_paths(
    tmp_path: Path, champion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{champion_root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(CHAMPION)
    wav, opus = _demo_files(champion_root)
    frame = pd.DataFrame(
        {
            "path": [str(wav), None, None, None],
            "audio_base64": [None, encode_audio(opus.read_bytes()), "%%not base64%%", None],
        }
    )
    out = model.predict(frame)
    expected = _predict_json(champion_root, [wav, opus])
    assert out["probability"].tolist()[:2] == [e["probability"] for e in expected]
    assert out["decision"].tolist()[:2] == [e["decision"] for e in expected]
    assert out["error"].tolist()[:2] == [None, None]
    assert out["error"][2].startswith("invalid base64")
    assert out["error"][3] == "no input: give audio_base64 or path"
    assert out["probability"][2] is None and out["decision"][3] is None
    signature = model.metadata.signature
    assert signature is not None
    assert [c.name for c in signature.inputs.inputs] == ["path", "audio_base64", "participant"]


def test_a_non_finite_file_or_score_never_becomes_a_decision(
    tmp_path: Path, champion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN >= threshold is False: without a guard, broken audio or a broken model would be
    served as decision 0, "no insufficiency"."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{champion_root / 'mlflow.db'}")
    nan_wav = tmp_path / "nan.wav"
    sf.write(nan_wav, np.full(64_000, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")
    (scored,) = _predict_json(champion_root, [nan_wav])
    assert scored["decision"] is None and str(scored["error"]).startswith("non_finite:")
    served = mlflow.pyfunc.load_model(CHAMPION).predict(
        pd.DataFrame({"audio_base64": [encode_audio(nan_wav.read_bytes())]})
    )
    assert served["decision"][0] is None and served["error"][0].startswith("non_finite:")

    version = champion_model_version(f"sqlite:///{champion_root / 'mlflow.db'}")
    assert version is not None
    broken = shutil.copytree(champion_root / "models" / version, tmp_path / "broken")
    weights = torch.load(broken / "weights.pt", weights_only=True)
    torch.save(
        {k: torch.full_like(v, float("nan")) for k, v in weights.items()}, broken / "weights.pt"
    )
    wav, _ = _demo_files(champion_root)
    (score,) = score_files([wav], broken)
    assert score.decision is None and score.probability is None
    assert score.error is not None and score.error.startswith("non_finite_score:")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mlflow_models_serve_answers_like_spira_predict(
    tmp_path: Path, champion_root: Path
) -> None:
    wav, opus = _demo_files(champion_root)
    corrupt = _corrupt(tmp_path, wav)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{champion_root / 'mlflow.db'}",
        "SPIRA_DATA_DIR": str(champion_root),
        # mlflow starts `uvicorn` by name: the virtual environment's bin must be on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        CHAMPION,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]

    def post(payload: dict[str, object]) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    log = tmp_path / "serve.log"
    with server(command, f"http://127.0.0.1:{port}/ping", env, ROOT, log=log, timeout_s=240):
        rows = [[encode_audio(f.read_bytes())] for f in (wav, opus, corrupt)]
        status, body = post({"dataframe_split": {"columns": ["audio_base64"], "data": rows}})
        bad_status, bad_body = post({"rows": [[1]]})
    assert status == 200, body
    predictions = body["predictions"]
    assert isinstance(predictions, list) and len(predictions) == 3
    expected = _predict_json(champion_root, [wav, opus, corrupt])
    for served, local in zip(predictions[:2], expected[:2], strict=True):
        assert served["probability"] == local["probability"]  # identical, not close
        assert served["decision"] == local["decision"]
        assert served["windows"] == local["windows"] > 0
    assert predictions[2]["probability"] is None and predictions[2]["decision"] is None
    assert predictions[2]["error"] == expected[2]["error"]
    assert "truncated" in str(predictions[2]["error"]) or "undecodable" in str(
        predictions[2]["error"]
    )
    # a payload MLflow cannot read is refused with a reason
    assert bad_status == 400 and "message" in bad_body, (bad_status, bad_body)
