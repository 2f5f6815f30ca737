-- A second database on the same server for MLflow's tracking store (Dagster uses "dagster").
CREATE DATABASE mlflow;
