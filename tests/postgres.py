"""Pytest fixture: a real PostgreSQL server (Debian's `postgresql` binaries) on a free loopback port.

Import the fixture into a test module (``from postgres import postgres_server``). It runs ``initdb`` into a
fresh temporary folder and ``pg_ctl start`` with TCP on 127.0.0.1 only, trust authentication (nothing
but this machine's loopback can connect, and the cluster is deleted afterwards) and no Unix socket in
the system folder. PostgreSQL refuses to run as root: when the tests run as root, the server runs as
the ``postgres`` system user (created by the Debian package) through ``runuser``, or ``setpriv``.

The binaries come from ``apt-get install postgresql`` (.ci/run installs it; ``BIODIV_PG_BIN`` points
at another ``bin`` folder). A missing install is an error that says so, never a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_ENV = "BIODIV_PG_BIN"
SERVER_USER = "postgres"  # system account of Debian's package; owns the cluster when tests run as root


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    db_name: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.db_name}"

    def env(self) -> dict[str, str]:
        """The variables config/dagster.postgres.yaml reads (password empty: trust authentication)."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": self.db_name,
        }


def pg_bin_dir() -> Path:
    """The newest installed ``/usr/lib/postgresql/<major>/bin`` holding initdb and pg_ctl."""
    override = os.environ.get(BIN_ENV)
    candidates = [override] if override else glob.glob("/usr/lib/postgresql/*/bin")
    found = [Path(c) for c in candidates if (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file()]
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin: install them "
            f"with `apt-get install postgresql` (.ci/run does), or set {BIN_ENV} to their folder."
        )
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    """Run as ourselves, or (as root, which PostgreSQL refuses) as the postgres system user."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise RuntimeError(
            f"Running as root and there is no {SERVER_USER!r} user to run PostgreSQL as: install Debian's "
            "`postgresql` package (it creates the user) or run the tests as a normal user."
        ) from exc
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--", *command]
    return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups", "--", *command]


def _run(command: list[str], log: Path) -> None:
    # cwd: the server user may not be allowed into the caller's working directory.
    result = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120, cwd=log.parent)
    if result.returncode != 0:
        tail = log.read_text()[-2000:] if log.is_file() else ""
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")


def _wait_ready(port: int, timeout: float = 30) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user=SERVER_USER, dbname="postgres").close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_server(base: Path) -> PostgresServer:
    """initdb + pg_ctl start under ``base`` (a folder the server user may write); returns the running server."""
    bin_dir = pg_bin_dir()
    data_dir, log = base / "data", base / "server.log"
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    base.chmod(0o700)
    _run(
        [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
        log,
    )
    port = _free_port()
    # fsync off: a throw-away test cluster; durability costs seconds per run on a shared disk.
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c fsync=off"
    _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", options, "-w", "start"], log)
    server = PostgresServer("127.0.0.1", port, SERVER_USER, "dagster", data_dir)
    try:
        _wait_ready(port)
        import psycopg2

        connection = psycopg2.connect(host=server.host, port=port, user=server.user, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {server.db_name}")
        connection.close()
    except Exception:
        stop_server(server)
        raise
    return server


def stop_server(server: PostgresServer) -> None:
    command = [str(pg_bin_dir() / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop"]
    subprocess.run(_as_server_user(command), capture_output=True, timeout=60, cwd=server.data_dir.parent)


@pytest.fixture(scope="session")
def postgres_server():
    """A running PostgreSQL server with an empty database ``dagster``; stopped and deleted after the session."""
    # Not tmp_path: pytest's folders are private to the test user, and the server may run as another one.
    base = Path(tempfile.mkdtemp(prefix="biodiv-pg-"))
    try:
        server = start_server(base)
        try:
            yield server
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)
