"""Assets ``evaluation_report`` and ``champion``: the candidate on held-out participants (clean
and with fixed-seed hospital noise), the promotion gate, the MLflow alias and the model card."""

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import numpy as np
import polars as pl
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from spira_assets.assets.presentation import image, markdown_table
from spira_assets.assets.training import spira_model
from spira_assets.features.config import FeatureConfig
from spira_assets.ml.artifacts import CONFIG, load_model
from spira_assets.ml.data import WindowSet
from spira_assets.ml.evaluation import aggregate, metric_table, subgroup_table
from spira_assets.ml.inference import THRESHOLD_FILE
from spira_assets.ml.inputs import (
    local_shards,
    noise_bank,
    recordings_with_split,
    windows_by_split,
)
from spira_assets.ml.report import table, with_ci, write_pair
from spira_assets.ml.train import (
    feature_pipeline,
    train_config_from,
    validation_threshold,
    window_scores,
)
from spira_assets.plots import evaluation_figure
from spira_assets.resources import (
    ComputeResource,
    EvaluationSettings,
    MlflowTracking,
    StorageResource,
)
from spira_assets.storage.tables import (
    EVALUATION_METRICS,
    EVALUATION_SUBGROUPS,
    MODEL_VERSIONS,
)

SUBGROUPS = ("sex", "age_band", "device", "utterance", "batch_id")
GATE_CHECK = "promotion_gate"
CHAMPION_ALIAS = "champion"


def latest_version(context: dg.AssetExecutionContext, asset: str) -> str:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{asset} has not been materialized yet")
    return str(event.asset_materialization.metadata["model_version"].value)


def current_champion(tracking: MlflowTracking) -> tuple[str, str] | None:
    """(registered version, model version) holding the ``champion`` alias, if any."""
    client = MlflowClient(tracking.resolved_uri())
    try:
        version = client.get_model_version_by_alias(tracking.registered_model, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return str(version.version), client.get_run(str(version.run_id)).data.params["model_version"]


def _frame(windows: WindowSet, scores: np.ndarray) -> pl.DataFrame:
    rec = windows.recordings.with_columns(
        pl.when(pl.col("age") < 40)
        .then(pl.lit("18-39"))
        .when(pl.col("age") < 60)
        .then(pl.lit("40-59"))
        .otherwise(pl.lit("60+"))
        .alias("age_band")
    )
    take = rec.select("participant", "audio_sha256", "label", *SUBGROUPS)[windows.recording]
    return take.rename({"audio_sha256": "recording"}).with_columns(pl.Series("score", scores))


def _model_inputs(
    directory: Path, recordings: pl.DataFrame, root: Path, bank: Any, device: torch.device
) -> tuple[dict[str, WindowSet], Any]:
    """Validation and test windows and the feature pipeline as the model was trained with them
    (its recorded window length, hop, feature and noise configuration)."""
    config = json.loads((directory / CONFIG).read_text())
    train_config = train_config_from(config["train"])
    sets = windows_by_split(
        recordings, root, train_config.window_s, train_config.step_s, ("validation", "test")
    )
    features = FeatureConfig(**config["features"])
    pipeline = feature_pipeline(features, bank, train_config.augment, config["frames"], device)
    return sets, pipeline


def _evaluate(
    directory: Path,
    sets: dict[str, WindowSet],
    pipeline: Any,
    device: torch.device,
    settings: EvaluationSettings,
    role: str,
    version: str,
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], float]:
    model = load_model(directory).to(device)
    recorded = directory / THRESHOLD_FILE
    if recorded.exists():  # chosen on validation when the model was trained
        threshold = float(json.loads(recorded.read_text())["threshold"])
    else:  # a model version from before thresholds were recorded at training time
        threshold = validation_threshold(model, sets["validation"], pipeline, device, 64)
        recorded.write_text(
            json.dumps({"threshold": threshold, "chosen_on": "validation recordings (Youden's J)"})
        )
    frames: dict[str, pl.DataFrame] = {}
    rows = []
    conditions = {"clean": None, "noisy": settings.noisy_seed}
    for condition, seed in conditions.items():
        if seed is not None and pipeline.config.k_control + pipeline.config.k_patient == 0:
            continue
        windows = _frame(
            sets["test"], window_scores(model, sets["test"], pipeline, device, 64, noisy_seed=seed)
        )
        for level in ("recording", "participant"):
            scored = aggregate(windows, level)
            frames[f"{condition}/{level}"] = scored
            rows.append(
                metric_table(scored, threshold, settings.bootstrap_resamples).with_columns(
                    pl.lit(version).alias("batch_id"),
                    pl.lit(version).alias("model_version"),
                    pl.lit(role).alias("role"),
                    pl.lit(condition).alias("condition"),
                    pl.lit(level).alias("level"),
                    pl.lit(threshold).alias("threshold"),
                )
            )
    return EVALUATION_METRICS.conform(pl.concat(rows)), frames, threshold


def _model_run(tracking: MlflowTracking, run_id: str) -> Any:
    """The model's MLflow run: already active when training ran in this process, else resumed."""
    mlflow.set_tracking_uri(tracking.resolved_uri())
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        return nullcontext()
    if active is not None:
        mlflow.end_run()
    return mlflow.start_run(run_id=run_id)


@dg.asset(deps=[spira_model], group_name="evaluation", kinds={"pytorch", "mlflow", "duckdb"})
def evaluation_report(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    compute: ComputeResource,
    evaluation: EvaluationSettings,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """The candidate (latest ``spira_model``) on the held-out test participants, clean and with
    fixed-seed hospital noise: metrics with participant-bootstrap 95% CIs per recording and per
    participant, threshold chosen on validation, subgroup metrics, images, a Markdown/HTML
    report; the current champion is evaluated on the same test set for the gate."""
    version = latest_version(context, "spira_model")
    layout, lake = storage.layout(), storage.lake()
    device = compute.torch_device()
    recordings = recordings_with_split(lake)
    root = local_shards(layout, recordings)  # the local root (a mirror for object storage)
    bank = noise_bank(lake, layout, device)
    candidate_dir = layout.fetch(f"models/{version}")
    sets, pipeline = _model_inputs(candidate_dir, recordings, root, bank, device)
    if len(sets["test"]) == 0:
        raise dg.Failure("the test split is empty: add batches or raise test_share")
    metrics, frames, threshold = _evaluate(
        candidate_dir, sets, pipeline, device, evaluation, "candidate", version
    )
    champion = current_champion(mlflow_tracking)
    champion_dir = layout.fetch_if_present(f"models/{champion[1]}") if champion else None
    if champion is not None and champion[1] != version and champion_dir and champion_dir.exists():
        # the champion sees the same recordings through its own window and feature settings
        champion_sets, champion_pipeline = _model_inputs(
            champion_dir, recordings, root, bank, device
        )
        champion_metrics, _, _ = _evaluate(
            champion_dir, champion_sets, champion_pipeline, device, evaluation, "champion", version
        )
        metrics = pl.concat([metrics, champion_metrics])
    clean = frames["clean/recording"]
    subgroups = subgroup_table(
        clean,
        SUBGROUPS,
        threshold,
        evaluation.min_subgroup_participants,
        evaluation.min_subgroup_per_class,
    ).with_columns(pl.lit(version).alias("batch_id"), pl.lit(version).alias("model_version"))
    lake.write_part(EVALUATION_METRICS, version, metrics)
    lake.write_part(EVALUATION_SUBGROUPS, version, EVALUATION_SUBGROUPS.conform(subgroups))
    storage.warehouse().ensure_views()

    reports = root / "reports" / version
    reports.mkdir(parents=True, exist_ok=True)
    figures = {}
    for key, frame in frames.items():
        if key.endswith("/recording"):
            png = evaluation_figure(
                frame.get_column("label").to_numpy(),
                frame.get_column("score").to_numpy(),
                threshold,
                key,
            )
            name = key.replace("/", "_") + ".png"
            (reports / name).write_bytes(png)
            figures[key] = png
    candidate = metrics.filter(pl.col("role") == "candidate")
    markdown = (
        f"# Evaluation of model {version}\n\n"
        f"Test set: {clean.height} recordings of {clean.get_column('participant').n_unique()} "
        f"participants never seen in training. Decision threshold {threshold:.3f}, chosen on "
        f"validation recordings (Youden's J). 95% CIs resample participants "
        f"({evaluation.bootstrap_resamples} draws).\n\n## Metrics\n\n"
        + table(with_ci(metrics.filter(pl.col("role") == "candidate")))
        + "\n## Subgroups (clean, per recording)\n\n"
        + table(
            subgroups.select(
                "subgroup",
                "value",
                "participants",
                "positives",
                "negatives",
                "judgeable",
                "accuracy",
                "sensitivity",
                "specificity",
                "auroc",
            )
        )
        + "\n## Figures\n\n"
        + "".join(f"![{k}]({k.replace('/', '_')}.png)\n\n" for k in figures)
    )
    md, html = write_pair(reports, "evaluation", markdown, f"Evaluation {version}")
    layout.publish(f"reports/{version}")
    runs = lake.read_part(MODEL_VERSIONS, version)
    with _model_run(mlflow_tracking, runs.get_column("mlflow_run_id")[0]):
        mlflow.log_artifacts(str(reports), artifact_path="evaluation")
        for row in candidate.filter(pl.col("level") == "recording").iter_rows(named=True):
            mlflow.log_metric(f"test_{row['condition']}_{row['metric']}", row["value"])
    # Nothing logs to the model's run after this step; finish it here so that a refusal by the
    # promotion gate (a failed blocking check downstream) does not mark training as FAILED.
    if mlflow.active_run() is not None:
        mlflow.end_run()
    value = {
        (r["condition"], r["metric"]): r["value"]
        for r in candidate.filter(pl.col("level") == "recording").iter_rows(named=True)
    }
    metadata: dict[str, Any] = {
        "model_version": version,
        "threshold": round(threshold, 4),
        "test_recordings": clean.height,
        "test_auroc_clean": round(value[("clean", "auroc")], 4),
        "test_accuracy_clean": round(value[("clean", "accuracy")], 4),
        "test_sensitivity_clean": round(value[("clean", "sensitivity")], 4),
        "report": dg.MetadataValue.path(str(html)),
        "report_markdown": dg.MetadataValue.path(str(md)),
        "metrics": markdown_table(with_ci(candidate)),
        "champion_compared": champion[1] if champion else "none",
    }
    if ("noisy", "auroc") in value:
        metadata["test_auroc_noisy"] = round(value[("noisy", "auroc")], 4)
        metadata["test_accuracy_noisy"] = round(value[("noisy", "accuracy")], 4)
    for key, png in figures.items():
        metadata[f"figure_{key.split('/')[0]}"] = image(png, key)
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))
