"""Serving benchmark (not a test): the served champion's throughput and p95 latency with the
prediction log on and off, 8 concurrent clients on loopback.

    .venv/bin/python benchmarks/serving.py --data-dir data [--requests 240] [--clients 8]
                                           [--workers 2] [--rounds 3]

Two ``mlflow models serve`` servers of the registered champion (``models:/...@champion``, the
scoring server ``make serve`` starts) run side by side on free ports, each with ``--workers``
uvicorn processes: one with ``SPIRA_PREDICTION_LOG=off`` (the baseline), one logging into a
scratch copy of the log folder (``SPIRA_DATA_DIR`` pointing at a temporary root, so the data
root's own log is not touched). Rounds alternate between them, so a neighbour's load on a
shared machine falls on both. Each request is one demo recording as base64, as a REST client
sends it. Prints requests/s and p50/p95 latency per mode, the ratio of the log-on figures to
the baseline's, the load average before and after, and checks that the log holds every
request of the logging server exactly once (several workers appended at once).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spira_assets.ml.tracking import REGISTERED_MODEL, default_tracking_uri  # noqa: E402
from spira_assets.monitoring.prediction_log import LOG_FOLDER, PredictionLog  # noqa: E402
from spira_assets_tests.servers import free_port, server  # noqa: E402


def payloads(root: Path, count: int) -> list[bytes]:
    """JSON bodies of ``count`` demo recordings (cycled), one file per request."""
    files = sorted(root.glob("landing/*/audio/*"))[:count]
    if not files:
        raise SystemExit(f"no landed audio under {root}/landing: run `spira demo` first")
    return [
        json.dumps(
            {
                "dataframe_split": {
                    "columns": ["audio_base64"],
                    "data": [[base64.b64encode(f.read_bytes()).decode()]],
                }
            }
        ).encode()
        for f in files
    ]


def round_of(
    port: int, bodies: list[bytes], requests: int, clients: int
) -> tuple[float, list[float]]:
    """Wall seconds and per-request latencies of ``requests`` requests from ``clients``
    threads, each on its own keep-alive connection."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for n in range(per_client):
            body = bodies[(index * per_client + n) % len(bodies)]
            started = time.perf_counter()
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200 or json.loads(answer)["predictions"][0]["error"]:
                raise RuntimeError(f"request failed: {response.status} {answer[:300]!r}")
            with lock:
                latencies.append(elapsed)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--requests", type=int, default=240, help="per mode and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = args.data_dir.resolve()
    bodies = payloads(root, 16)
    scratch = Path(tempfile.mkdtemp(prefix="spira-serving-bench-"))
    base_env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_MODELS_WORKERS": str(args.workers),
        "OMP_NUM_THREADS": "1",  # one torch thread per worker: workers, not threads, scale
    }
    modes = {
        "log off": {**base_env, "SPIRA_PREDICTION_LOG": "off"},
        "log on": {**base_env, "SPIRA_PREDICTION_LOG": "on", "SPIRA_DATA_DIR": str(scratch)},
    }
    if (root / "demo_pseudonym.key").exists():  # pseudonyms in the scratch root as in the root
        shutil.copy(root / "demo_pseudonym.key", scratch / "demo_pseudonym.key")
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
               f"models:/{REGISTERED_MODEL}@champion", "--env-manager", "local",
               "-h", "127.0.0.1", "--workers", str(args.workers)]  # fmt: skip
    load_before = os.getloadavg()
    results: dict[str, tuple[float, list[float]]] = {m: (0.0, []) for m in modes}
    ports = {m: free_port() for m in modes}
    with (
        server([*command, "-p", str(ports["log off"])], f"http://127.0.0.1:{ports['log off']}/ping",
               modes["log off"], ROOT, log=scratch / "off.log", timeout_s=300),
        server([*command, "-p", str(ports["log on"])], f"http://127.0.0.1:{ports['log on']}/ping",
               modes["log on"], ROOT, log=scratch / "on.log", timeout_s=300),
    ):  # fmt: skip
        for mode in modes:  # warm-up: every worker loads torch and the model
            round_of(ports[mode], bodies, args.clients * 2, args.clients)
        warmup = len(list(PredictionLog(_upath(scratch / LOG_FOLDER))))
        for _ in range(args.rounds):
            for mode in modes:
                wall, latencies = round_of(ports[mode], bodies, args.requests, args.clients)
                total, seen = results[mode]
                results[mode] = (total + wall, seen + latencies)
    load_after = os.getloadavg()
    logged = len(list(PredictionLog(_upath(scratch / LOG_FOLDER)))) - warmup
    sent = args.rounds * (args.requests // args.clients) * args.clients
    print(f"{os.cpu_count()} CPUs; {args.workers} workers per server, {args.clients} clients, "
          f"{sent} requests per mode ({args.rounds} alternating rounds)")  # fmt: skip
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")  # fmt: skip
    figures = {}
    for mode, (wall, latencies) in results.items():
        figures[mode] = (len(latencies) / wall, statistics.median(latencies), p95(latencies))
        rate, median, tail = figures[mode]
        print(f"{mode:8}  {rate:7.2f} requests/s  p50 {median * 1000:7.1f} ms  "
              f"p95 {tail * 1000:7.1f} ms")  # fmt: skip
    on, off = figures["log on"], figures["log off"]
    print(f"log on / log off: throughput x{on[0] / off[0]:.3f}, p95 x{on[2] / off[2]:.3f}")
    print(f"log: {logged} records for {sent} requests "
          + ("(every request exactly once)" if logged == sent else "MISMATCH"))  # fmt: skip
    shutil.rmtree(scratch, ignore_errors=True)
    if logged != sent:
        raise SystemExit(1)


def _upath(path: Path):  # type: ignore[no-untyped-def]
    from upath import UPath

    return UPath(path)


if __name__ == "__main__":
    main()
