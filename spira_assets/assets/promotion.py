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
    headline,
    key_columns_first,
    model_links,
    short_lines,
)
from spira_assets.assets.links import report_url
from spira_assets.assets.presentation import table_metadata
from spira_assets.assets.tables import metadata_text, table_out, with_tables
from spira_assets.evaluation.champions import resolve_champion
from spira_assets.evaluation.model_card import compose_model_card, criteria_table
from spira_assets.evaluation.promotion import GateOutcome, audit_row, clean_metrics, judge_candidate
from spira_assets.evaluation.promotion_history import promotion_record
from spira_assets.evaluation.report import write_pair
from spira_assets.evaluation.reports_index import write_reports_index
from spira_assets.ingest.gates import without_blocked
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
    import torch

    from spira_assets.evaluation.comparison import Comparison
    from spira_assets.evaluation.gate import GateConfig
    from spira_assets.ingest.gates import LeftOut
    from spira_assets.ml.scoring import ModelUnderTest
    from spira_assets.storage.lake import Lake

GATE_CHECK = "promotion_gate"


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
    from spira_assets.evaluation.comparison import comparisons_frame
    from spira_assets.ml.artifacts import SUMMARY
    from spira_assets.ml.scoring import ModelNotEvaluable, ModelUnderTest

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
    comparisons, left_out = _compare_with_title_holders(
        context, storage, candidate, state.references(version), device, evaluation
    )
    gate = evaluation.gate()
    outcome = judge_candidate(
        version, metrics, subgroups, comparisons, gate, state.current, state.error, candidate.split
    )
    summary = json.loads((candidate.directory / SUMMARY).read_text())
    registered = str(summary.get("registered_version", ""))
    test, _ = without_blocked(lake, candidate.test_recordings(lake.read_table(AUDIO_16K)))
    lake.write_part(EVALUATION_COMPARISONS, version, comparisons_frame(version, comparisons, gate))
    row = audit_row(outcome, datetime.now(UTC), registered, metrics, gate, test.height)
    lake.write_part(PROMOTIONS, row["batch_id"], pl.DataFrame([row], schema=PROMOTIONS.schema))
    storage.warehouse().ensure_views()
    # the audit row first: if tagging or moving the alias fails, the next gate sees the
    # disagreement; the tag is the registry's own record of the promotion (restorable history)
    if outcome.decision.passed and not outcome.already:
        mark_promoted(uri, registered, promotion_record(row), mlflow_tracking.registered_model)

    run_id = str(candidate.lineage.get("mlflow_run_id", ""))
    links = model_links(uri, run_id, mlflow_tracking.registered_model, registered)
    card = _write_model_card(
        context, storage, candidate, outcome, metrics, subgroups, gate, uri, links
    )
    history = lake.read_table(PROMOTIONS).sort("decided_at")
    holder = None if outcome.holder == "none" else outcome.holder
    write_reports_index(layout.local_root / "reports", history, holder)
    layout.publish("reports/index.html")
    verdict = gate_verdict(version, outcome.decision, comparisons, state.current, gate)
    return dg.MaterializeResult(
        metadata=_gate_metadata(
            outcome,
            verdict,
            metrics,
            row["batch_id"],
            left_out,
            links,
            candidate.directory,
            card,
            history,
        ),
        check_results=[_gate_check(outcome, verdict, metrics)],
        data_version=dg.DataVersion(outcome.holder),
    )


def _write_model_card(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    candidate: "ModelUnderTest",
    outcome: GateOutcome,
    metrics: pl.DataFrame,
    subgroups: pl.DataFrame,
    gate: "GateConfig",
    uri: str,
    links: dict[str, Any],
) -> tuple[Path, Path]:
    """The model card (composed by the core) written beside the evaluation report, published,
    and logged to the model's MLflow run where the store answers: its Markdown and HTML."""
    from spira_assets.evaluation.trust_report import trust_markdown
    from spira_assets.ml.inputs import with_split

    layout, lake = storage.layout(), storage.lake()
    version = outcome.version
    reports = layout.local_root / "reports" / version
    card = compose_model_card(
        version,
        candidate.lineage,
        metrics,
        subgroups,
        with_split(lake.read_table(AUDIO_16K), candidate.split),
        outcome.decision,
        outcome.comparisons,
        outcome.champion or "none (first model)",
        gate,
        trust_markdown(candidate.directory, None),
        reports,
        {key.replace("_", " "): str(getattr(value, "url", value)) for key, value in links.items()},
    )
    md, html = write_pair(reports, "model_card", card, f"Model card {version}")
    layout.publish(f"reports/{version}")
    _card_beside_run(context, uri, str(candidate.lineage.get("mlflow_run_id", "")), [md, html])
    return md, html


def _compare_with_title_holders(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    candidate: "ModelUnderTest",
    references: list[tuple[str, str]],
    device: "torch.device",
    evaluation: EvaluationSettings,
) -> "tuple[list[Comparison], LeftOut]":
    """The candidate against every model that held the title (``references``: version, role),
    each scored now on the recordings of open batches whose participants neither saw."""
    from spira_assets.evaluation.comparison import compare
    from spira_assets.ml.inputs import local_shards, recordings_with_split

    layout, lake = storage.layout(), storage.lake()
    pool, left_out = without_blocked(lake, recordings_with_split(lake))
    if left_out:
        context.log.warning(f"left out of the comparisons: {left_out.describe()}")
    root = local_shards(layout, pool)
    comparisons = []
    for reference, role in references:
        context.log.info(f"comparing {candidate.version} with {role} {reference}")
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
    return comparisons, left_out


def _gate_metadata(
    outcome: GateOutcome,
    verdict: str,
    metrics: pl.DataFrame,
    decision_id: str,
    left_out: "LeftOut",
    links: dict[str, Any],
    model_directory: Path,
    card: tuple[Path, Path],
    history: pl.DataFrame,
) -> dict[str, Any]:
    """What the UI shows of a decision: the verdict and headline figures, then links to the
    reports and the model, the criteria and the promotion history."""
    from spira_assets.evaluation.trust_report import operating_point

    version, decision = outcome.version, outcome.decision
    md, html = card
    return {
        HEADLINE: headline(f"{verdict.split(':')[0]} {version}", metrics),
        GATE_VERDICT: short_lines(verdict),
        "candidate_version": version,
        "decision_id": decision_id,
        "decision": "passed" if decision.passed else "failed",
        "reasons": "; ".join(decision.reasons) or "none: every criterion met",
        "champion_version": outcome.holder,
        "compared_with": f"{len(outcome.comparisons)} model(s) that held the title"
        if outcome.comparisons
        else "none: first champion, non-inferiority did not apply",
        "evaluation_report": report_url(version, "evaluation.html"),
        **links,
        "operating_point": operating_point(model_directory)["statement"],
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


def _gate_check(outcome: GateOutcome, verdict: str, metrics: pl.DataFrame) -> dg.AssetCheckResult:
    """The blocking ``promotion_gate`` check, with the figures it was decided on (no champion:
    no difference at all, not a sentinel)."""
    check_metadata: dict[str, Any] = {"candidate_version": outcome.version}
    clean = clean_metrics(metrics)
    if clean.get("auroc") is not None:
        check_metadata["candidate_auroc"] = round(float(clean["auroc"]), 4)
    head = outcome.head
    if head is not None and not head.error:
        check_metadata |= {
            name: round(float(value), 4)
            for name, value in (
                ("auroc_difference_vs_champion", head.difference),
                ("difference_ci_low", head.ci_low),
                ("difference_ci_high", head.ci_high),
            )
            if value is not None
        }
    return dg.AssetCheckResult(
        check_name=GATE_CHECK,
        passed=outcome.decision.passed,
        description=verdict,
        metadata=check_metadata,
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
