"""Asset ``evaluation_report``: the model version trained in this run, on the test participants
recorded in its own lineage (clean, and with its own hospital noise), with a blocking check that
none of them was seen in training."""

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.headlines import (
    HEADLINE,
    KEY_METRICS,
    key_columns_first,
    metrics_headline,
    model_links,
)
from spira_assets.assets.links import report_url
from spira_assets.assets.presentation import PLOT, image, plot_evaluation, table_metadata
from spira_assets.assets.tables import metadata_text, table_out, with_tables
from spira_assets.ingest.gates import LeftOut, without_blocked
from spira_assets.ml.report import pivot_metrics, subgroup_summary, table, with_ci, write_pair
from spira_assets.ml.split import test_set_leaks
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


def _blocked_sentence(left_out: LeftOut) -> str:
    if not left_out:
        return ""
    return (
        "Left out, because their batch is blocked now (a blocking ingest check failed after "
        f"the model was trained): {left_out.describe()}. "
    )


def _model_run(tracking: MlflowTracking, run_id: str) -> Any:
    """The model's MLflow run, resumed (or already active when training ran in this process)."""
    import mlflow

    mlflow.set_tracking_uri(tracking.resolved_uri())
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        return active
    if active is not None:
        mlflow.end_run()
    return mlflow.start_run(run_id=run_id)


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
    import mlflow

    from spira_assets.ml.assessment import PUBLISHED, assess
    from spira_assets.ml.evaluation import subgroup_table
    from spira_assets.ml.inputs import local_shards
    from spira_assets.ml.scoring import SUBGROUPS, ModelNotEvaluable, ModelUnderTest
    from spira_assets.plots import evaluation_figure

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
    test, left_out = without_blocked(lake, candidate.test_recordings(lake.read_table(AUDIO_16K)))
    if left_out:
        context.log.warning(f"left out of the evaluation of {version}: {left_out.describe()}")
    recorded = candidate.split.filter(pl.col("split") == "test").height
    if test.is_empty():
        raise dg.Failure(
            f"model {version} has no test recordings left: add batches or raise test_share"
            + (f" ({left_out.describe()})" if left_out else "")
        )
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
    metrics, frames = assessed.metrics, assessed.frames
    clean = frames["clean/recording"]
    subgroups = subgroup_table(
        clean,
        SUBGROUPS,
        candidate.threshold,
        evaluation.min_subgroup_participants,
        evaluation.min_subgroup_per_class,
    ).with_columns(pl.lit(version).alias("batch_id"), pl.lit(version).alias("model_version"))
    lake.write_part(EVALUATION_METRICS, version, metrics)
    lake.write_part(EVALUATION_SUBGROUPS, version, EVALUATION_SUBGROUPS.conform(subgroups))
    storage.warehouse().ensure_views()

    reports = layout.local_root / "reports" / version
    reports.mkdir(parents=True, exist_ok=True)
    figures = {}
    for key, frame in frames.items():
        if key.endswith("/recording"):
            png = evaluation_figure(
                frame.get_column("label").to_numpy(),
                frame.get_column("score").to_numpy(),
                candidate.threshold,
                key,
            )
            (reports / (key.replace("/", "_") + ".png")).write_bytes(png)
            figures[key] = png
    trust_text, trust_metadata = _trust(candidate, assessed, evaluation, reports)
    noise_note = assessed.noise_note
    profile = candidate.train_config.profile
    people = clean.get_column("participant").n_unique()
    speaker = candidate.lineage.get("speaker_independence", "guaranteed")
    markdown = (
        f"# Evaluation of model {version}\n\n"
        f"Training protocol: **{profile}**. Test set: the model's own recorded test split, "
        f"{clean.height} recordings of {people} participants ({recorded} recorded; "
        f"{recorded - test.height - sum(left_out.recordings.values())} no longer in the store; "
        f"{sum(left_out.recordings.values())} of batches blocked now, left out; "
        f"{assessed.excluded} without a window under the model's window rule), none of them in "
        f"its training or validation data (checked). Clean, and {noise_note}. "
        f"{_blocked_sentence(left_out)}Decision threshold {candidate.threshold:.3f} "
        f"({json.loads((candidate.directory / 'threshold.json').read_text())['chosen_on']}); the "
        "published noisy test decides at 0.5, as SPIRA does. 95% CIs resample participants "
        f"({evaluation.bootstrap_resamples} draws); a CI defined in fewer than "
        f"{evaluation.min_defined_draws:.0%} of the draws is marked undefined, with the share. "
        f"Speaker independence: {speaker}.\n\n"
        + trust_text
        + "The comparison with the champion and with every past champion (paired differences on "
        "participants unseen by both) is in the model card written by the promotion gate.\n\n"
        "## SPIRA's published test, per seed\n\nAccuracy per recording at 0.5 (mean of window "
        "probabilities), clean and with SPIRA's noisy-test protocol (1 noise slice on controls, "
        "none on patients, seed 42 x index), for every kept seed and their mean, as Casanova et "
        "al. (2021) report them.\n\n"
        + table(assessed.per_seed)
        + "\n## Metrics\n\n"
        + table(with_ci(metrics.filter(pl.col("role") == "candidate")))
        + "\n## Subgroups (clean, per recording)\n\n"
        + table(subgroup_summary(subgroups))
        + "\n## Figures\n\n"
        + "".join(f"![{k}]({k.replace('/', '_')}.png)\n\n" for k in figures)
    )
    md, html = write_pair(reports, "evaluation", markdown, f"Evaluation {version}")
    layout.publish(f"reports/{version}")
    with _model_run(mlflow_tracking, str(candidate.lineage["mlflow_run_id"])):
        mlflow.log_artifacts(str(reports), artifact_path="evaluation")
        for row in metrics.filter(pl.col("role") == "candidate").iter_rows(named=True):
            # per recording as before (test_clean_auroc), per participant with its level;
            # each with its 95% interval where the bootstrap defined one
            level = "" if row["level"] == "recording" else f"{row['level']}_"
            name = f"test_{row['condition']}_{level}{row['metric']}"
            for suffix, key in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
                if row[key] is not None and math.isfinite(row[key]):
                    mlflow.log_metric(name + suffix, row[key])
    # Nothing logs to the model's run after this step; finish it here so that a refusal by the
    # promotion gate (a failed blocking check downstream) does not mark training as FAILED.
    if mlflow.active_run() is not None:
        mlflow.end_run()
    value = {
        (r["condition"], r["metric"]): r["value"]
        for r in metrics.filter(
            (pl.col("level") == "recording") & (pl.col("role") == "candidate")
        ).iter_rows(named=True)
    }
    metadata: dict[str, Any] = {
        HEADLINE: f"{version}: {metrics_headline(metrics)}",
        "model_version": version,
        **model_links(
            mlflow_tracking.resolved_uri(),
            str(candidate.lineage["mlflow_run_id"]),
            mlflow_tracking.registered_model,
            str(
                json.loads((candidate.directory / "summary.json").read_text()).get(
                    "registered_version", ""
                )
            ),
        ),
        "threshold": round(candidate.threshold, 4),
        "test_recordings": clean.height,
        "test_participants": people,
        "speaker_independence": speaker,
        "test_auroc_clean": round(value[("clean", "auroc")], 4),
        "test_accuracy_clean": round(value[("clean", "accuracy")], 4),
        "test_sensitivity_clean": round(value[("clean", "sensitivity")], 4),
        "report": report_url(version, html.name),
        "report_file": dg.MetadataValue.path(str(html)),
        "report_markdown": dg.MetadataValue.path(str(md)),
        "metrics": table_metadata(
            key_columns_first(
                pivot_metrics(metrics.filter(pl.col("role") == "candidate")),
                ("condition", "level", *KEY_METRICS),
            )
        ),
        "subgroups": table_metadata(subgroup_summary(subgroups)),
        "profile": profile,
        "published_test_per_seed": table_metadata(assessed.per_seed),
        **trust_metadata,
        "recordings_without_window": assessed.excluded,
        "blocked_batches_left_out": dg.MetadataValue.json(left_out.recordings),
    }
    if ("noisy", "auroc") in value:
        metadata["test_auroc_noisy"] = round(value[("noisy", "auroc")], 4)
        metadata["test_accuracy_noisy"] = round(value[("noisy", "accuracy")], 4)
    if (PUBLISHED, "accuracy") in value:
        metadata["test_accuracy_published_noisy"] = round(value[(PUBLISHED, "accuracy")], 4)
    for key, png in figures.items():
        metadata[plot_evaluation(key.split("/")[0])] = image(png, key)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=LEAK_CHECK,
                passed=True,
                description=f"{people} test participants of {version}, none seen in training",
            )
        ],
        data_version=dg.DataVersion(version),
    )


def _trust(
    candidate: Any, assessed: Any, evaluation: EvaluationSettings, reports: Path
) -> tuple[str, dict[str, Any]]:
    """The operating point, calibration (ECE and Brier before and after, with intervals; the
    reliability diagram, written to ``reports``) and seed spread: report text and metadata."""
    from spira_assets.ml.trust_report import (
        calibration_effect,
        operating_point,
        seed_spread,
        trust_markdown,
    )
    from spira_assets.plots import reliability_figure

    clean = assessed.frames["clean/recording"]
    effect = calibration_effect(
        assessed.raw_clean,
        clean,
        evaluation.bootstrap_resamples,
        min_defined=evaluation.min_defined_draws,
    )
    reliability = reliability_figure(
        clean.get_column("label").to_numpy(),
        assessed.raw_clean.get_column("score").to_numpy(),
        clean.get_column("score").to_numpy(),
    )
    (reports / "reliability.png").write_bytes(reliability)
    summary = json.loads((candidate.directory / "summary.json").read_text())
    return trust_markdown(candidate.directory, effect), {
        "operating_point": operating_point(candidate.directory)["statement"],
        "seed_spread": seed_spread(summary),
        "calibration": table_metadata(effect),
        PLOT + "reliability (raw and calibrated, clean test)": image(reliability, "reliability"),
    }


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
