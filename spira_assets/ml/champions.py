"""Who the champion is, and who it has been: the ``promotions`` audit table and the registry's
``champion`` alias must tell the same story.

The gate compares every candidate with the current champion and with every model that ever
held the title (so successive small losses cannot add up), which needs the history; and it
must never mistake "the registry could not answer" for "there is no champion". A champion
that exists but cannot be established is an error the gate reports, not a reason to judge on
floors alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from spira_assets.ml.tracking import CHAMPION_ALIAS, RegistryError, alias_holder
from spira_assets.storage.lake import Lake
from spira_assets.storage.tables import PROMOTIONS


@dataclass(frozen=True)
class ChampionState:
    current: str | None  # the model version holding the title
    history: tuple[str, ...]  # every version that ever passed the gate, oldest first
    error: str | None = None  # why the champion cannot be established

    def references(self, candidate: str) -> list[tuple[str, str]]:
        """(version, role) of every model the candidate must not be worse than."""
        roles = [(v, "past champion") for v in self.history if v not in (candidate, self.current)]
        if self.current and self.current != candidate:
            roles.append((self.current, "champion"))
        return roles


def champion_history(lake: Lake) -> list[str]:
    """Versions with a passed gate decision, oldest first (each once, at its first pass)."""
    passed = lake.read_table(PROMOTIONS).filter(pl.col("passed")).sort("decided_at")
    return passed.get_column("candidate_version").unique(maintain_order=True).to_list()


def current_champion_in_audit(lake: Lake) -> str | None:
    """The champion according to the ``promotions`` audit table (its last passed decision)."""
    passed = lake.read_table(PROMOTIONS).filter(pl.col("passed")).sort("decided_at")
    return None if passed.is_empty() else str(passed.get_column("candidate_version")[-1])


def resolve_champion(
    lake: Lake, tracking_uri: str, registered_model: str, alias: str = CHAMPION_ALIAS
) -> ChampionState:
    history = tuple(champion_history(lake))
    audit = current_champion_in_audit(lake)
    try:
        holder = alias_holder(tracking_uri, registered_model, alias)
    except RegistryError as error:
        return ChampionState(audit, history, f"{error}; the champion cannot be compared")
    registry = holder[1] if holder else None
    if audit == registry:
        return ChampionState(audit, history)
    if audit is None:
        problem = (
            f"the registry's {alias!r} alias is on model {registry} (registered version "
            f"{holder[0] if holder else '?'}), but the promotions table has no passed decision: "
            "restore the lake's promotions table or remove the alias"
        )
    elif registry is None:
        problem = (
            f"the promotions table names {audit} champion, but the registry has no {alias!r} "
            "alias (was the tracking store replaced?): restore it or set the alias again"
        )
    else:
        problem = (
            f"the promotions table names {audit} champion but the registry's {alias!r} alias is "
            f"on {registry}: the audit and the registry disagree"
        )
    return ChampionState(audit, history, problem)
