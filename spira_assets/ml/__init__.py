"""Model, splits, data path, training loop, metrics, lineage (torch). No Dagster."""
