"""Asset ``champion``: the promotion gate (a blocking check), the MLflow ``champion`` alias,
the ``promotions`` audit table and the model card."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from mlflow.tracking import MlflowClient

from spira_assets.assets.evaluation import (
    CHAMPION_ALIAS,
    GATE_CHECK,
    current_champion,
    evaluation_report,
    latest_version,
)
from spira_assets.assets.presentation import markdown_table
from spira_assets.ml.gate import GateDecision, decide
from spira_assets.ml.inputs import recordings_with_split
from spira_assets.ml.lineage import code_version
from spira_assets.ml.report import LIMITATIONS, table, with_ci, write_pair
from spira_assets.resources import EvaluationSettings, MlflowTracking, StorageResource
from spira_assets.storage.tables import (
    EVALUATION_METRICS,
    EVALUATION_SUBGROUPS,
    MODEL_VERSIONS,
    PROMOTIONS,
)


def _clean(metrics: pl.DataFrame, role: str) -> dict[str, float] | None:
    rows = metrics.filter(
        (pl.col("role") == role)
        & (pl.col("condition") == "clean")
        & (pl.col("level") == "recording")
    )
    return dict(rows.select("metric", "value").rows()) if rows.height else None


def model_card(
    version: str,
    root: Path,
    metrics: pl.DataFrame,
    subgroups: pl.DataFrame,
    composition: pl.DataFrame,
    by_batch: pl.DataFrame,
    decision: GateDecision,
    champion: str,
) -> str:
    lineage = json.loads((root / "models" / version / "lineage.json").read_text())
    threshold = metrics.get_column("threshold")[0]
    verdict = "PASSED" if decision.passed else "FAILED"
    return (
        f"# Model card: SpiraConv {version}\n\n"
        "## Intended use\n\nPre-screening support for respiratory insufficiency (SpO2 < 92 %) "
        "from short Brazilian-Portuguese voice recordings (consent phrase, sustained vowel, "
        "nursery rhyme, sentence), to prioritise a pulse-oximetry measurement. It outputs a "
        f"probability; the decision threshold is {threshold:.3f}.\n\n"
        "## Out of scope\n\nDiagnosis; replacing oximetry; other languages or utterances; "
        "children; estimating SpO2; respiratory insufficiency of causes absent from training "
        "data; any use on audio from the synthetic demo generator presented as clinical "
        "evidence.\n\n"
        "## Data\n\nParticipants by split and class (patients = 1):\n\n"
        + table(composition)
        + "\nRecordings by batch and split:\n\n"
        + table(by_batch)
        + "\n## Metrics (test participants, 95% CI by participant bootstrap)\n\n"
        + table(with_ci(metrics.filter(pl.col("role") == "candidate")))
        + "\n## Subgroups (clean test recordings)\n\n"
        + table(
            subgroups.select(
                "subgroup",
                "value",
                "participants",
                "positives",
                "negatives",
                "judgeable",
                "sensitivity",
                "specificity",
                "auroc",
            )
        )
        + "\n## Limitations\n\n"
        + LIMITATIONS
        + "\n\n"
        "## Lineage\n\n"
        + table(
            pl.DataFrame(
                {
                    "input": [
                        "batches (shard of each)",
                        "noise",
                        "feature config",
                        "code version",
                        "seeds",
                        "best seed",
                        "device",
                        "MLflow run",
                    ],
                    "value": [
                        json.dumps(lineage["batches"]),
                        json.dumps(lineage["noise"]),
                        lineage["feature_config_hash"],
                        lineage["code_version"],
                        json.dumps(lineage["seeds"]),
                        str(lineage["best_seed"]),
                        lineage["device"],
                        lineage["mlflow_run_id"],
                    ],
                }
            )
        )
        + f"\n## Promotion gate\n\n**{verdict}** against champion {champion}.\n\n"
        + "".join(f"- {r}\n" for r in decision.reasons or ["every floor and comparison met"])
    )


@dg.asset(
    deps=[evaluation_report],
    group_name="evaluation",
    kinds={"mlflow", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            GATE_CHECK,
            asset="champion",
            blocking=True,
            description="The candidate meets floors, the champion and subgroup gaps.",
        )
    ],
)
def champion(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    evaluation: EvaluationSettings,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """Decide whether the evaluated candidate becomes champion: absolute floors, not worse than
    the current champion on the same test set beyond a margin, no judgeable subgroup below its
    floor or too far from the overall figure. On pass the registered model's ``champion`` alias
    moves; every decision is appended to ``promotions``; a model card is written."""
    version = latest_version(context, "evaluation_report")
    layout, lake = storage.layout(), storage.lake()
    layout.fetch(f"models/{version}")  # the card reads the model's lineage
    root = layout.local_root
    metrics = lake.read_part(EVALUATION_METRICS, version)
    subgroups = lake.read_part(EVALUATION_SUBGROUPS, version)
    candidate = _clean(metrics, "candidate")
    assert candidate is not None
    previous = current_champion(mlflow_tracking)
    champion_metrics = _clean(metrics, "champion")
    registered = lake.read_part(MODEL_VERSIONS, version).get_column("registered_version")[0]
    decision = decide(candidate, champion_metrics, subgroups, evaluation.gate())
    # every clean test recording falls in exactly one collection batch
    test_recordings = int(
        subgroups.filter(pl.col("subgroup") == "batch_id").get_column("rows").sum()
    )
    now = datetime.now(UTC)
    already = previous is not None and previous[1] == version
    if decision.passed and not already:
        MlflowClient(mlflow_tracking.resolved_uri()).set_registered_model_alias(
            mlflow_tracking.registered_model, CHAMPION_ALIAS, registered
        )
    holder = version if decision.passed else (previous[1] if previous else "none")
    decision_id = f"{now:%Y%m%dT%H%M%S%fZ}-{version[:8]}"
    lake.write_part(
        PROMOTIONS,
        decision_id,
        pl.DataFrame(
            {
                "batch_id": [decision_id],
                "decided_at": [now],
                "candidate_version": [version],
                "candidate_registered": [registered],
                "champion_version": [previous[1] if previous else None],
                "passed": [decision.passed],
                "reasons": [
                    json.dumps(decision.reasons or (["already champion"] if already else []))
                ],
                "candidate_auroc": [candidate["auroc"]],
                "candidate_sensitivity": [candidate["sensitivity"]],
                "champion_auroc": [champion_metrics["auroc"] if champion_metrics else None],
                "test_recordings": [test_recordings],
                "code_version": [code_version()],
            },
            schema=PROMOTIONS.schema,
        ),
    )
    storage.warehouse().ensure_views()

    recordings = recordings_with_split(lake)
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
        root,
        metrics,
        subgroups,
        composition,
        by_batch,
        decision,
        previous[1] if previous else "none (first model)",
    )
    md, html = write_pair(root / "reports" / version, "model_card", card, f"Model card {version}")
    layout.publish(f"reports/{version}")
    history = lake.read_table(PROMOTIONS).sort("decided_at")
    metadata: dict[str, Any] = {
        "candidate_version": version,
        "decision": "passed" if decision.passed else "failed",
        "reasons": "; ".join(decision.reasons) or "none",
        "champion_version": holder,
        "model_card": dg.MetadataValue.path(str(html)),
        "model_card_markdown": dg.MetadataValue.path(str(md)),
        "promotion_history": markdown_table(
            history.select(
                "decided_at",
                "candidate_version",
                "champion_version",
                "passed",
                "candidate_auroc",
                "champion_auroc",
                "reasons",
            )
        ),
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=GATE_CHECK,
                passed=decision.passed,
                description="; ".join(decision.reasons) or "candidate promoted",
                metadata={
                    "candidate_auroc": candidate["auroc"],
                    "champion_auroc": champion_metrics["auroc"] if champion_metrics else -1.0,
                },
            )
        ],
        data_version=dg.DataVersion(holder),
    )
