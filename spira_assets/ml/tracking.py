"""MLflow tracking store and experiment set-up (no Dagster).

The embedded default is a SQLite store under the data root with artefacts next to it, so every
process (CLI, webserver-launched runs, tests) writes to the same place whatever its working
directory. A tracking server is used instead when the caller gives one (``MLFLOW_TRACKING_URI``,
read in ``environment.py``, or the resource's field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.exceptions import MlflowException

# mlflow is imported by the functions that talk to a store, not here: the code location (its
# resources and assets import this module) loads without it (test_definitions.py)

REGISTERED_MODEL = "spira-respiratory-insufficiency"
EXPERIMENT = "spira-training"
CHAMPION_ALIAS = "champion"


def default_tracking_uri(data_root: Path) -> str:
    """The embedded store: SQLite under the (local) data root."""
    return f"sqlite:///{(data_root / 'mlflow.db').resolve()}"


def ensure_experiment(tracking_uri: str, name: str, artifact_root: Path | None) -> str:
    """The experiment id, creating it with an artifact location under the data root."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if (existing.tags or {}).get("mlflow.experimentKind") != TRAINING_EXPERIMENT_KIND:
            show_as_model_training(tracking_uri, str(existing.experiment_id), name)
        return str(existing.experiment_id)
    location = artifact_root.resolve().as_uri() if artifact_root is not None else None
    experiment_id = str(client.create_experiment(name, artifact_location=location))
    show_as_model_training(tracking_uri, experiment_id, name)
    return experiment_id


class RegistryError(RuntimeError):
    """The model registry could not answer (unreachable, corrupt, refused): unlike "no such
    alias", this never means "there is no champion"."""


def _not_found(error: MlflowException) -> bool:
    code = error.error_code
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(error).lower()
    )


def alias_holder(
    tracking_uri: str, registered_model: str = REGISTERED_MODEL, alias: str = CHAMPION_ALIAS
) -> tuple[str, str] | None:
    """(registered version, our model version) holding ``alias``; None when the alias (or the
    registered model) does not exist; RegistryError when the registry cannot tell."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri)
        version = client.get_model_version_by_alias(registered_model, alias)
        params = client.get_run(str(version.run_id)).data.params
    except MlflowException as error:
        if _not_found(error):
            return None
        raise RegistryError(f"the model registry at {tracking_uri} failed: {error}") from error
    except Exception as error:  # a broken store fails in other ways (sqlite, network)
        raise RegistryError(f"the model registry at {tracking_uri} failed: {error}") from error
    if "model_version" not in params:
        raise RegistryError(
            f"registered version {version.version} of {registered_model} holds the alias "
            f"{alias!r} but its run records no model_version"
        )
    return str(version.version), str(params["model_version"])


def has_registered_version(
    tracking_uri: str, registered: str, model_version: str, registered_model: str = REGISTERED_MODEL
) -> bool:
    """Whether registered version ``registered`` exists and was logged for ``model_version``
    (a tracking store that was deleted or replaced no longer has it)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri)
        version = client.get_model_version(registered_model, registered)
        params = client.get_run(str(version.run_id)).data.params
    except MlflowException as error:
        if _not_found(error):
            return False
        raise RegistryError(f"the model registry at {tracking_uri} failed: {error}") from error
    except Exception as error:  # a broken store fails in other ways (sqlite, network)
        raise RegistryError(f"the model registry at {tracking_uri} failed: {error}") from error
    return params.get("model_version") == model_version


def champion_model_version(
    tracking_uri: str, registered_model: str = REGISTERED_MODEL, alias: str = CHAMPION_ALIAS
) -> str | None:
    """Our model version (the fingerprint) that holds the registry alias, or None."""
    holder = alias_holder(tracking_uri, registered_model, alias)
    return holder[1] if holder else None


# Tag on a registered version when it passes the gate: the promotion's audit row (JSON), so the
# registry itself records every model that held the title, not only the current alias holder,
# and a lost ``promotions`` table can be rebuilt from it (``champions.restore_promotions``).
PROMOTION_TAG = "spira.promotion"


@dataclass(frozen=True)
class RegistryPromotion:
    """A registered version the registry says was champion: tagged at promotion, or holding
    the alias (a version promoted before promotions were tagged has only the alias)."""

    registered: str
    model_version: str
    record: dict[str, Any] | None  # the audit row stored in PROMOTION_TAG
    holds_alias: bool
    created_at: datetime


def mark_promoted(
    tracking_uri: str,
    registered: str,
    record: dict[str, Any],
    registered_model: str = REGISTERED_MODEL,
    alias: str = CHAMPION_ALIAS,
) -> None:
    """Tag the registered version with its promotion's audit row, then move the alias to it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    text = json.dumps(record, default=str, sort_keys=True)
    client.set_model_version_tag(registered_model, registered, PROMOTION_TAG, text)
    client.set_registered_model_alias(registered_model, alias, registered)


def registry_promotions(
    tracking_uri: str, registered_model: str = REGISTERED_MODEL, alias: str = CHAMPION_ALIAS
) -> list[RegistryPromotion]:
    """Every registered version the registry records as promoted (tag or alias), oldest
    registration first; RegistryError when the registry cannot answer."""
    from mlflow.tracking import MlflowClient

    holder = alias_holder(tracking_uri, registered_model, alias)
    try:
        versions = MlflowClient(tracking_uri).search_model_versions(f"name='{registered_model}'")
    except Exception as error:  # MlflowException, sqlite, network: the registry did not answer
        raise RegistryError(f"the model registry at {tracking_uri} failed: {error}") from error
    found = []
    for version in sorted(versions, key=lambda v: int(v.version)):
        tag = (version.tags or {}).get(PROMOTION_TAG)
        holds = holder is not None and holder[0] == str(version.version)
        if tag is None and not holds:
            continue
        record = json.loads(tag) if tag else None
        if record is not None:
            model_version = str(record["candidate_version"])
        else:  # only the alias holder gets here
            model_version = holder[1] if holder is not None else ""
        created = datetime.fromtimestamp(int(version.creation_timestamp) / 1000, UTC)
        found.append(RegistryPromotion(str(version.version), model_version, record, holds, created))
    return found


# MLflow 3 opens an experiment of this kind on its training runs, not on the GenAI dashboard
TRAINING_EXPERIMENT_KIND = "custom_model_development"
EXPERIMENT_NOTE = (
    "SpiraConv models that detect respiratory insufficiency from speech: one run per training "
    "(named model version, batches, best seed), a nested run per seed, the evaluation and the "
    "model card logged to it. Runs are started by Dagster (spira_model, evaluation_report, "
    "champion)."
)


def show_as_model_training(tracking_uri: str, experiment_id: str, name: str) -> None:
    """Mark the experiment as model training (and describe the platform's own), so its link
    lands on the runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", TRAINING_EXPERIMENT_KIND)
    if name == EXPERIMENT:
        client.set_experiment_tag(experiment_id, "mlflow.note.content", EXPERIMENT_NOTE)


@dataclass(frozen=True)
class ModelFacts:
    """What names and describes a training run and its registered version."""

    model_version: str
    batches: list[str]
    seeds: list[int]
    best_seed: int
    best_epoch: int
    profile: str
    dagster_run_id: str
    dagster_run_url: str

    @classmethod
    def of(
        cls,
        lineage: dict[str, Any],
        summary: dict[str, Any],
        profile: str,
        dagster_run_id: str,
        dagster_run_url: str,
    ) -> ModelFacts:
        return cls(
            str(summary["model_version"]),
            sorted(lineage.get("batches", [])),
            [int(s) for s in lineage.get("seeds", summary.get("histories", {}))],
            int(summary["best_seed"]),
            int(summary["best_epoch"]),
            profile,
            dagster_run_id,
            dagster_run_url,
        )

    def run_name(self) -> str:
        batches = f"{len(self.batches)} batch" + ("es" if len(self.batches) != 1 else "")
        return f"model {self.model_version[:8]} · {batches} · seed {self.best_seed}"

    def description(self) -> str:
        seeds = ", ".join(map(str, self.seeds))
        return (
            f"SpiraConv model version `{self.model_version}` ({self.profile} profile), trained "
            f"on batches {', '.join(self.batches)}. One model per seed ({seeds}); "
            f"the one with the lowest validation loss is kept: seed {self.best_seed}, epoch "
            f"{self.best_epoch}. Dagster run [{self.dagster_run_id[:8]}]({self.dagster_run_url})."
        )

    def tags(self) -> dict[str, str]:
        return {
            "spira.model_version": self.model_version,
            "spira.batches": ",".join(self.batches),
            "spira.seeds": ",".join(map(str, self.seeds)),
            "spira.best_seed": str(self.best_seed),
            "spira.seed_selection": "lowest validation loss",
            "dagster.run_id": self.dagster_run_id,
            "dagster.run_url": self.dagster_run_url,
        }


def describe_model(
    tracking_uri: str,
    run_id: str,
    registered_model: str,
    registered: str,
    facts: ModelFacts,
) -> None:
    """Name and describe the training run, and describe, tag and link its registered version
    to the run and to the Dagster run that made it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    client.set_tag(run_id, "mlflow.runName", facts.run_name())
    client.set_tag(run_id, "mlflow.note.content", facts.description())
    for key, value in facts.tags().items():
        client.set_tag(run_id, key, value)
    if not registered:
        return
    client.update_model_version(registered_model, registered, description=facts.description())
    for key, value in facts.tags().items():
        client.set_model_version_tag(registered_model, registered, key, value)


def log_files(tracking_uri: str, run_id: str, paths: list[Path], artifact_path: str) -> None:
    """Log files to a (finished) run, e.g. the model card the gate writes after training."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)


def log_png(png: bytes, name: str) -> None:
    """A picture (PNG bytes) as an artifact of the active run, at ``name`` (``plots/x.png``)."""
    import tempfile

    import mlflow

    folder, _, file = name.rpartition("/")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / file
        path.write_bytes(png)
        mlflow.log_artifact(str(path), artifact_path=folder or None)
