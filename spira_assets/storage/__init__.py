"""Storage: per-batch Parquet tables (the lake), a content-addressed raw store and the DuckDB
catalog that exposes the tables to SQL. No Dagster here."""
