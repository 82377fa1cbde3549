"""A private, throw-away PostgreSQL server for tests.

``running_postgres()`` finds the server binaries (``initdb``, ``pg_ctl``, ``postgres``),
initialises a cluster in a temporary directory, starts it on a free loopback port (its unix
socket also in that directory), creates a database and yields a :class:`PostgresServer`;
on exit it stops the server and removes the directory. Durability is switched off
(``fsync=off``) because the data dies with the test run anyway.

PostgreSQL refuses to run as root. Under root (CI containers) the server runs as an
unprivileged system user (``postgres`` from the Debian package, else a ``qserv-pg`` user
created with ``useradd``) through ``runuser``, and the temporary directory is given to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.ports import free_ports

SUPERUSER = "qserv"  # the cluster's superuser role (trust authentication, loopback only)
FALLBACK_OS_USER = "qserv-pg"
INSTALL_HINT = (
    "install the PostgreSQL server binaries (Debian: `apt-get install -y postgresql`, "
    "as `make test` does), or set QSERV_PG_BIN to the directory holding initdb and pg_ctl"
)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the server would not start."""


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, newest version first.

    Looks at ``$QSERV_PG_BIN`` (only there if set), Debian's ``/usr/lib/postgresql/<ver>/bin``, the directory a
    ``pg_ctl`` on ``/usr/local/bin`` or on ``PATH`` links to, and ``/usr/lib/postgresql/bin``.
    """
    candidates: list[Path] = []
    if os.environ.get("QSERV_PG_BIN"):
        # an explicit choice is authoritative: never fall back to another installation
        candidates.append(Path(os.environ["QSERV_PG_BIN"]))
        return candidates[0] if _has_server(candidates[0]) else None
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: _version_key(p.parent.name), reverse=True)
    for pg_ctl in ("/usr/local/bin/pg_ctl", shutil.which("pg_ctl")):
        if pg_ctl and Path(pg_ctl).exists():
            # Debian's /usr/bin/pg_ctl is a wrapper script: its real directory is the one above
            candidates.append(Path(pg_ctl).resolve().parent)
    return next((d for d in candidates if _has_server(d)), None)


def _has_server(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres"))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _server_os_user() -> str | None:
    """The unprivileged user to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
        check=True,
        capture_output=True,
    )
    return FALLBACK_OS_USER


@dataclass(frozen=True)
class PostgresServer:
    """A running test server; ``url`` names the database created at start."""

    bin_dir: Path
    base_dir: Path
    port: int
    os_user: str | None
    database: str

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    def url_for(self, database: str) -> str:
        """The connection URL of ``database`` on this server (TCP on loopback)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def create_schema(self, name: str) -> str:
        """Create an empty schema in the server's database; return a URL whose search_path is it.

        A thousand times cheaper than a database (0.1 ms vs 200 ms): the way to give each
        test a fresh, isolated store.
        """
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url}?options=-csearch_path%3D{name}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


def _run(cmd: list[str], os_user: str | None, cwd: Path, timeout: float = 120) -> None:
    if os_user is not None:
        cmd = ["runuser", "-u", os_user, "--", *cmd]
    # cwd: the server user cannot read root's working directory, and initdb insists on one
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(cmd)} failed with status {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )


def _start(server: PostgresServer) -> None:
    options = " ".join(
        [
            f"-p {server.port}",
            f"-k {server.socket_dir}",
            "-c listen_addresses=127.0.0.1",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c shared_buffers=16MB",
            "-c max_connections=60",
            "-c max_wal_senders=0",
            "-c wal_level=minimal",
        ]
    )
    log = server.base_dir / "server.log"
    try:
        _run(
            [str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(log), "-w", "-t", "60"]
            + ["-o", options, "start"],
            server.os_user,
            server.base_dir,
        )
    except PostgresUnavailable as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise PostgresUnavailable(f"{exc}\nserver log:\n{tail}") from exc


def _stop(server: PostgresServer) -> None:
    try:
        _run(
            [str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop"],
            server.os_user,
            server.base_dir,
            timeout=60,
        )
    except (PostgresUnavailable, subprocess.TimeoutExpired):
        pass  # not running (start failed) or already gone: nothing left to stop


@contextmanager
def running_postgres(database: str = "qserv_test") -> Iterator[PostgresServer]:
    """Start a private PostgreSQL server with an empty ``database``; stop and delete it on exit."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(f"PostgreSQL server binaries not found: {INSTALL_HINT}")
    os_user = _server_os_user()
    # Under root, /tmp rather than $TMPDIR: the server user must be able to reach the directory.
    base = Path(tempfile.mkdtemp(prefix="qserv-pg-", dir="/tmp" if os_user else None))
    try:
        (base / "sock").mkdir()
        if os_user is not None:
            info = pwd.getpwnam(os_user)
            for path in (base, base / "sock"):
                os.chown(path, info.pw_uid, info.pw_gid)
        server = PostgresServer(bin_dir, base, 0, os_user, database)
        _run(
            [str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", SUPERUSER, "--auth=trust"]
            + ["--encoding=UTF8", "--locale=C", "--no-sync"],
            os_user,
            base,
        )
        # a program outside the tests may still take the port before the server binds it: retry
        for attempt in range(3):
            # below the ephemeral range and given to no other test process (tests/ports.py)
            server = PostgresServer(bin_dir, base, free_ports(1)[0], os_user, database)
            try:
                _start(server)
                break
            except PostgresUnavailable:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        try:
            server.create_database(database)
            yield server
        finally:
            _stop(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    # Manual check: python -m tests.pgserver
    with running_postgres() as srv:
        with psycopg.connect(srv.url) as c:
            print(srv.url, c.execute("SELECT version()").fetchone())


def required_postgres(purpose: str) -> Iterator[PostgresServer]:
    """A pytest fixture body: a private server, a skip when QSERV_SKIP_POSTGRES=1, else a failure
    naming the remedy (never a silent skip: CI must prove the PostgreSQL backend)."""
    import pytest

    if os.environ.get("QSERV_SKIP_POSTGRES") == "1":
        pytest.skip(f"QSERV_SKIP_POSTGRES=1: {purpose} not tested")
    with ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as exc:
            problem = str(exc)
        else:
            yield server
            return
    # failed outside the except block, so the report is the remedy, not a chained traceback
    pytest.fail(
        f"{purpose} needs a PostgreSQL server: {problem}\n(set QSERV_SKIP_POSTGRES=1 to skip)", pytrace=False
    )
