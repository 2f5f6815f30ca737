"""Asset ``evaluation_report``: the model version trained in this run, on the test participants
recorded in its own lineage (clean, and with its own hospital noise), with a blocking check that
none of them was seen in training."""

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.evaluation_metadata import report_metadata, trust_section
from spira_assets.assets.tables import metadata_text, table_out, with_tables
from spira_assets.evaluation.evaluation_report import (
    TestSetAccount,
    evaluation_markdown,
    write_figures,
)
from spira_assets.evaluation.report import write_pair
from spira_assets.ingest.gates import LeftOut, without_blocked
from spira_assets.ml.split import test_set_leaks
from spira_assets.mlflow_session import open_run
from spira_assets.resources import (
    ComputeResource,
    EvaluationSettings,
    MlflowTracking,
    StorageResource,
)
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import (
    AUDIO_16K,
    EVALUATION_METRICS,
    EVALUATION_SUBGROUPS,
    MODEL_VERSIONS,
)

if TYPE_CHECKING:
    import torch

    from spira_assets.evaluation.assessment import Assessment
    from spira_assets.ml.scoring import ModelUnderTest

LEAK_CHECK = "test_set_unseen_in_training"


def model_version_of_run(
    context: dg.AssetExecutionContext, asset: str, lake: Lake | None = None
) -> str:
    """The model version ``asset`` materialized in *this* run: two overlapping training runs
    never judge each other's model. A run without that step (re-evaluating) takes the latest
    materialization, or, in an instance that has none (a new ``DAGSTER_HOME`` over existing
    data), the latest trained version in ``model_versions``; and says so."""
    records = context.instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
    for record in records:
        materialization = record.asset_materialization
        if record.run_id == context.run.run_id and materialization is not None:
            return str(materialization.metadata["model_version"].value)
    if records and records[0].asset_materialization is not None:
        version = str(records[0].asset_materialization.metadata["model_version"].value)
    else:
        trained = lake.read_table(MODEL_VERSIONS) if lake is not None else None
        if trained is None or trained.is_empty():
            raise dg.Failure(f"{asset} has not been materialized yet")
        version = str(trained.sort("trained_at").get_column("model_version")[-1])
    context.log.info(f"{asset} was not materialized in this run: using the latest, {version}")
    return version


def _model_run(tracking: MlflowTracking, run_id: str) -> Any:
    """The model's MLflow run, made active by dagster-mlflow (``open_run``); ended on exit."""
    import mlflow

    open_run(tracking.resolved_uri(), tracking.experiment, run_id)
    return mlflow.active_run()


def _evaluation_report(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    compute: ComputeResource,
    evaluation: EvaluationSettings,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """The model version trained in this run on the test participants of its own recorded
    split, clean and with its own hospital noise (fixed seeds): metrics with
    participant-bootstrap 95% CIs per recording and per participant at the threshold chosen
    on validation, subgroup metrics, figures, a Markdown/HTML report. Comparison with the
    champions is the gate's (``champion``)."""
    from spira_assets.ml.scoring import ModelNotEvaluable, ModelUnderTest

    layout, lake = storage.layout(), storage.lake()
    version = model_version_of_run(context, "spira_model", lake)
    device = compute.torch_device()
    try:
        candidate = ModelUnderTest.load(layout, lake, version)
    except ModelNotEvaluable as error:
        raise dg.Failure(str(error)) from error
    leaks = test_set_leaks(candidate.split)
    if leaks:
        context.log.error(f"model {version} would be tested on what it trained on: {leaks}")
        return _leaking(version, leaks)
    test, left_out = _test_set(context, storage, candidate)
    assessed, subgroups = _assess(candidate, test, storage, device, evaluation)
    metrics, frames = assessed.metrics, assessed.frames
    clean = frames["clean/recording"]
    lake.write_part(EVALUATION_METRICS, version, metrics)
    lake.write_part(EVALUATION_SUBGROUPS, version, EVALUATION_SUBGROUPS.conform(subgroups))
    storage.warehouse().ensure_views()

    reports = layout.local_root / "reports" / version
    figures = write_figures(frames, candidate.threshold, reports)
    trust_text, trust_metadata = trust_section(candidate, assessed, evaluation, reports)
    account = TestSetAccount(
        candidate.split.filter(pl.col("split") == "test").height,
        test.height,
        left_out,
        assessed.excluded,
        clean.height,
        clean.get_column("participant").n_unique(),
    )
    md, html = _write_report(
        candidate, assessed, subgroups, account, evaluation, reports, list(figures), trust_text
    )
    layout.publish(f"reports/{version}")
    _log_to_model_run(mlflow_tracking, str(candidate.lineage["mlflow_run_id"]), reports, metrics)
    metadata = report_metadata(
        candidate,
        mlflow_tracking,
        metrics,
        subgroups,
        assessed,
        account,
        (md, html),
        figures,
        trust_metadata,
    )
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=LEAK_CHECK,
                passed=True,
                description=f"{account.scored_participants} test participants of {version}, "
                "none seen in training",
            )
        ],
        data_version=dg.DataVersion(version),
    )


def _test_set(
    context: dg.AssetExecutionContext, storage: StorageResource, candidate: "ModelUnderTest"
) -> tuple[pl.DataFrame, LeftOut]:
    """The model's recorded test recordings still in the store, without those of batches
    blocked now (named, and logged); a model with none left fails."""
    lake, version = storage.lake(), candidate.version
    test, left_out = without_blocked(lake, candidate.test_recordings(lake.read_table(AUDIO_16K)))
    if left_out:
        context.log.warning(f"left out of the evaluation of {version}: {left_out.describe()}")
    if test.is_empty():
        raise dg.Failure(
            f"model {version} has no test recordings left: add batches or raise test_share"
            + (f" ({left_out.describe()})" if left_out else "")
        )
    return test, left_out


def _assess(
    candidate: "ModelUnderTest",
    test: pl.DataFrame,
    storage: StorageResource,
    device: "torch.device",
    evaluation: EvaluationSettings,
) -> tuple["Assessment", pl.DataFrame]:
    """The core's assessment of the test set (clean, noisy, SPIRA's published noisy test, per
    seed) and its subgroup rows, with the evaluation's settings."""
    from spira_assets.evaluation.assessment import assess
    from spira_assets.evaluation.metrics import subgroup_table
    from spira_assets.ml.inputs import local_shards
    from spira_assets.ml.scoring import SUBGROUPS

    layout, lake, version = storage.layout(), storage.lake(), candidate.version
    root = local_shards(layout, test)
    assessed = assess(
        candidate,
        test,
        root,
        lake,
        layout,
        device,
        evaluation.bootstrap_resamples,
        evaluation.noisy_seed,
        evaluation.min_defined_draws,
    )
    subgroups = subgroup_table(
        assessed.frames["clean/recording"],
        SUBGROUPS,
        candidate.threshold,
        evaluation.min_subgroup_participants,
        evaluation.min_subgroup_per_class,
    ).with_columns(pl.lit(version).alias("batch_id"), pl.lit(version).alias("model_version"))
    return assessed, subgroups


def _write_report(
    candidate: "ModelUnderTest",
    assessed: "Assessment",
    subgroups: pl.DataFrame,
    account: TestSetAccount,
    evaluation: EvaluationSettings,
    reports: Path,
    figures: list[str],
    trust_text: str,
) -> tuple[Path, Path]:
    """The report (composed by the core) written as Markdown and HTML beside its figures."""
    version = candidate.version
    markdown = evaluation_markdown(
        version,
        candidate.train_config.profile,
        account,
        assessed.noise_note,
        candidate.threshold,
        json.loads((candidate.directory / "threshold.json").read_text())["chosen_on"],
        evaluation.bootstrap_resamples,
        evaluation.min_defined_draws,
        candidate.lineage.get("speaker_independence", "guaranteed"),
        trust_text,
        assessed.per_seed,
        assessed.metrics,
        subgroups,
        figures,
    )
    return write_pair(reports, "evaluation", markdown, f"Evaluation {version}")


def _log_to_model_run(
    mlflow_tracking: MlflowTracking, run_id: str, reports: Path, metrics: pl.DataFrame
) -> None:
    """The report folder and every candidate metric (with its interval) logged to the model's
    MLflow run, which is then finished."""
    import mlflow

    logged: dict[str, float] = {}
    for row in metrics.filter(pl.col("role") == "candidate").iter_rows(named=True):
        # per recording as before (test_clean_auroc), per participant with its level;
        # each with its 95% interval where the bootstrap defined one
        level = "" if row["level"] == "recording" else f"{row['level']}_"
        name = f"test_{row['condition']}_{level}{row['metric']}"
        for suffix, key in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
            if row[key] is not None and math.isfinite(row[key]):
                logged[name + suffix] = row[key]
    with _model_run(mlflow_tracking, run_id):
        mlflow.log_artifacts(str(reports), artifact_path="evaluation")
        # one request for all of them (one call each was 1.4 s of a 8.4 s re-evaluation on a
        # SQLite store); MLflow splits a batch above its limit of 1000 metrics itself
        mlflow.log_metrics(logged)
    # Nothing logs to the model's run after this step; finish it here so that a refusal by the
    # promotion gate (a failed blocking check downstream) does not mark training as FAILED.
    if mlflow.active_run() is not None:
        mlflow.end_run()


def _leaking(version: str, leaks: list[str]) -> dg.MaterializeResult:
    """A model whose test set overlaps its training data: not evaluated, its check failed."""
    return dg.MaterializeResult(
        metadata={"model_version": version, "leaks": dg.MetadataValue.json(leaks)},
        check_results=[
            dg.AssetCheckResult(
                check_name=LEAK_CHECK,
                passed=False,
                metadata={"leaks": dg.MetadataValue.json(leaks)},
                description=f"{len(leaks)} test recordings of {version} were seen in training",
            )
        ],
        data_version=dg.DataVersion(f"{version}-leaking"),
    )


@dg.multi_asset(
    name="evaluation_report",
    outs={
        "evaluation_report": dg.AssetOut(
            group_name="evaluation",
            kinds={"pytorch", "mlflow", "duckdb"},
            code_version=versions.EVALUATION,
            description="The model version trained in this run on the test participants of its "
            "own recorded split, clean, noisy and SPIRA's published noisy condition: metrics "
            "with participant-bootstrap 95% CIs, subgroups, figures, a Markdown/HTML report.",
        ),
        "evaluation_metrics": table_out(
            EVALUATION_METRICS,
            "Every metric of every evaluated model version: condition, level, value, 95% CI, "
            "threshold.",
            "evaluation",
            versions.EVALUATION,
            is_required=False,
        ),
        "evaluation_subgroups": table_out(
            EVALUATION_SUBGROUPS,
            "Metrics per subgroup (sex, age band, device, utterance...) of every evaluated "
            "model version, with whether the subgroup is large enough to judge.",
            "evaluation",
            versions.EVALUATION,
            is_required=False,
        ),
    },
    deps=[
        "spira_model",
        "model_versions",
        "audio_16k",
        "spectrogram_features",
        "hospital_noise",
        "batch_checks",
    ],
    check_specs=[
        dg.AssetCheckSpec(
            LEAK_CHECK,
            asset="evaluation_report",
            blocking=True,
            description="No test recording of the model (by participant or by audio content) "
            "is in the model's own training or validation data, as recorded with the model.",
        )
    ],
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    compute: ComputeResource,
    evaluation: EvaluationSettings,
    mlflow_tracking: MlflowTracking,
) -> Iterator[dg.MaterializeResult]:
    """Evaluate the model version trained in this run and record its metric rows."""
    result = _evaluation_report(context, storage, compute, evaluation, mlflow_tracking)
    version, lake = metadata_text(result, "model_version"), storage.lake()
    leaking = any(not check.passed for check in result.check_results or [])
    written = (
        []
        if leaking  # nothing was evaluated: the tables keep no row of this run
        else [
            (spec, lake.read_part(spec, version))
            for spec in (EVALUATION_METRICS, EVALUATION_SUBGROUPS)
        ]
    )
    yield from with_tables(result, "evaluation_report", written)
