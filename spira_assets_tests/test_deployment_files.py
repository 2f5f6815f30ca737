"""The deployment files are consistent with each other and with the code.

`make deploy-check` (deploy/check.py) runs the real thing: it builds the image and lets the
compose stack's containers process landed batches. These tests are the fast half, run by
`make test`: the files parse, every file and path they reference exists, every environment
variable the instance reads is set where it is read, every variable the Helm values set is one
the code reads, the locks split runtime from development tools with a hash for every file, and
the k8s switch really selects the Kubernetes executors."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose"
INSTANCE_YAML = DEPLOY / "dagster" / "dagster-postgres.yaml"
DAGSTER_SERVICES = ("migrate", "mlflow", "code", "webserver", "daemon")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _instance_env_vars() -> set[str]:
    return set(re.findall(r"\{env: (\w+)\}", INSTANCE_YAML.read_text()))


def _dockerignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/").removeprefix("**/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, body) for p in prefixes) or fnmatch.fnmatch(parts[-1], body)
        if hit:
            ignored = not negate
    return ignored


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _dockerfile() -> list[dict[str, Any]]:
    return list(DockerfileParser(path=str(REPO / "Dockerfile")).structure)


def test_dockerfile_one_base_argument_cache_order_user_and_entrypoint() -> None:
    instructions = _dockerfile()
    first_from = next(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    global_args = [i["value"] for i in instructions[:first_from] if i["instruction"] == "ARG"]
    assert global_args == ["BASE_IMAGE=python:3.11-slim-bookworm"]  # the one choice, CPU default
    # one FROM, of the chosen base: the legacy builder builds every stage it finds, so a second
    # stage (a CUDA base, say) would be fetched and built by every build
    assert [i["value"] for i in instructions if i["instruction"] == "FROM"] == ["${BASE_IMAGE}"]
    lines = [f"{i['instruction']} {i['value']}" for i in instructions]
    lock_install = next(i for i, line in enumerate(lines) if "-r /tmp/requirements.lock" in line)
    assert "pip install --require-hashes" in lines[lock_install]
    assert lines.index("COPY requirements.lock /tmp/requirements.lock") < lock_install
    assert lock_install < lines.index("COPY spira_assets /src/spira_assets")  # deps layer cached
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    cmd = json.loads(lines[-1].removeprefix("CMD "))
    assert cmd[:3] == ["dagster", "code-server", "start"]
    module = cmd[cmd.index("-m") + 1]
    assert (REPO / (module.replace(".", "/") + ".py")).exists()
    assert f"EXPOSE {cmd[cmd.index('-p') + 1]}" in lines


def test_every_file_the_image_copies_is_in_the_build_context() -> None:
    patterns = _dockerignore()
    sources = []
    for instruction in _dockerfile():
        if instruction["instruction"] == "COPY" and "--from" not in instruction["value"]:
            sources += instruction["value"].split()[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _dockerignored(source.rstrip("/"), patterns), f"{source} is docker-ignored"
    for kept_out in ("data/landing/x.wav", ".venv/bin/python", ".dagster_home/dagster.yaml",
                     "spira_assets/__pycache__/x.pyc", "test-artifacts/a.png", ".git/HEAD",
                     "spira_assets_tests/conftest.py", "requirements-dev.lock",
                     "deploy/compose/.env"):  # fmt: skip
        assert _dockerignored(kept_out, patterns), f"{kept_out} would be sent to the build"


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement in a pip-compile lock."""
    text = (REPO / name).read_text()
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            key = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            entries[key] = (match.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
        else:
            requirement = [line for line in block.splitlines() if line and line[0] != "#"]
            assert not requirement, f"{name}: not an exact pin: {requirement}"
    return entries


def _names(requirements: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ;]", r)[0]).lower() for r in requirements}


def test_locks_split_runtime_from_development_and_pin_every_file_by_hash() -> None:
    runtime, dev = _lock("requirements.lock"), _lock("requirements-dev.lock")
    for name, lock in (("requirements.lock", runtime), ("requirements-dev.lock", dev)):
        unhashed = [package for package, (_, hashes) in lock.items() if not hashes]
        assert not unhashed, f"{name}: no hash for {unhashed}"
        text = (REPO / name).read_text()
        for option in ("--find-links", "--index-url", "--extra-index-url", "file://"):
            assert f"\n{option}" not in text and "file://" not in text, f"{name}: {option}"
    dev_tools = _names(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert dev_tools and not dev_tools & set(runtime), "development tools in the runtime lock"
    assert _names(PYPROJECT["project"]["dependencies"]) <= set(runtime)
    assert dev_tools <= set(dev)
    changed = {p: (v, dev[p][0]) for p, (v, _) in runtime.items() if dev.get(p, (v,))[0] != v}
    assert not changed and set(runtime) <= set(dev), f"the locks disagree: {changed}"
    assert runtime["torch"][0] == "2.11.0" and runtime["torchaudio"][0] == "2.11.0"


def test_the_deploy_check_looks_for_every_development_tool_in_the_image() -> None:
    spec = importlib.util.spec_from_file_location("deploy_check", DEPLOY / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dev_tools = _names(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert dev_tools <= module.DEV_TOOLS
    assert module.COMPOSE_FILE == COMPOSE / "compose.yaml"


def test_local_bases_are_selected_by_the_variables_compose_and_the_dockerfile_read() -> None:
    script = (DEPLOY / "local-bases" / "build.sh").read_text()
    exported = set(re.findall(r'echo "export (\w+)=', script))
    assert exported == {"BASE_IMAGE", "CUDA_BASE_IMAGE", "POSTGRES_IMAGE"}
    compose = (COMPOSE / "compose.yaml").read_text()
    assert "${BASE_IMAGE:-python:3.11-slim-bookworm}" in compose  # the Dockerfile's default
    assert "${POSTGRES_IMAGE:-postgres:16-bookworm}" in compose
    for dockerfile in re.findall(r"build \S+ (\S+\.Dockerfile)", script):
        assert (DEPLOY / "local-bases" / dockerfile).exists(), dockerfile


def test_compose_services_mounts_and_environment() -> None:
    compose = _load(COMPOSE / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", *DAGSTER_SERVICES}
    required = set(re.findall(r"\$\{(\w+):\?", (COMPOSE / "compose.yaml").read_text()))
    example = {
        line.split("=")[0]
        for line in (COMPOSE / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert required <= example, "every required variable has a line in .env.example"
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, (name, target)
        for volume in service.get("volumes", []):
            source = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", volume.split(":")[0])
            if source.startswith("."):
                assert (COMPOSE / source).resolve().exists(), (name, source)
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert _instance_env_vars() <= set(env), name
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
        assert any(v.endswith("/opt/dagster/dagster_home/dagster.yaml:ro")
                   for v in services[name]["volumes"])  # fmt: skip
    code = services["code"]["command"]
    workspace = _load(COMPOSE / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["host"] == "code" and str(workspace["port"]) == code[code.index("-p") + 1]
    for name in ("webserver", "daemon"):
        assert "/opt/spira/compose-workspace.yaml" in services[name]["command"]
    gpu = _load(COMPOSE / "compose.gpu.yaml")["services"]["code"]["deploy"]["resources"]
    assert gpu["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_postgres_instance_yaml_is_valid_dagster_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.instance.config import dagster_instance_config

    for name in _instance_env_vars():
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    config, _ = dagster_instance_config(str(INSTANCE_YAML.parent), INSTANCE_YAML.name)
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]


def _code_reads(variable: str) -> bool:
    return any(variable in p.read_text() for p in (REPO / "spira_assets").rglob("*.py"))


def test_helm_values_match_the_chart_and_the_code() -> None:
    values = _load(DEPLOY / "helm" / "values.yaml")
    # keys of the official chart's values schema (helm/dagster/schema, chart 1.13)
    chart_keys = {"dagsterWebserver", "dagster-user-deployments", "postgresql", "runLauncher",
                  "dagsterDaemon", "telemetry", "concurrency", "computeLogManager", "global",
                  "ingress", "scheduler", "pythonLogs", "migrate", "serviceAccount", "retention",
                  "imagePullSecrets", "busybox", "rabbitmq", "redis", "flower",
                  "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret",
                  "additionalInstanceConfig"}  # fmt: skip
    assert set(values) <= chart_keys
    assert set(values["concurrency"]) <= {"enabled", "pools", "runs"}
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["codeServerArgs"]
    assert (REPO / (args[args.index("-m") + 1].replace(".", "/") + ".py")).exists()
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["SPIRA_DEPLOYMENT"] == "k8s"
    assert env["SPIRA_DATA_DIR"].startswith("s3://")
    for variable in env:
        assert _code_reads(variable), f"{variable} is set for the pods but nothing reads it"
    secret = _load(DEPLOY / "k8s" / "spira-secrets.example.yaml")
    assert {"name": secret["metadata"]["name"]} in deployment["envSecrets"]
    assert _code_reads(next(iter(secret["stringData"])))  # SPIRA_PSEUDONYM_KEY
    mlflow = list(yaml.safe_load_all((DEPLOY / "k8s" / "mlflow.yaml").read_text()))
    service = next(doc for doc in mlflow if doc["kind"] == "Service")
    assert f"//{service['metadata']['name']}." in env["MLFLOW_TRACKING_URI"]
    assert str(service["spec"]["ports"][0]["port"]) in env["MLFLOW_TRACKING_URI"]


def test_the_deployment_switch_selects_kubernetes_or_in_process_executors() -> None:
    script = (
        "import json; from spira_assets.definitions import defs; "
        "jobs = {n: defs.resolve_job_def(n).executor_def.name "
        "for n in ('process_batch', 'prepare_noise', 'train_model')}; "
        "node = defs.resolve_job_def('train_model').graph.node_named('spira_model'); "
        "print(json.dumps({'jobs': jobs, 'tags': node.tags}))"
    )
    env = {**os.environ, "SPIRA_DEPLOYMENT": "k8s"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["jobs"] == {
        "process_batch": "k8s_cpu_steps",
        "prepare_noise": "k8s_cpu_steps",
        "train_model": "k8s_training_steps",
    }
    k8s = json.loads(found["tags"]["dagster-k8s/config"])
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert k8s["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"

    env["SPIRA_DEPLOYMENT"] = "single-process"
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(found["jobs"].values()) == {"in_process"}

    env["SPIRA_DEPLOYMENT"] = "mainframe"
    bad = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "SPIRA_DEPLOYMENT='mainframe'" in bad.stderr


def test_sensor_interval_comes_from_the_environment_and_refuses_nonsense(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spira_assets.deployment import sensor_interval

    monkeypatch.delenv("SPIRA_SENSOR_INTERVAL_S", raising=False)
    assert sensor_interval(30) == 30
    monkeypatch.setenv("SPIRA_SENSOR_INTERVAL_S", "5")
    assert sensor_interval(30) == 5
    monkeypatch.setenv("SPIRA_SENSOR_INTERVAL_S", "0")
    with pytest.raises(ValueError, match="at least 1 second"):
        sensor_interval(30)
