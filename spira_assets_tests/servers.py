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
from typing import IO


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
    with servers([(command, ready_url, log)], env, cwd, timeout_s) as (process,):
        yield process


Server = tuple[list[str], str, Path | None]  # command, the URL that answers once ready, its log


@contextmanager
def servers(
    specs: list[Server], env: dict[str, str], cwd: Path, timeout_s: float = 120
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``server`` for several at once: all are started, then each is waited for, so their
    start-up times overlap (the MLflow UI alone takes 10-20 s on 2 cores)."""
    started: list[tuple[subprocess.Popen[bytes], IO[bytes] | None]] = []
    try:
        for command, _, log in specs:
            out = log.open("wb") if log else None
            try:
                process = subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=env,
                    stdout=out or subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError:  # not started: its log is closed here, the others below
                if out is not None:
                    out.close()
                raise
            started.append((process, out))
        for (process, _), (command, ready_url, log) in zip(started, specs, strict=True):
            try:
                wait_until_answers(ready_url, process, timeout_s)
            except RuntimeError:
                tail = log.read_text()[-3000:] if log and log.exists() else ""
                raise RuntimeError(f"{command[0]} did not start:\n{tail}") from None
        yield [process for process, _ in started]
    finally:
        for process, out in reversed(started):  # the last started (it may use the others) first
            _stop(process)
            if out is not None:
                out.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        with suppress(ProcessLookupError):  # already gone
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


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
