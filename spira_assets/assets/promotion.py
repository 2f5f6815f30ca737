"""Asset ``champion``: the promotion gate (a blocking check), the MLflow ``champion`` alias,
the ``promotions`` audit table and the model card."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from spira_assets.assets import versions
from spira_assets.assets.audit import with_audit_bundle
from spira_assets.assets.evaluation import model_version_of_run
from spira_assets.assets.headlines import (
    GATE_VERDICT,
    HEADLINE,
    gate_verdict,
    key_columns_first,
    metrics_headline,
    model_links,
)
from spira_assets.assets.links import report_url
from spira_assets.assets.presentation import table_metadata
from spira_assets.assets.tables import metadata_text, table_out, with_tables
from spira_assets.ingest.gates import without_blocked
from spira_assets.ml.champions import resolve_champion
from spira_assets.ml.gate import comparison_shortfall, decide
from spira_assets.ml.lineage import code_version
from spira_assets.ml.model_card import criteria_table, figures_and_links, model_card
from spira_assets.ml.promotion_history import promotion_record
from spira_assets.ml.report import write_pair
from spira_assets.ml.reports_index import write_reports_index
from spira_assets.ml.split import test_set_leaks
from spira_assets.ml.tracking import log_files, mark_promoted
from spira_assets.resources import (
    ComputeResource,
    EvaluationSettings,
    MlflowTracking,
    StorageResource,
)
from spira_assets.storage.tables import (
    AUDIO_16K,
    EVALUATION_COMPARISONS,
    EVALUATION_METRICS,
    EVALUATION_SUBGROUPS,
    PROMOTIONS,
)

if TYPE_CHECKING:
    from spira_assets.ml.comparison import Comparison
    from spira_assets.ml.gate import GateConfig, GateDecision
    from spira_assets.storage.lake import Lake

GATE_CHECK = "promotion_gate"


def _clean(metrics: pl.DataFrame) -> dict[str, float]:
    rows = metrics.filter(
        (pl.col("role") == "candidate")
        & (pl.col("condition") == "clean")
        & (pl.col("level") == "recording")
    )
    return dict(rows.select("metric", "value").rows())


def _compared_with(comparisons: "list[Comparison]", gate: "GateConfig") -> str:
    return json.dumps(
        [
            {
                "reference": c.reference_version,
                "role": c.role,
                "participants": c.participants,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "patients": c.patients,
                "controls": c.controls,
                "draws_defined": c.draws_defined,
                "error": c.error or comparison_shortfall(c, gate),
            }
            for c in comparisons
        ]
    )


def version_to_gate(context: dg.AssetExecutionContext, lake: "Lake") -> str:
    """The model version this run gates: the evaluated one, which must be the version
    ``spira_model`` produced (in this run, or its latest): a run that trains without
    evaluating never gates the previously evaluated model in its place."""
    evaluated = model_version_of_run(context, "evaluation_report", lake)
    trained = model_version_of_run(context, "spira_model", lake)
    if evaluated != trained:
        raise dg.Failure(
            f"spira_model's model is {trained} but the latest evaluation_report evaluated "
            f"{evaluated}: a run that gates a model must have evaluated that model; "
            "materialize evaluation_report (with champion) for it"
        )
    return evaluated


def _audit_row(
    decision_id: str,
    now: datetime,
    version: str,
    registered: str,
    champion: str | None,
    decision: "GateDecision",
    metrics: pl.DataFrame,
) -> dict[str, Any]:
    return {
        "batch_id": decision_id,
        "decided_at": now,
        "candidate_version": version,
        "candidate_registered": registered,
        "champion_version": champion,
        "passed": decision.passed,
        "candidate_auroc": _clean(metrics).get("auroc"),
        "candidate_sensitivity": _clean(metrics).get("sensitivity"),
        "code_version": code_version(),
    }


def _card_beside_run(
    context: dg.AssetExecutionContext, uri: str, run_id: str, paths: list[Path]
) -> None:
    """The model card beside the model's MLflow run. Where the tracking store cannot answer
    (the gate has already recorded that as its reason) the card stays in the reports only."""
    if not run_id:
        return
    try:
        log_files(uri, run_id, paths, "model_card")
    except Exception as error:  # MLflow raises its own and its store's (SQLAlchemy) errors
        context.log.warning(f"model card not logged to MLflow run {run_id}: {error}")


def _champion(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    compute: ComputeResource,
    evaluation: EvaluationSettings,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """Decide whether the model evaluated in this run becomes champion: floors on its own test
    set, non-inferiority against the champion and every past champion (each scored now, on the
    participants neither saw), subgroup floors and gaps. On pass the registered model's
    ``champion`` alias moves; every decision is appended to ``promotions``; a model card with
    the paired differences and every criterion is written."""
    from spira_assets.ml.artifacts import SUMMARY
    from spira_assets.ml.comparison import compare, comparisons_frame
    from spira_assets.ml.inputs import local_shards, recordings_with_split, with_split
    from spira_assets.ml.scoring import ModelNotEvaluable, ModelUnderTest
    from spira_assets.ml.trust_report import operating_point, trust_markdown

    layout, lake = storage.layout(), storage.lake()
    version = version_to_gate(context, lake)
    device = compute.torch_device()
    try:
        candidate = ModelUnderTest.load(layout, lake, version)
    except ModelNotEvaluable as error:
        raise dg.Failure(str(error)) from error
    if not lake.has_part(EVALUATION_METRICS, version):
        raise dg.Failure(f"model {version} has no evaluation yet: materialize evaluation_report")
    metrics = lake.read_part(EVALUATION_METRICS, version)
    subgroups = lake.read_part(EVALUATION_SUBGROUPS, version)
    uri = mlflow_tracking.resolved_uri()
    state = resolve_champion(lake, uri, mlflow_tracking.registered_model)
    pool, left_out = without_blocked(lake, recordings_with_split(lake))
    if left_out:
        context.log.warning(f"left out of the comparisons: {left_out.describe()}")
    root = local_shards(layout, pool)
    comparisons = []
    for reference, role in state.references(version):
        context.log.info(f"comparing {version} with {role} {reference}")
        comparisons.append(
            compare(
                candidate,
                reference,
                role,
                pool,
                root,
                layout,
                lake,
                device,
                evaluation.bootstrap_resamples,
                evaluation.min_defined_draws,
            )
        )
    gate = evaluation.gate()
    decision = decide(_clean(metrics), comparisons, subgroups, gate, state.error)
    leaks = test_set_leaks(candidate.split)
    if leaks:  # evaluation_report's check blocks its own run; this blocks every other
        decision.passed = False
        decision.reasons.append(f"the model's test set overlaps its training data: {leaks[:5]}")
    summary = json.loads((candidate.directory / SUMMARY).read_text())
    registered = str(summary.get("registered_version", ""))
    now = datetime.now(UTC)
    already = state.current == version
    head = next((c for c in comparisons if c.role == "champion"), None)
    decision_id = f"{now:%Y%m%dT%H%M%S%fZ}-{version[:8]}"
    test, _ = without_blocked(lake, candidate.test_recordings(lake.read_table(AUDIO_16K)))
    lake.write_part(EVALUATION_COMPARISONS, version, comparisons_frame(version, comparisons, gate))
    row = _audit_row(decision_id, now, version, registered, state.current, decision, metrics)
    row |= {
        "reasons": json.dumps(decision.reasons or (["already champion"] if already else [])),
        "champion_auroc": head.reference_auroc if head and not head.error else None,
        "auroc_difference": head.difference if head and not head.error else None,
        "difference_ci_low": head.ci_low if head and not head.error else None,
        "difference_ci_high": head.ci_high if head and not head.error else None,
        "compared_with": _compared_with(comparisons, gate),
        "test_recordings": test.height,
    }
    lake.write_part(PROMOTIONS, decision_id, pl.DataFrame([row], schema=PROMOTIONS.schema))
    storage.warehouse().ensure_views()
    # the audit row first: if tagging or moving the alias fails, the next gate sees the
    # disagreement; the tag is the registry's own record of the promotion (restorable history)
    if decision.passed and not already:
        mark_promoted(uri, registered, promotion_record(row), mlflow_tracking.registered_model)
    holder = version if decision.passed else (state.current or "none")

    recordings = with_split(lake.read_table(AUDIO_16K), candidate.split)
    composition = (
        recordings.group_by("split", "label")
        .agg(
            pl.col("participant").n_unique().alias("participants"),
            pl.len().alias("recordings"),
        )
        .sort("split", "label")
    )
    by_batch = recordings.group_by("batch_id", "split").len("recordings").sort("batch_id", "split")
    card = model_card(
        version,
        candidate.lineage,
        metrics,
        subgroups,
        composition,
        by_batch,
        decision,
        comparisons,
        state.current or "none (first model)",
        gate,
        trust_markdown(candidate.directory, None),
    )
    reports = layout.local_root / "reports" / version
    run_id = str(candidate.lineage.get("mlflow_run_id", ""))
    links = model_links(uri, run_id, mlflow_tracking.registered_model, registered)
    card += figures_and_links(
        reports,
        {"evaluation report": "evaluation.html", "every report (champion marked)": "../index.html"}
        | {
            key.replace("_", " "): str(getattr(value, "url", value)) for key, value in links.items()
        },
    )
    md, html = write_pair(reports, "model_card", card, f"Model card {version}")
    layout.publish(f"reports/{version}")
    _card_beside_run(context, uri, str(candidate.lineage.get("mlflow_run_id", "")), [md, html])
    history = lake.read_table(PROMOTIONS).sort("decided_at")
    write_reports_index(reports.parent, history, None if holder == "none" else holder)
    layout.publish("reports/index.html")
    verdict = gate_verdict(version, decision, comparisons, state.current, gate)
    metadata: dict[str, Any] = {
        HEADLINE: f"{verdict.split(':')[0]} {version}: {metrics_headline(metrics)}",
        GATE_VERDICT: verdict,
        "candidate_version": version,
        "decision_id": decision_id,
        "decision": "passed" if decision.passed else "failed",
        "reasons": "; ".join(decision.reasons) or "none: every criterion met",
        "champion_version": holder,
        "compared_with": f"{len(comparisons)} model(s) that held the title"
        if comparisons
        else "none: first champion, non-inferiority did not apply",
        "evaluation_report": report_url(version, "evaluation.html"),
        **links,
        "operating_point": operating_point(candidate.directory)["statement"],
        "blocked_batches_left_out": dg.MetadataValue.json(left_out.recordings),
        "model_card": report_url(version, html.name),
        "model_card_file": dg.MetadataValue.path(str(html)),
        "model_card_markdown": dg.MetadataValue.path(str(md)),
        "gate_criteria": table_metadata(
            key_columns_first(criteria_table(decision), ("criterion", "passed"))
        ),
        "promotion_history": table_metadata(
            history.select(  # what was decided first: the UI cuts the right edge
                "candidate_version",
                "passed",
                "candidate_auroc",
                "auroc_difference",
                "difference_ci_low",
                "reasons",
                "decided_at",
                "champion_version",
            )
        ),
    }
    check_metadata: dict[str, Any] = {"candidate_version": version}
    if _clean(metrics).get("auroc") is not None:
        check_metadata["candidate_auroc"] = round(float(_clean(metrics)["auroc"]), 4)
    if head is not None and not head.error:  # no champion: no value at all, not a sentinel
        check_metadata |= {
            name: round(float(value), 4)
            for name, value in (
                ("auroc_difference_vs_champion", head.difference),
                ("difference_ci_low", head.ci_low),
                ("difference_ci_high", head.ci_high),
            )
            if value is not None
        }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=GATE_CHECK,
                passed=decision.passed,
                description=verdict,
                metadata=check_metadata,
            )
        ],
        data_version=dg.DataVersion(holder),
    )


@dg.multi_asset(
    name="champion",
    outs={
        "champion": dg.AssetOut(
            group_name="evaluation",
            kinds={"mlflow", "duckdb"},
            code_version=versions.CHAMPION,
            description="The promotion gate's decision for the model evaluated in this run: "
            "floors on its own test set, non-inferiority against the champion and every past "
            "champion on participants unseen by both, subgroup floors; the model card.",
        ),
        "evaluation_comparisons": table_out(
            EVALUATION_COMPARISONS,
            "Paired comparisons of each candidate with every model that held the title, on the "
            "participants neither saw (AUROC difference, 95% CI).",
            "evaluation",
            versions.CHAMPION,
        ),
        "promotions": table_out(
            PROMOTIONS,
            "The table of every gate decision, all models (champion shows this run's "
            "decision and model card): the audit trail of which model served when, and why.",
            "evaluation",
            versions.CHAMPION,
        ),
    },
    deps=[
        "evaluation_report",
        "evaluation_metrics",
        "evaluation_subgroups",
        "spira_model",
        "model_versions",
        "dataset_split",
        "audio_16k",
        "spectrogram_features",
        "hospital_noise",
        "batch_checks",
    ],
    check_specs=[
        dg.AssetCheckSpec(
            GATE_CHECK,
            asset="champion",
            blocking=True,
            description="The candidate meets the floors on its own test set, is non-inferior "
            "(paired bootstrap, lower 95% bound above -margin) to the champion and to every past "
            "champion on participants unseen by both, and no judgeable subgroup falls short. A "
            "champion that cannot be evaluated fails the gate.",
        )
    ],
)
def champion(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    compute: ComputeResource,
    evaluation: EvaluationSettings,
    mlflow_tracking: MlflowTracking,
) -> Iterator[dg.MaterializeResult]:
    """Decide on the model evaluated in this run and record the comparison and decision rows."""
    result = _champion(context, storage, compute, evaluation, mlflow_tracking)
    result = with_audit_bundle(context, storage, result)  # a promoted model's audit bundle
    lake = storage.lake()
    version, decision = (
        metadata_text(result, "candidate_version"),
        metadata_text(result, "decision_id"),
    )
    yield from with_tables(
        result,
        "champion",
        [
            (EVALUATION_COMPARISONS, lake.read_part(EVALUATION_COMPARISONS, version)),
            (PROMOTIONS, lake.read_part(PROMOTIONS, decision)),
        ],
    )
