"""Who the champion is, and who it has been: the ``promotions`` audit table and the registry's
``champion`` alias must tell the same story.

The gate compares every candidate with the current champion and with every model that ever
held the title (so successive small losses cannot add up), which needs the history; and it
must never mistake "the registry could not answer" for "there is no champion". A champion
that exists but cannot be established is an error the gate reports, not a reason to judge on
floors alone. The registry keeps its own record of each promotion (a tag on the registered
version, ``tracking.PROMOTION_TAG``), so a history the lake lost is noticed, and rebuilt from
it (``promotion_history.restore_promotions``).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from spira_assets.ml.tracking import (
    CHAMPION_ALIAS,
    RegistryError,
    RegistryPromotion,
    registry_promotions,
)
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


def _described(promotions: list[RegistryPromotion]) -> str:
    return ", ".join(
        f"{p.model_version} (registered version {p.registered}, "
        + ("tagged at promotion" if p.record else "holding the alias")
        + ")"
        for p in promotions
    )


def resolve_champion(
    lake: Lake, tracking_uri: str, registered_model: str, alias: str = CHAMPION_ALIAS
) -> ChampionState:
    """The champion and its history, from the audit table, checked against the registry: the
    alias holder must be the audit's current champion, and every version the registry records
    as promoted must have a passed decision (a lost history would silently drop past
    champions from the comparison)."""
    history = tuple(champion_history(lake))
    audit = current_champion_in_audit(lake)
    try:
        promoted = registry_promotions(tracking_uri, registered_model, alias)
    except RegistryError as error:
        return ChampionState(audit, history, f"{error}; the champion cannot be compared")
    holder = next((p for p in promoted if p.holds_alias), None)
    registry = holder.model_version if holder else None
    problems = []
    lost = [p for p in promoted if p.model_version not in history]
    if lost:
        problems.append(
            f"the promotions table has no passed decision for {_described(lost)}, which the "
            "registry records as promoted: the promotion history was lost; rebuild it from "
            "the registry's records with `spira restore-promotions`"
        )
    if audit != registry and registry is None:
        problems.append(
            f"the promotions table names {audit} champion, but the registry has no {alias!r} "
            "alias (was the tracking store replaced?): restore it or set the alias again"
        )
    elif audit != registry and audit is not None:
        problems.append(
            f"the promotions table names {audit} champion but the registry's {alias!r} alias is "
            f"on {registry}: the audit and the registry disagree"
        )
    return ChampionState(audit, history, "; ".join(problems) or None)
