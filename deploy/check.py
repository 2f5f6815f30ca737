"""make deploy-check: build the image, run the compose stack, and let containers process batches.

1. Bases: the official images where a registry answers; otherwise (or with LOCAL_BASES=1)
   images made from Debian's packages by deploy/local-bases/build.sh. BASE_IMAGE and
   POSTGRES_IMAGE, when set, win over both.
2. `docker build` of the image (timed, sized); `pip list` in it must show no development
   tool, and the code location must refuse to load with the key .env.example ships.
3. The stack of deploy/compose/compose.yaml (PostgreSQL, migrate, MLflow, code location,
   webserver, daemon) under its own project name, ports and data folder; timed until the UI
   answers and has loaded the code location.
4. A demo batch (made by `spira demo-data` in the code container) lands with `_READY` last; the
   landing sensor, running in the daemon container, must launch its run, and the run must succeed
   and write exactly the batch's rows (timed from `_READY`).
5. A second batch lands; once its run has written its first asset, the daemon container is
   killed, then started again. The run must end (it executes in the code container, so it can
   finish without the daemon, or fail), the sensor must not launch the batch a second time, a
   re-run launched through the restarted daemon must succeed, and every per-batch table must hold
   each batch's rows exactly once, with no partial file left.
6. `compose down -v`: containers, network and volumes go; the image stays as build cache.

Standard library only, so it runs with any Python 3. Run as root where dockerd has to be
started (it is started here if it is not running, and stopped again at the end).
Environment: KEEP=1 leaves the stack up; SPIRA_DEPLOY_CHECK_TIMEOUT (s, default 900) bounds
each wait.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
OFFICIAL = {"BASE_IMAGE": "python:3.11-slim-bookworm", "POSTGRES_IMAGE": "postgres:16-bookworm"}
IMAGE_TAG = "deploy-check"
PROJECT = "spira-deploy-check"
DEV_TOOLS = {"pytest", "pytest-timeout", "pytest-xdist", "ruff", "mypy", "moto", "playwright",
             "dockerfile-parse", "pip-tools", "dagster-dg-cli"}  # fmt: skip
CONTAINER_UID = 10001  # the image's user
TIMEOUT = float(os.environ.get("SPIRA_DEPLOY_CHECK_TIMEOUT", "900"))
PER_BATCH_TABLES = {  # as in spira_assets_tests/test_postgres_instance.py
    "raw_audio": "path_key",
    "validated_metadata": "row_number",
    "audio_16k": "audio_sha256",
    "spectrogram_features": "audio_sha256",
}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
figures: dict[str, Any] = {}


def log(message: str) -> None:
    print(f"[deploy-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("check", True)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, **kwargs)


def output(cmd: list[str], **kwargs: Any) -> str:
    return run(cmd, capture_output=True, **kwargs).stdout


def ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


def wait_for(what: str, probe: Any, timeout: float = TIMEOUT, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# ---- docker ----------------------------------------------------------------------------------
@contextmanager
def docker_daemon() -> Iterator[None]:
    """Use the running dockerd, or start one (as root) and stop it afterwards."""
    if ok(["docker", "info"]):
        yield
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        sys.exit("no Docker engine: install Debian's docker.io and run this as root")
    log("starting dockerd (stopped again at the end)")
    with tempfile.NamedTemporaryFile(prefix="dockerd-", suffix=".log", delete=False) as logfile:
        daemon = subprocess.Popen([dockerd], stdout=logfile, stderr=subprocess.STDOUT)
        try:
            wait_for("dockerd", lambda: ok(["docker", "info"]), timeout=60)
            yield
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where the plugin exists, else v1.29 (`docker-compose`)."""
    if ok(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    sys.exit("no Docker Compose: install the compose plugin or Debian's docker-compose")


def choose_bases() -> dict[str, str]:
    chosen = {name: os.environ[name] for name in OFFICIAL if os.environ.get(name)}
    if len(chosen) == len(OFFICIAL):
        return chosen
    if not os.environ.get("LOCAL_BASES") and all(
        ok(["docker", "image", "inspect", image]) or ok(["docker", "pull", "-q", image])
        for name, image in OFFICIAL.items()
        if name not in chosen
    ):
        return {**OFFICIAL, **chosen}
    log("no image registry answers: bases from Debian's packages (deploy/local-bases/build.sh)")
    started = time.monotonic()
    exports = output([str(REPO / "deploy" / "local-bases" / "build.sh")])
    figures["local_bases_s"] = round(time.monotonic() - started, 1)
    local = dict(re.findall(r"^export (\w+)=(\S+)$", exports, re.MULTILINE))
    return {**{name: local[name] for name in OFFICIAL}, **chosen}


def build_image(bases: dict[str, str]) -> str:
    image = f"spira-assets:{IMAGE_TAG}"
    log(f"docker build --build-arg BASE_IMAGE={bases['BASE_IMAGE']} -t {image} .")
    started = time.monotonic()
    run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={bases['BASE_IMAGE']}", "-t", image,
         str(REPO)], stdout=subprocess.DEVNULL)  # fmt: skip
    figures["build_s"] = round(time.monotonic() - started, 1)
    size = int(output(["docker", "image", "inspect", "-f", "{{.Size}}", image]).strip())
    figures["image_size_gb"] = round(size / 1e9, 2)
    listed = json.loads(output(["docker", "run", "--rm", image, "pip", "list", "--format=json"]))
    installed = {item["name"].lower() for item in listed}
    assert "dagster" in installed and "torch" in installed, "the runtime set is not installed"
    shipped = sorted(installed & DEV_TOOLS)
    assert not shipped, f"development tools in the runtime image: {shipped}"
    refuse_example_key(image)
    log(f"image {image}: {figures['image_size_gb']} GB, built in {figures['build_s']} s, "
        f"{len(installed)} packages, no development tool")  # fmt: skip
    return image


def refuse_example_key(image: str) -> None:
    """The placeholder key that .env.example ships must stop the code location in the image."""
    example = (COMPOSE_FILE.parent / ".env.example").read_text()
    key = re.search(r"^SPIRA_PSEUDONYM_KEY=(.+)$", example, re.MULTILINE)
    assert key, ".env.example has no SPIRA_PSEUDONYM_KEY line"
    loaded = subprocess.run(
        ["docker", "run", "--rm", "-e", f"SPIRA_PSEUDONYM_KEY={key.group(1).strip()}", image,
         "python", "-c", "import spira_assets.definitions"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert loaded.returncode != 0, "the code location loads with the example's placeholder key"
    assert "openssl rand -hex 32" in loaded.stderr, loaded.stderr[-2000:]


# ---- the stack -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, compose: list[str], bases: dict[str, str], data: Path) -> None:
        self.compose = [*compose, "-p", PROJECT, "-f", str(COMPOSE_FILE)]
        self.ui_port = free_port()
        self.env = {
            **os.environ,
            **bases,
            "SPIRA_IMAGE_TAG": IMAGE_TAG,
            "SPIRA_DATA_HOST_DIR": str(data),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "SPIRA_PSEUDONYM_KEY": secrets.token_hex(32),
            "SPIRA_UI_PORT": str(self.ui_port),
            "SPIRA_MLFLOW_PORT": str(free_port()),
        }
        self.data = data

    def __call__(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run([*self.compose, *args], env=self.env, cwd=COMPOSE_FILE.parent, **kwargs)

    def exec_code(self, *args: str) -> str:
        return self("exec", "-T", "code", *args, capture_output=True).stdout

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ui_port}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def ui_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/server_info", timeout=5):
                pass
            data = self.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name "
                "locationOrLoadError { __typename } } } } }"
            )
        except (urllib.error.URLError, ConnectionError, OSError, AssertionError):
            return False
        entries = data["workspaceOrError"]["locationEntries"]
        return any(
            e["name"] == "spira_assets"
            and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
            for e in entries
        )

    def runs(self, batch: str) -> list[dict[str, Any]]:
        data = self.graphql(
            "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { "
            "runId status jobName tags { key value } } } } }",
            {"f": {"tags": [{"key": "dagster/partition", "value": batch}]}},
        )
        found = data["runsOrError"]["results"]
        for item in found:
            item["tags"] = {t["key"]: t["value"] for t in item["tags"]}
        return list(found)

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
        )
        return str(data["runOrError"]["status"])

    def launch(self, job: str, batch: str) -> str:
        data = self.graphql(
            "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
            {
                "p": {
                    "selector": {
                        "repositoryLocationName": "spira_assets",
                        "repositoryName": "__repository__",
                        "jobName": job,
                    },
                    "runConfigData": {},
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": batch}]},
                }
            },
        )
        result = data["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def rows(self, batches: list[str]) -> dict[str, dict[str, list[int]]]:
        """Per table and batch: [rows, distinct keys], read by the code container."""
        script = textwrap.dedent(f"""
            import json
            from spira_assets.environment import data_layout
            from spira_assets.storage.lake import Lake
            from spira_assets.storage.warehouse import Warehouse
            layout = data_layout()
            warehouse = Warehouse(layout.warehouse, Lake(layout.lake))
            out = {{}}
            for table, key in {PER_BATCH_TABLES!r}.items():
                frame = warehouse.query(
                    f"SELECT batch_id, count(*) AS n, count(DISTINCT {{key}}) AS d "
                    f"FROM {{table}} GROUP BY batch_id"
                )
                rows = frame.iter_rows(named=True)
                out[table] = {{r["batch_id"]: [r["n"], r["d"]] for r in rows}}
            print(json.dumps(out))
        """)
        found = json.loads(self.exec_code("python", "-c", script).strip().splitlines()[-1])
        return {t: {b: v for b, v in per.items() if b in batches} for t, per in found.items()}


def expected_files(data: Path, staged: str) -> int:
    manifest = data / "staging" / staged / "_demo_manifest.json"
    return int(json.loads(manifest.read_text())["files"])


def assert_exact_rows(stack: Stack, expected: dict[str, int]) -> None:
    found = stack.rows(list(expected))
    for table in PER_BATCH_TABLES:
        for batch, files in expected.items():
            assert found[table].get(batch) == [files, files], (table, batch, found[table])
    leftovers = [str(p) for p in stack.data.rglob("*.tmp")]
    assert not leftovers, f"partial files left behind: {leftovers}"


def land(data: Path, staged: str, batch: str) -> float:
    """Move a generated batch into the landing zone; `_READY` last. Returns when it was made."""
    source = data / "staging" / staged
    (source / "_READY").unlink(missing_ok=True)
    target = data / "landing" / batch
    shutil.copytree(source, target)
    ready = target / "_READY"
    ready.write_text("deploy-check\n")
    os.chown(ready, CONTAINER_UID, CONTAINER_UID)
    return time.monotonic()


def sensor_run(stack: Stack, batch: str) -> dict[str, Any]:
    def launched() -> dict[str, Any] | None:
        found = [r for r in stack.runs(batch) if r["tags"].get("dagster/sensor_name")]
        return found[0] if found else None

    return wait_for(f"the landing sensor to launch a run for {batch}", launched, every=2)


def finished(stack: Stack, run_id: str) -> str:
    return wait_for(
        f"run {run_id} to finish",
        lambda: (s := stack.run_status(run_id)) in TERMINAL and s,
        every=2,
    )


# ---- the check -------------------------------------------------------------------------------
def check(compose: list[str], bases: dict[str, str], workdir: Path) -> None:
    build_image(bases)
    data = workdir / "data"
    (data / "landing").mkdir(parents=True)
    os.chown(data, CONTAINER_UID, CONTAINER_UID)
    os.chown(data / "landing", CONTAINER_UID, CONTAINER_UID)
    stack = Stack(compose, bases, data)
    try:
        log(f"{' '.join(compose)} up -d (UI on 127.0.0.1:{stack.ui_port})")
        started = time.monotonic()
        stack("up", "-d", "--no-build")
        wait_for("the UI with the code location loaded", stack.ui_ready, every=1)
        figures["compose_up_to_ui_s"] = round(time.monotonic() - started, 1)
        log(f"UI healthy, code location loaded: {figures['compose_up_to_ui_s']} s after up")

        stack.exec_code("spira", "demo-data", "--out", "/data/staging", "--batches", "2",
                        "--participants", "4", "--seed", "7", "--defect-rate", "0")  # fmt: skip
        expected = {"landed-a": expected_files(data, "demo-001"),
                    "landed-b": expected_files(data, "demo-002")}  # fmt: skip

        # a batch lands and the sensor in the daemon container processes it
        ready = land(data, "demo-001", "landed-a")
        first = sensor_run(stack, "landed-a")
        status = finished(stack, first["runId"])
        figures["ready_to_materialized_s"] = round(time.monotonic() - ready, 1)
        assert status == "SUCCESS", f"run {first['runId']} ended {status}"
        assert first["jobName"] == "process_batch"
        assert_exact_rows(stack, {"landed-a": expected["landed-a"]})
        log(f"landed-a: _READY -> run SUCCESS in {figures['ready_to_materialized_s']} s, "
            f"{expected['landed-a']} rows in each per-batch table")  # fmt: skip

        # a second batch; the daemon container is killed while its run is in flight
        land(data, "demo-002", "landed-b")
        victim = sensor_run(stack, "landed-b")
        first_part = data / "lake" / "raw_audio" / "landed-b.parquet"
        wait_for("landed-b's first asset", first_part.exists, every=0.2)
        status_at_kill = stack.run_status(victim["runId"])
        stack("kill", "daemon")
        log(f"daemon killed while run {victim['runId']} was {status_at_kill}")
        time.sleep(5)
        stack("start", "daemon")
        status = finished(stack, victim["runId"])
        figures["killed_daemon_run_status"] = f"{status_at_kill} -> {status}"
        log(f"daemon restarted; the interrupted run ended {status}")
        # the restarted daemon's sensor keeps its cursor: no second run for the same upload
        time.sleep(40)  # longer than the sensor's 30 s interval
        sensor_runs = [r for r in stack.runs("landed-b") if r["tags"].get("dagster/sensor_name")]
        assert len(sensor_runs) == 1, f"the sensor launched landed-b again: {sensor_runs}"
        rerun = stack.launch("process_batch", "landed-b")  # queued: the new daemon launches it
        assert finished(stack, rerun) == "SUCCESS", f"re-run {rerun} failed"
        assert_exact_rows(stack, expected)
        log("re-run through the restarted daemon: SUCCESS, each batch's rows exactly once")
    except BaseException:
        for service in ("daemon", "code", "webserver"):
            stack("logs", "--tail", "40", service, check=False)
        raise
    finally:
        if os.environ.get("KEEP"):
            log(f"KEEP=1: the stack stays up ({' '.join(stack.compose)})")
        else:
            stack("down", "-v", "--remove-orphans", check=False, capture_output=True)


def main() -> None:
    started = time.monotonic()
    with docker_daemon():
        compose = compose_command()
        bases = choose_bases()
        log(f"compose: {' '.join(compose)}; bases: {bases}")
        workdir = Path(tempfile.mkdtemp(prefix="spira-deploy-check-"))
        try:
            check(compose, bases, workdir)
        finally:
            if not os.environ.get("KEEP"):
                shutil.rmtree(workdir, ignore_errors=True)
    figures["total_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures, indent=2))
    log("passed")


if __name__ == "__main__":
    main()
