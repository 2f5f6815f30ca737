"""The promotion history and the registry must tell the same story: a lost ``promotions`` table
(or lost rows) with the registry still recording the promotions fails the gate, naming the
disagreement, until ``restore_promotions`` rebuilds the rows from the registry's records.

Real MLflow SQLite registry and real lake parts; the registered versions are created directly
(no model is trained: what is tested is the bookkeeping)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from upath import UPath

from spira_assets.evaluation.champions import resolve_champion
from spira_assets.evaluation.promotion_history import promotion_record, restore_promotions
from spira_assets.ml.tracking import CHAMPION_ALIAS, REGISTERED_MODEL, mark_promoted
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import PROMOTIONS

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Registry:
    """A real registry with one registered version per model version."""

    def __init__(self, root: Path) -> None:
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.client.create_registered_model(REGISTERED_MODEL)
        self.experiment = self.client.create_experiment("e", (root / "art").as_uri())
        self.registered: dict[str, str] = {}

    def register(self, version: str) -> str:
        run = self.client.create_run(self.experiment)
        self.client.log_param(run.info.run_id, "model_version", version)
        source = f"{self.client.get_experiment(self.experiment).artifact_location}/{version}"
        made = self.client.create_model_version(REGISTERED_MODEL, source, run.info.run_id)
        self.registered[version] = str(made.version)
        return str(made.version)


def decision(version: str, registered: str, at: datetime, before: str | None) -> dict:
    """A passed decision's audit row, as the gate writes it."""
    return {
        "batch_id": f"{at:%Y%m%dT%H%M%S%fZ}-{version[:8]}",
        "decided_at": at,
        "candidate_version": version,
        "candidate_registered": registered,
        "champion_version": before,
        "passed": True,
        "reasons": "[]",
        "candidate_auroc": 0.91,
        "candidate_sensitivity": 0.85,
        "champion_auroc": None,
        "auroc_difference": None,
        "difference_ci_low": None,
        "difference_ci_high": None,
        "compared_with": "[]",
        "test_recordings": 40,
        "code_version": "abc",
    }


def promote(lake: Lake, registry: Registry, version: str, at: datetime, before: str | None) -> str:
    """What the gate does on a pass: the audit row, then the tag and the alias."""
    row = decision(version, registry.register(version), at, before)
    lake.write_part(PROMOTIONS, row["batch_id"], pl.DataFrame([row], schema=PROMOTIONS.schema))
    mark_promoted(registry.uri, row["candidate_registered"], promotion_record(row))
    return str(row["batch_id"])


@pytest.fixture
def history(tmp_path: Path) -> tuple[Lake, Registry, list[str]]:
    """Two promotions, v1 then v2 (the champion), in the audit and in the registry."""
    lake, registry = Lake(UPath(tmp_path / "lake")), Registry(tmp_path)
    first = promote(lake, registry, "v1-aaaaaaaa", START, None)
    second = promote(lake, registry, "v2-bbbbbbbb", START + timedelta(days=7), "v1-aaaaaaaa")
    return lake, registry, [first, second]


def lose(lake: Lake, decision_id: str) -> None:
    (Path(str(lake.root)) / "promotions" / f"{decision_id}.parquet").unlink()


def test_a_lost_past_champion_fails_until_restored_from_the_registry(
    history: tuple[Lake, Registry, list[str]],
) -> None:
    lake, registry, (first, _) = history
    agreed = resolve_champion(lake, registry.uri, REGISTERED_MODEL)
    assert agreed.error is None and agreed.history == ("v1-aaaaaaaa", "v2-bbbbbbbb")
    original = lake.read_part(PROMOTIONS, first)

    # the fault: the past champion's row is lost; the alias still agrees with the audit, so
    # the gate used to judge without v1 (the history bound quietly gone)
    lose(lake, first)
    state = resolve_champion(lake, registry.uri, REGISTERED_MODEL)
    assert state.current == "v2-bbbbbbbb" and state.history == ("v2-bbbbbbbb",)
    assert state.error is not None
    assert "no passed decision for v1-aaaaaaaa (registered version 1, tagged at promotion)" in (
        state.error
    )
    assert "spira restore-promotions" in state.error

    restored = restore_promotions(lake, registry.uri, REGISTERED_MODEL, START + timedelta(9))
    assert [(r.decision_id, r.model_version, r.registered) for r in restored] == [
        (first, "v1-aaaaaaaa", "1")
    ]
    again = resolve_champion(lake, registry.uri, REGISTERED_MODEL)
    assert again.error is None and again.history == ("v1-aaaaaaaa", "v2-bbbbbbbb")
    assert again.references("v3") == [("v1-aaaaaaaa", "past champion"), ("v2-bbbbbbbb", "champion")]
    back = lake.read_part(PROMOTIONS, first)
    same = [c for c in PROMOTIONS.schema if c not in ("reasons", "compared_with")]
    assert back.select(same).equals(original.select(same))  # the decision itself, as it was
    (note,) = json.loads(back.get_column("reasons")[0])
    assert note.startswith("restored on 2026-03-10") and "tag spira.promotion" in note
    assert restore_promotions(lake, registry.uri, REGISTERED_MODEL, START) == []  # idempotent


def test_a_lost_table_with_the_alias_present_is_rebuilt_in_order(
    history: tuple[Lake, Registry, list[str]],
) -> None:
    lake, registry, decisions = history
    for decision_id in decisions:
        lose(lake, decision_id)
    state = resolve_champion(lake, registry.uri, REGISTERED_MODEL)
    assert state.current is None and state.error is not None
    assert "the promotions table has no passed decision for v1-aaaaaaaa" in state.error
    assert "v2-bbbbbbbb (registered version 2, tagged at promotion)" in state.error

    restored = restore_promotions(lake, registry.uri, REGISTERED_MODEL, START + timedelta(9))
    assert [r.decision_id for r in restored] == decisions
    state = resolve_champion(lake, registry.uri, REGISTERED_MODEL)
    assert state.error is None and state.current == "v2-bbbbbbbb"
    assert state.history == ("v1-aaaaaaaa", "v2-bbbbbbbb")


def test_an_untagged_alias_holder_is_restored_after_every_known_decision(
    history: tuple[Lake, Registry, list[str]],
) -> None:
    lake, registry, _ = history
    # a version promoted before promotions were tagged: the alias only, no audit row
    legacy = registry.register("v3-cccccccc")
    registry.client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, legacy)
    state = resolve_champion(lake, registry.uri, REGISTERED_MODEL)
    assert state.error is not None
    assert "v3-cccccccc (registered version 3, holding the alias)" in state.error
    assert "names v2-bbbbbbbb champion but the registry's 'champion' alias is on v3" in state.error

    (restored,) = restore_promotions(lake, registry.uri, REGISTERED_MODEL, START + timedelta(9))
    assert restored.model_version == "v3-cccccccc" and restored.source == "alias 'champion'"
    assert restored.decided_at > START + timedelta(days=7)  # after the latest known decision
    state = resolve_champion(lake, registry.uri, REGISTERED_MODEL)
    assert state.error is None and state.current == "v3-cccccccc"
    row = lake.read_part(PROMOTIONS, restored.decision_id).row(0, named=True)
    assert row["candidate_auroc"] is None and "not recorded" in row["reasons"]
