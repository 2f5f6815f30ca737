"""A real PostgreSQL server for tests: Debian's ``postgresql`` binaries, a fresh cluster in a
temporary directory, a free local port, trust authentication, stopped and removed at the end.

The Makefile's ``system-deps`` target installs the package (``make test`` runs it first).
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from spira_assets_tests.servers import free_port


def postgres_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl (on PATH, or Debian's versioned folder)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3])
    )
    return versions[-1].parent if versions else None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    database: str

    def environment(self) -> dict[str, str]:
        """The variables deploy/dagster/dagster-postgres.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": self.database,
        }

    def connect(self, database: str | None = None) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, dbname=database or self.database
        )

    def create_database(self, name: str) -> None:
        connection = self.connect()
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()

    def scalar(self, sql: str, database: str | None = None) -> object:
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                row = cursor.fetchone()
        finally:
            connection.close()
        return row[0] if row else None


@contextmanager
def postgres_server(database: str = "dagster") -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: run `make system-deps` (apt postgresql)")
    base = Path(tempfile.mkdtemp(prefix="spira-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    data, log, port = base / "data", base / "server.log", free_port()
    user = "spira"

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, cwd=base)

    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=300 "
        "-c fsync=off -c synchronous_commit=off"
    )
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            admin = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{database}"')
            admin.close()
            yield PostgresServer("127.0.0.1", port, user, database)
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    except subprocess.CalledProcessError as error:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL failed: {error.stderr.decode()[-2000:]}\n{tail}") from error
    finally:
        shutil.rmtree(base, ignore_errors=True)
