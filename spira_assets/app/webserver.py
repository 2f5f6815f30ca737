"""Runs launched through a Dagster webserver's GraphQL API (what the UI's buttons send).

A run launched this way belongs to the webserver's code location: it is on the Overview
timeline, re-executes without a warning about another code location, and goes through the
instance's run queue (the daemon launches it with the instance's run launcher: a pod per run
on Kubernetes). ``spira materialize --dagster-url`` and ``spira sweep --dagster-url`` use it;
without a URL the CLI executes runs itself, as ``dagster asset materialize`` does."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
ADDED = ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError")


class DagsterApiError(RuntimeError):
    """The webserver refused or could not answer a request (the message has its reason)."""


class DagsterWebserver:
    def __init__(self, url: str, poll_s: float = 2.0) -> None:
        self.url = url.rstrip("/") + "/graphql"
        self.poll_s = poll_s
        self._repositories: dict[str, dict[str, str]] = {}

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload: dict[str, Any] = json.load(response)
        except OSError as error:
            raise DagsterApiError(f"Dagster webserver {self.url}: {error}") from error
        if payload.get("errors"):
            raise DagsterApiError(f"{self.url}: {payload['errors']}")
        return dict(payload["data"])

    def repository(self, job: str) -> dict[str, str]:
        """The code location and repository that hold ``job`` (a RepositorySelector)."""
        if job not in self._repositories:
            data = self.query(
                "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {"
                " name location { name } jobs { name } } } ... on PythonError { message } } }"
            )["repositoriesOrError"]
            for node in data.get("nodes", []):
                if any(found["name"] == job for found in node["jobs"]):
                    self._repositories[job] = {
                        "repositoryLocationName": node["location"]["name"],
                        "repositoryName": node["name"],
                    }
                    break
            else:
                raise DagsterApiError(
                    f"{self.url}: no code location with the job {job} "
                    f"({data.get('message', 'reload the code location')})"
                )
        return self._repositories[job]

    def add_partition(self, job: str, partitions_def: str, key: str) -> None:
        result = self.query(
            "mutation($repo: RepositorySelector!, $name: String!, $key: String!) {"
            " addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name,"
            " partitionKey: $key) { __typename ... on PythonError { message }"
            " ... on UnauthorizedError { message } } }",
            {"repo": self.repository(job), "name": partitions_def, "key": key},
        )["addDynamicPartition"]
        if result["__typename"] not in (
            "AddDynamicPartitionSuccess",
            "DuplicateDynamicPartitionError",
        ):
            raise DagsterApiError(f"adding partition {key} of {partitions_def}: {result}")

    def launch(
        self,
        job: str,
        tags: dict[str, str],
        assets: list[str] | None = None,
        run_config: dict[str, object] | None = None,
    ) -> str:
        """Launch (queue) a run of ``job``, of only ``assets`` when given; its run id."""
        params: dict[str, Any] = {
            "selector": {**self.repository(job), "jobName": job},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        if run_config:
            params["runConfigData"] = run_config
        if assets is not None:
            params["selector"]["assetSelection"] = [{"path": [name]} for name in assets]
        result = self.query(
            "mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {"
            " __typename ... on LaunchRunSuccess { run { runId } }"
            " ... on PythonError { message } ... on UnauthorizedError { message }"
            " ... on RunConfigValidationInvalid { errors { message } } } }",
            {"params": params},
        )["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterApiError(f"launching {job} ({tags}): {result}")
        return str(result["run"]["runId"])

    def statuses(self, run_ids: list[str]) -> dict[str, str]:
        data = self.query(
            "query($ids: [String]) { runsOrError(filter: {runIds: $ids}) {"
            " ... on Runs { results { runId status } } } }",
            {"ids": run_ids},
        )["runsOrError"]
        return {r["runId"]: r["status"] for r in data.get("results", [])}

    def wait(self, run_id: str, timeout_s: float = 24 * 3600) -> str:
        """Poll until the run ends; its status (SUCCESS, FAILURE or CANCELED)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.statuses([run_id]).get(run_id, "")
            if status in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise DagsterApiError(
                    f"run {run_id} still {status or 'unknown'} after {timeout_s}s"
                )
            time.sleep(self.poll_s)

    def outcome_events(self, run_id: str) -> tuple[list[dict[str, Any]], list[str]]:
        """The run's check evaluations (check, asset, passed, severity) and failed steps."""
        data = self.query(
            "query($id: ID!) { logsForRun(runId: $id, limit: 100000) {"
            " ... on EventConnection { events { __typename"
            " ... on ExecutionStepFailureEvent { stepKey }"
            " ... on AssetCheckEvaluationEvent { evaluation { checkName success severity"
            " assetKey { path } } } } } ... on PythonError { message } } }",
            {"id": run_id},
        )["logsForRun"]
        checks, failed_steps = [], []
        for event in data.get("events", []):
            if event["__typename"] == "AssetCheckEvaluationEvent":
                checks.append(event["evaluation"])
            elif event["__typename"] == "ExecutionStepFailureEvent":
                failed_steps.append(str(event["stepKey"]))
        return checks, failed_steps
