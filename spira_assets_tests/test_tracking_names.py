"""What MLflow shows of a trained model: the experiment opens on its training runs (not the
GenAI dashboard); the run is named and described by model version, batches and best seed; the
training curves, the evaluation's intervals and the model card are logged; the registered
version is described, tagged and linked to the Dagster run that made it."""

from __future__ import annotations

from pathlib import Path

from spira_assets.ml.tracking import (
    EXPERIMENT,
    REGISTERED_MODEL,
    TRAINING_EXPERIMENT_KIND,
    default_tracking_uri,
)


def _artifacts(client: object, run_id: str, folder: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, folder)}  # type: ignore[attr-defined]


def test_the_model_run_and_its_registered_version_explain_themselves(champion_root: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(default_tracking_uri(champion_root))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    assert experiment.tags["mlflow.experimentKind"] == TRAINING_EXPERIMENT_KIND
    [run] = client.search_runs(
        [experiment.experiment_id], "tags.`spira.model_version` != ''", max_results=5
    )
    tags, version = run.data.tags, run.data.tags["spira.model_version"]
    dagster_run = tags["dagster.run_id"]
    name = tags["mlflow.runName"]
    assert name.startswith(f"model {version[:8]} · 1 batch · seed "), name
    assert dagster_run[:8] not in name  # not the Dagster run id's prefix any more
    note = tags["mlflow.note.content"]
    assert "demo-001" in note and "lowest validation loss" in note and dagster_run[:8] in note
    assert tags["spira.batches"] == "demo-001"

    assert "plots/training_curves.png" in _artifacts(client, run.info.run_id, "plots")
    assert "model_card/model_card.html" in _artifacts(client, run.info.run_id, "model_card")
    metrics = run.data.metrics
    assert {"test_clean_auroc", "test_clean_auroc_ci_low", "test_clean_participant_auroc"} <= set(
        metrics
    ), sorted(metrics)

    [registered] = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert registered.name == REGISTERED_MODEL
    assert registered.description and version in registered.description
    assert registered.tags["dagster.run_id"] == dagster_run
    assert registered.tags["dagster.run_url"].endswith(f"/runs/{dagster_run}")
    assert registered.tags["spira.seed_selection"] == "lowest validation loss"


def test_the_model_card_shows_its_plots_and_links_to_where_the_model_lives(
    champion_root: Path,
) -> None:
    [card_file] = (champion_root / "reports").glob("*/model_card.md")
    card = card_file.read_text()
    figures = card[card.index("## Figures") :]
    shown = [line for line in figures.splitlines() if line.startswith("![")]
    assert shown and all((card_file.parent / line.split("](")[1][:-1]).exists() for line in shown)
    assert "[evaluation report](evaluation.html)" in card
    assert "[every report (champion marked)](../index.html)" in card
    assert "[mlflow run](http" in card and "[mlflow model version](http" in card
    assert (champion_root / "reports" / "index.html").exists()
