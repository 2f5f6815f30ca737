"""The ``model_versions`` row of a saved model version, made from its own files (no Dagster,
no torch: the training asset restores it when a reused version's row is gone)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl

from spira_assets.storage.tables import MODEL_VERSIONS


def version_row(layout_root: str, summary: dict[str, Any], lineage: dict[str, Any]) -> pl.DataFrame:
    """The ``model_versions`` row of a saved version, from its own files (so a reused version
    restores it when the lake was cleared)."""
    version = summary["model_version"]
    return pl.DataFrame(
        {
            "batch_id": [version],
            "model_version": [version],
            "trained_at": [datetime.fromisoformat(lineage["trained_at"])],
            "best_seed": [summary["best_seed"]],
            "seeds": [json.dumps(lineage["seeds"])],
            "val_loss": [summary["val_loss"]],
            "val_auroc": [summary["val_auroc"]],
            "val_auroc_mean": [summary["val_auroc_mean"]],
            "val_auroc_std": [summary["val_auroc_std"]],
            "best_epoch": [summary["best_epoch"]],
            "device": [summary["device"]],
            "feature_config_hash": [lineage["feature_config_hash"]],
            "code_version": [lineage["code_version"]],
            "mlflow_run_id": [summary["mlflow_run_id"]],
            "registered_version": [summary["registered_version"]],
            "directory": [f"{layout_root}/models/{version}"],
        },
        schema=MODEL_VERSIONS.schema,
    )
