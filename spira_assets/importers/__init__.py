"""Importers that turn other dataset layouts into landing batches. No Dagster."""
