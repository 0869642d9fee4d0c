"""Throwaway servers for the lake's multi-machine set-up, on loopback: a PostgreSQL cluster
(Debian's package) as DuckLake's catalog and moto's S3-compatible server as its data path.

Both are session fixtures, started on free ports on first use and stopped (their files removed)
at the end. Without the binaries the tests that use them skip, saying why, except under CI
(the `CI` environment variable set), where they fail: CI must never silently skip them.

Use them in a test module by importing the fixtures:

    from helpers.lake_servers import postgres_server, s3_server  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Credentials of the throwaway servers only (nothing real); the tests check they leak nowhere.
POSTGRES_USER = "lake"
POSTGRES_PASSWORD = "pg-test-password-0451"
S3_ACCESS_KEY_ID = "AKIATESTLAKE0451"
S3_SECRET_ACCESS_KEY = "s3-test-secret-0451"
S3_REGION = "us-east-1"
S3_BUCKET = "close-calls-lake"
START_SECONDS = 60


def _postgres_bin() -> Path:
    """Debian's PostgreSQL binaries (the newest installed major version), or
    CLOSE_CALLS_TEST_POSTGRES_BIN's."""
    if os.environ.get("CLOSE_CALLS_TEST_POSTGRES_BIN"):
        return Path(os.environ["CLOSE_CALLS_TEST_POSTGRES_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


def unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where these servers are part of the suite."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the lake server tests, but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}: {_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def _stop(process: subprocess.Popen, signal_number: int) -> None:
    if process.poll() is None:
        process.send_signal(signal_number)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def catalog(self, dbname: str) -> str:
        """DuckLake's catalog for a database of this server, without the password (libpq reads
        PGPASSWORD from the environment)."""
        return f"postgres:dbname={dbname} host={self.host} port={self.port} user={self.user}"

    def environ(self) -> dict[str, str]:
        """What a client process needs in its environment: the password, for libpq."""
        return {"PGPASSWORD": self.password}

    def create_database(self, name: str) -> str:
        """A new, empty database (one per test: a lake per catalog database)."""
        subprocess.run(
            [
                "psql",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f'CREATE DATABASE "{name}"',
            ],
            env={**os.environ, **self.environ()},
            check=True,
            capture_output=True,
            timeout=60,
        )
        return name

    def dump(self, dbname: str) -> str:
        """Every table of a database as text (`pg_dump`, over TCP): what the catalog holds."""
        done = subprocess.run(
            ["pg_dump", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", dbname],
            env={**os.environ, **self.environ()},
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str

    def environ(self) -> dict[str, str]:
        """The standard AWS variables a client reads to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix` in the bucket."""
        pages = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]


def _as_postgres_user() -> dict:
    """Popen arguments that run a command as `postgres` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1:<free port>, password auth."""
    binaries = _postgres_bin()
    initdb, postgres = binaries / "initdb", binaries / "postgres"
    if not (initdb.is_file() and postgres.is_file() and shutil.which("psql")):
        unavailable(f"PostgreSQL is not installed ({initdb}; apt-get install postgresql)")
    run_as = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="close-calls-postgres-"))
    process = None
    try:
        if run_as:
            shutil.chown(root, user="postgres", group="postgres")
        password_file = root / "password"
        password_file.write_text(POSTGRES_PASSWORD + "\n")
        if run_as:
            shutil.chown(password_file, user="postgres", group="postgres")
        log = root / "postgres.log"
        initialized = subprocess.run(
            [
                str(initdb),
                "-D",
                str(root / "data"),
                "-U",
                POSTGRES_USER,
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,  # a folder the postgres user may enter
            **run_as,
        )
        if initialized.returncode != 0:
            raise RuntimeError(f"initdb failed: {initialized.stdout}{initialized.stderr}")
        password_file.unlink()
        port = free_port()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    str(postgres),
                    "-D",
                    str(root / "data"),
                    "-k",
                    str(root),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=root,
                **run_as,
            )
        _wait_for_port(port, process, "postgres", log)
        yield PostgresServer("127.0.0.1", port, POSTGRES_USER, POSTGRES_PASSWORD)
    finally:
        if process is not None:
            import signal

            _stop(process, signal.SIGINT)  # "fast" shutdown
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3-compatible server in its own process on 127.0.0.1:<free port>, with a bucket."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as error:
        unavailable(f"moto's server is not installed ({error}; pip install 'moto[server]')")
    import signal

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_for_port(port, process, "moto_server", log)
        server = S3Server(
            endpoint_url=f"http://127.0.0.1:{port}",
            bucket=S3_BUCKET,
            access_key_id=S3_ACCESS_KEY_ID,
            secret_access_key=S3_SECRET_ACCESS_KEY,
            region=S3_REGION,
        )
        server.client().create_bucket(Bucket=S3_BUCKET)
        yield server
    finally:
        _stop(process, signal.SIGTERM)
