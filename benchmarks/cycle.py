"""Cycle benchmark (not a test): from a batch's ``_READY`` marker to its last check, under the
running platform, as ``make ui`` starts it (``python -m spira_assets.app.ui``: ``dagster dev`` with
its webserver, daemon and code server, the MLflow UI, the reports server).

    .venv/bin/python benchmarks/cycle.py [--participants 6] [--interval S] [--deployment D]

In a scratch ``DAGSTER_HOME`` and ``SPIRA_DATA_DIR``: start the platform, wait until it answers
and its daemon has evaluated the sensors once (``--settle``), move one demo batch into
``landing/`` and write its ``_READY`` marker, then read the Dagster event log of the run the
landing sensor starts and print, from ``_READY``:
  - sensor wait (``_READY`` -> run created by the landing sensor),
  - queue (enqueued -> dequeued by the run coordinator), launch (dequeued -> run worker starting),
  - code-location load in the run worker (starting -> started),
  - executor start (started -> first step), each step (start -> success), in order,
  - the total to the batch's last asset check and to the end of the run.
``--interval`` sets ``SPIRA_SENSOR_INTERVAL_S`` (the landing sensor's minimum interval);
``--deployment`` sets ``SPIRA_DEPLOYMENT`` (``local``: one process per step from a forkserver;
``single-process``: every step in the run worker); ``--dequeue-interval`` the run queue's poll
(instance.yaml: 1 s since 2026-12-05; Dagster's default is 5). None given: the platform's
defaults.
The last line is ``cycle_s=<ready to last check> sensor_wait_s=<...> run_s=<...>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = "demo-001"
KEY = "7301ed516a9bfe63f2f9f281dc3de485c3a70aeb2036e65f1ad153b97ec7f2e4"  # the benchmarks' key


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=6)
    parser.add_argument("--interval", type=int, default=None, help="SPIRA_SENSOR_INTERVAL_S")
    parser.add_argument("--deployment", default=None, help="SPIRA_DEPLOYMENT")
    parser.add_argument(
        "--dequeue-interval",
        type=int,
        default=None,
        help="the run queue's dequeue_interval_seconds (default: instance.yaml's)",
    )
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after the UI answers")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--events", action="store_true", help="also print the run's event log")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        env = {
            **os.environ,
            "SPIRA_DATA_DIR": str(data),
            "DAGSTER_HOME": str(home),
            "SPIRA_PSEUDONYM_KEY": KEY,
        }
        for name, value in (
            ("SPIRA_SENSOR_INTERVAL_S", args.interval),
            ("SPIRA_DEPLOYMENT", args.deployment),
        ):
            if value is not None:
                env[name] = str(value)
        os.environ.update(env)
        from spira_assets.demo.corpus import DemoSpec, generate_corpus

        staging = Path(tmp) / "staging"
        generate_corpus(DemoSpec(staging, 1, args.participants, seed=11, noise_files=1))
        (staging / BATCH / "_READY").unlink()
        (data / "landing").mkdir(parents=True)
        port = free_port()
        python = sys.executable
        subprocess.run([python, "-m", "spira_assets.app.instance"], env=env, check=True, cwd=ROOT)
        if args.dequeue_interval is not None:  # the file, no longer managed, is left as written
            written = (home / "dagster.yaml").read_text().splitlines()[1:]
            (home / "dagster.yaml").write_text(
                "\n".join(
                    f"  dequeue_interval_seconds: {args.dequeue_interval}"
                    if line.strip().startswith("dequeue_interval_seconds:")
                    else line
                    for line in written
                )
                + "\n"
            )
        started = time.perf_counter()
        ports = ["--port", str(port), "--mlflow-port", str(free_port())]
        log = (Path(tmp) / "ui.log").open("wb")
        ui = subprocess.Popen(
            [python, "-m", "spira_assets.app.ui", *ports, "--reports-port", str(free_port())],
            env=env,
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            while not answers(f"http://127.0.0.1:{port}/server_info"):
                if ui.poll() is not None or time.perf_counter() - started > args.timeout:
                    raise SystemExit((Path(tmp) / "ui.log").read_text()[-3000:])
                time.sleep(0.5)
            up = time.perf_counter() - started
            time.sleep(args.settle)
            shutil.move(str(staging / BATCH), str(data / "landing" / BATCH))
            ready = time.time()
            (data / "landing" / BATCH / "_READY").touch()
            report(ready, args.timeout, up, args)
        finally:
            log.close()
            os.killpg(ui.pid, signal.SIGTERM)
            try:
                ui.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)


def report(ready: float, timeout: float, up: float, args: argparse.Namespace) -> None:
    import dagster as dg

    instance = dg.DagsterInstance.get()
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    record = None
    while time.time() - ready < timeout:
        records = instance.get_run_records(
            dg.RunsFilter(job_name="process_batch", tags={"dagster/partition": BATCH})
        )
        if records and records[0].dagster_run.status in finished:
            record = records[0]
            break
        time.sleep(0.5)
    if record is None:
        raise SystemExit(f"no finished run for {BATCH} within {timeout} s")
    run = record.dagster_run
    events = [e for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    first: dict[str, float] = {}
    steps: dict[str, list[float]] = {}  # step: [process launched, started, finished]
    checks: list[float] = []
    for entry in events:
        kind = entry.dagster_event_type.value  # type: ignore[union-attr]
        if kind == "ENGINE_EVENT" and entry.message.startswith("Started process for run"):
            kind = "RUN_WORKER_PROCESS"
        first.setdefault(kind, entry.timestamp)
        key = entry.step_key
        if key and kind in ("STEP_WORKER_STARTING", "STEP_START"):
            times = steps.setdefault(key, [entry.timestamp] * 3)
            times[1] = times[2] = entry.timestamp
        if key and kind in ("STEP_SUCCESS", "STEP_FAILURE") and key in steps:
            steps[key][2] = entry.timestamp
        if kind == "ASSET_CHECK_EVALUATION":
            checks.append(entry.timestamp)
    created = record.create_timestamp.timestamp()
    if args.events:
        for entry in events:
            kind = entry.dagster_event_type.value  # type: ignore[union-attr]
            print(
                f"{entry.timestamp - ready:7.2f} {kind} {entry.step_key or ''} {entry.message[:70]}"
            )
    end = first.get("PIPELINE_SUCCESS", first.get("PIPELINE_FAILURE", created))

    def at(kind: str) -> float:
        return first.get(kind, created)

    def between(label: str, begin: str, end: str) -> tuple[str, float]:
        return label, at(end) - at(begin)

    first_step = min((s[0] for s in steps.values()), default=end)
    rows = [
        ("sensor wait (_READY -> run created by the landing sensor)", created - ready),
        between("queue (enqueued -> launched)", "PIPELINE_ENQUEUED", "PIPELINE_STARTING"),
        between("run worker process start", "PIPELINE_STARTING", "RUN_WORKER_PROCESS"),
        between("code location load in the run worker", "RUN_WORKER_PROCESS", "PIPELINE_START"),
        ("executor start (run started -> first step launched)", first_step - at("PIPELINE_START")),
    ]  # fmt: skip
    for key, (launched, begun, done) in sorted(steps.items(), key=lambda item: item[1][0]):
        rows.append((f"step {key}: process start / work", (begun - launched, done - begun)))  # type: ignore[arg-type]
    last_check = max(checks, default=end)
    rows += [
        ("**total: _READY -> last check**", last_check - ready),
        ("_READY -> run finished", end - ready),
    ]
    print(
        f"{datetime.now().isoformat(timespec='seconds')}; {args.participants} participants; "
        f"sensor interval {args.interval or 'default (10 s)'}; deployment "
        f"{args.deployment or 'default (local)'}; UI answered {up:.1f} s after start; "
        f"run {run.status.value}; load average {os.getloadavg()[0]:.2f}"
    )
    print("| stage | seconds |")
    print("|---|---|")
    for label, seconds in rows:
        shown = (
            " / ".join(f"{x:.1f}" for x in seconds)
            if isinstance(seconds, tuple)
            else f"{seconds:.1f}"
        )
        print(f"| {label} | {shown} |")
    print(
        f"cycle_s={last_check - ready:.1f} sensor_wait_s={created - ready:.1f} "
        f"run_s={end - created:.1f}"
    )


if __name__ == "__main__":
    main()
