"""Partitions: one per collection batch, added when a complete batch lands; one per sweep
trial, added by `spira sweep`."""

import dagster as dg

COLLECTION_BATCH = "collection_batch"
collection_batch = dg.DynamicPartitionsDefinition(name=COLLECTION_BATCH)

# One per sweep trial, ``<sweep>/<combination hash>-s<seed>``; added by ``spira sweep``.
SWEEP_TRIAL = "sweep_trial"
sweep_trial_partitions = dg.DynamicPartitionsDefinition(name=SWEEP_TRIAL)
