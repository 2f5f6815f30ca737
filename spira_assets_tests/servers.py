"""Start real servers (dagster dev, mlflow models serve) for tests: a free local port, their
own process group, wait until they answer, and stop the whole group at the end even on failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answers(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll ``url`` until it answers; RuntimeError if ``process`` ends or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(
                    f"{url} did not answer (process exit {process.poll()})"
                ) from None
            time.sleep(0.5)


@contextmanager
def server(
    command: list[str],
    ready_url: str,
    env: dict[str, str],
    cwd: Path,
    log: Path | None = None,
    timeout_s: float = 120,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in a new session (process group) until ``ready_url`` answers; on exit
    SIGTERM the group, then SIGKILL it if it has not stopped within 20 s."""
    out = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        try:
            wait_until_answers(ready_url, process, timeout_s)
        except RuntimeError:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{command[0]} did not start:\n{tail}") from None
        yield process
    finally:
        try:
            with suppress(ProcessLookupError):  # already gone
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        if log:
            out.close()  # type: ignore[union-attr]


def graphql(port: int, query: str, variables: dict[str, object] | None = None) -> dict[str, object]:
    """One query against a running webserver's GraphQL API; fails on GraphQL errors."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload: dict[str, object] = json.load(response)
    assert "errors" not in payload, payload
    data = payload["data"]
    assert isinstance(data, dict)
    return data
