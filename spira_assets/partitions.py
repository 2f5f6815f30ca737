"""Partitions: one per collection batch, added when a complete batch lands."""

import dagster as dg

collection_batch = dg.DynamicPartitionsDefinition(name="collection_batch")
