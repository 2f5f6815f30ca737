"""Audio decoding and quality assessment (soundfile + numpy). No Dagster."""
