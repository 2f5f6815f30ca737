"""``make ui``: the Dagster UI with the MLflow UI and the HTML reports beside it, so the links
on the assets (``assets/links.py``) answer. All three stop together.

    python -m spira_assets.app.ui [--port 3000] [--mlflow-port 5000] [--reports-port 8001]

The MLflow UI is started only for a local (SQLite) store; a tracking server given as
``MLFLOW_TRACKING_URI=http(s)://...`` is its own UI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from spira_assets import environment
from spira_assets.app.instance import ensure_dagster_home


def commands(args: argparse.Namespace, root: Path) -> list[list[str]]:
    bin_dir = Path(sys.executable).parent
    reports = root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    uri = environment.tracking_uri(root)
    found = [
        [
            sys.executable,
            "-m",
            "http.server",
            str(args.reports_port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(reports),
        ],
    ]
    if not uri.startswith(("http://", "https://")):
        found.append(
            [
                str(bin_dir / "mlflow"),
                "ui",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(args.mlflow_port),
            ]
        )
    return found


def start(command: list[str]) -> subprocess.Popen[bytes]:
    """A child in a process group of its own, so that stopping it reaches what it starts in
    turn (MLflow's job consumers, dagster dev's code server and daemon)."""
    return subprocess.Popen(command, start_new_session=True)


def stop(children: list[subprocess.Popen[bytes]], timeout_s: float = 30) -> None:
    """SIGTERM each child's process group, then SIGKILL what is left after ``timeout_s``."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):  # the group outlived its leader
            os.killpg(child.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--reports-port", type=int, default=8001)
    args = parser.parse_args()
    home = ensure_dagster_home()  # DAGSTER_HOME (default .dagster_home) with our instance.yaml
    layout = environment.data_layout()
    root = layout.local_root
    os.environ.setdefault("SPIRA_MLFLOW_UI_URL", f"http://127.0.0.1:{args.mlflow_port}")
    os.environ.setdefault("SPIRA_REPORTS_URL", f"http://127.0.0.1:{args.reports_port}")
    # SIGTERM (a service manager, `kill`) stops everything as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    dagster = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-w",
        "workspace.yaml",
        "-h",
        "127.0.0.1",
        "-p",
        str(args.port),
    ]
    children = []
    try:
        children = [start(c) for c in commands(args, root)]
        print(
            f"Dagster http://127.0.0.1:{args.port}  MLflow {os.environ['SPIRA_MLFLOW_UI_URL']}  "
            f"reports {os.environ['SPIRA_REPORTS_URL']}  (DAGSTER_HOME {home})",
            flush=True,
        )
        children.append(start(dagster))
        sys.exit(children[-1].wait())
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        stop(children)


if __name__ == "__main__":
    main()
