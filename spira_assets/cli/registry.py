"""Commands on the promotion history: ``restore-promotions``."""

from __future__ import annotations

import click

from spira_assets.cli.app import DATA_DIR_OPTION, CliError, _layout, main


@main.command("restore-promotions")
@DATA_DIR_OPTION
def restore_promotions_command(data_dir: str | None) -> None:
    """Rebuild lost rows of the ``promotions`` audit table from the MLflow registry's records
    (each promoted version's tag, the ``champion`` alias), print each restored row, and check
    that the audit and the registry agree again. The gate fails until they do."""
    from datetime import UTC, datetime

    from spira_assets.evaluation.champions import resolve_champion
    from spira_assets.evaluation.promotion_history import restore_promotions
    from spira_assets.ml.tracking import REGISTERED_MODEL, RegistryError
    from spira_assets.resources import MlflowTracking, StorageResource
    from spira_assets.storage.lake import Lake
    from spira_assets.storage.warehouse import Warehouse

    layout = _layout(data_dir)
    try:  # the store the gate asks: $MLFLOW_TRACKING_URI, or SQLite under a local data root
        storage = StorageResource(data_dir=str(layout.root))
        uri = MlflowTracking(storage=storage).resolved_uri()
    except ValueError as error:
        raise CliError(str(error)) from error
    lake = Lake(layout.lake)
    try:
        restored = restore_promotions(lake, uri, REGISTERED_MODEL, datetime.now(UTC))
        state = resolve_champion(lake, uri, REGISTERED_MODEL)
    except RegistryError as error:
        raise CliError(str(error)) from error
    Warehouse(layout.warehouse, lake).ensure_views()
    for row in restored:
        click.echo(
            f"restored promotion {row.decision_id}: model {row.model_version} (registered "
            f"version {row.registered}) champion from {row.decided_at.isoformat()}, from "
            f"{row.source}"
        )
    if not restored:
        click.echo("nothing to restore: every promotion the registry records is in the table")
    if state.error:
        raise CliError(f"the audit and the registry still disagree: {state.error}")
    click.echo(f"the audit and the registry agree: champion {state.current or 'none'}")
