"""Thin Dagster adapters, one module per pipeline stage."""
