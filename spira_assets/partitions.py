"""Partitions: one per collection batch, added when a complete batch lands."""

import dagster as dg

COLLECTION_BATCH = "collection_batch"
collection_batch = dg.DynamicPartitionsDefinition(name=COLLECTION_BATCH)
