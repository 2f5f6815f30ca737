"""Ingestion core: turn a landing batch into the raw_audio and validated_metadata tables plus
quarantine records. Pure functions over paths and frames; no Dagster."""
