"""Stale batches re-materialize themselves (Dagster declarative automation).

Staleness is Dagster's own: an asset's code version (``assets/versions.py``) differs from the
one its latest materialization recorded, or an input it declares was materialized again since.
Two conditions, evaluated by the ``stale_batches`` automation sensor:

- ``STALE_BATCH`` (per-batch assets and the noise set): requested when the code version changed
  or an input was updated since the asset was last handled, for partitions that exist (a batch
  never ingested is the landing sensor's), once nothing upstream is missing or running. A change
  of quality rules therefore re-ingests exactly the batches ingested before, then their
  downstream, batch by batch.
- ``DRIFT`` (``drift_reference`` and ``batch_drift``): requested when the code version or the
  data of an input changed: a new champion or a re-run training batch changes the reference,
  which then recomputes every batch's drift; a new batch re-makes the reference unchanged.
- ``TABLE_AFTER_WRITERS`` (``quarantine``, ``batch_checks``): requested after a writer ran,
  even if the writer's blocking check failed (those views skip in the writer's run and are
  materialized in one of their own, where nothing blocks them).

The training assets are not automated here: retraining follows ``RetrainingPolicy``
(``sensors.py``), so a re-materialized batch does not retrain on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

AC = dg.AutomationCondition
# the landing zone is observed by the landing sensor, never materialized: never "missing"
LANDING = dg.AssetSelection.assets("landing_batch", "landing_noise")

# code version changed, or an input was materialized again
CHANGED: dg.AutomationCondition = AC.code_version_changed() | AC.any_deps_updated()

STALE_BATCH = (
    CHANGED.since_last_handled()
    & ~AC.missing()
    & ~AC.any_deps_missing().ignore(LANDING)
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("stale: code version changed or an input was re-materialized")

# the drift reference and the batches' drift follow what their inputs hold, not every run of
# them: a new batch re-makes the reference (its audio_16k is an input) without changing it,
# and that must not recompute every batch's drift
DATA_CHANGED: dg.AutomationCondition = AC.code_version_changed() | AC.any_deps_match(
    AC.data_version_changed()
)
DRIFT = (
    DATA_CHANGED.since_last_handled()
    & ~AC.missing()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("out of date: code version changed or an input's data changed (a new champion)")

TABLE_AFTER_WRITERS = (
    CHANGED.since_last_handled() & ~AC.any_deps_in_progress() & ~AC.in_progress()
).with_label("a writer of the table ran")

CONDITIONS: dict[str, dg.AutomationCondition] = {
    "raw_audio": STALE_BATCH,
    "raw_audio_16k": STALE_BATCH,
    "validated_metadata": STALE_BATCH,
    "quarantine": TABLE_AFTER_WRITERS,
    "batch_checks": TABLE_AFTER_WRITERS,
    "audio_16k": STALE_BATCH,
    "spectrogram_features": STALE_BATCH,
    "feature_stats": STALE_BATCH,
    "batch_drift": DRIFT,
    "drift_reference": DRIFT,
    "drift_reference_features": DRIFT,
    "hospital_noise": STALE_BATCH,
}


def with_conditions(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec],
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The assets with their automation condition attached (by key, in one place)."""

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = CONDITIONS.get(spec.key.to_user_string())
        return (
            spec if condition is None else spec.replace_attributes(automation_condition=condition)
        )

    return [a if isinstance(a, dg.AssetSpec) else a.map_asset_specs(attach) for a in assets]


stale_batches_sensor = dg.AutomationConditionSensorDefinition(
    "stale_batches",
    target=dg.AssetSelection.assets(*CONDITIONS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Every 60 s: re-materializes batches whose assets are stale (code version "
    "changed, or an input re-materialized), the per-batch tables after their writers ran, and "
    "the drift reference and every batch's drift when the champion or its training data "
    "changed.",
)
