"""A private PostgreSQL for the tests: its own cluster in a temporary directory, on loopback.

``PostgresCluster`` runs ``initdb`` and ``pg_ctl`` (Debian's ``postgresql`` package; the
binaries live in ``/usr/lib/postgresql/<version>/bin``, the newest is taken) in a directory
of its own under the system temporary directory, listening only on a free port of 127.0.0.1
(its Unix socket in that directory too, never the system's). PostgreSQL refuses to run as
root, so when the tests run as root (as in CI) every server command runs as ``nobody``
through util-linux's ``setpriv``, and the directory belongs to ``nobody``. The cluster keeps
``fsync`` on (the crash tests rely on it), trusts loopback connections (only this test
process reaches it), and has a configurable ``max_connections``.

Fixtures (test modules load this file with ``pytest_plugins = ["postgres"]``):

- ``postgres``: one cluster for the whole test session (``max_connections = 100``);
- ``pg_url``: a fresh database of that cluster for each test module (``CREATE DATABASE``
  from ``template0``), as a ``postgresql://`` URL;
- ``pg_cluster``: a factory for a cluster of a test's own (fault tests stop, kill and
  restart it: ``stop()``, ``kill()``, ``start()``, ``restart()``); stopped when the test ends;
- ``pg_faults``: a cluster for the fault tests of one module (each test that stops it
  starts it again); it saves an ``initdb`` per test.

A missing PostgreSQL or psycopg skips the test with an install hint, or fails it with
``POP3_REQUIRE_PEERS=1`` (``peers.unavailable``). PYTEST_DONT_REWRITE (it is imported
before it is a plugin).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peers import HOST, free_port, unavailable

__all__ = [
    "PostgresCluster",
    "create_database",
    "find_bindir",
    "pg_cluster",
    "pg_faults",
    "pg_url",
    "postgres",
]

UNPRIVILEGED = "nobody"
_START_TIMEOUT = 60.0


def find_bindir() -> str | None:
    """The ``bin`` directory of the newest installed PostgreSQL server, or ``None``."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        version = Path(initdb).parent.parent.name
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", version):
            found.append((tuple(int(part) for part in version.split(".")), Path(initdb).parent))
    if found:
        return str(max(found)[1])
    on_path = shutil.which("initdb")  # another distribution, or a build of one's own
    return str(Path(on_path).parent) if on_path else None


def require_postgres() -> str:
    """The server's ``bin`` directory and psycopg importable; else skip (or fail)."""
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL is not installed (Debian package postgresql; "
            "'make peers' installs every peer)"
        )
        raise AssertionError("unreachable")  # pragma: no cover - skip/fail raise
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install 'pop3-sansio[postgresql]')")
    return bindir


class PostgresCluster:
    """A PostgreSQL cluster of its own, in a temporary directory; ``close()`` removes it."""

    def __init__(self, bindir: str, *, max_connections: int = 100) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pop3-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_other = os.geteuid() == 0
        if self._as_other:
            entry = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",  # the cluster being made; the server itself keeps fsync on
        )
        conf = {
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": str(max_connections),
            "fsync": "on",
            "shared_buffers": "'32MB'",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\n# pop3-sansio tests\n")
            f.writelines(f"{key} = {value}\n" for key, value in conf.items())
        self.start()

    def __repr__(self) -> str:
        return f"PostgresCluster(port={self.port})"

    @property
    def url(self) -> str:
        """The URL of the default ``postgres`` database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` (connect as the superuser ``postgres``)."""
        return f"postgresql://postgres@{HOST}:{self.port}/{name}"

    def _command(self, program: str, *args: str) -> list[str]:
        command = [os.path.join(self.bindir, program), *args]
        if self._as_other:
            command = [
                "setpriv",
                f"--reuid={UNPRIVILEGED}",
                "--regid=nogroup",
                "--clear-groups",
                *command,
            ]
        return command

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            self._command(program, *args),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            timeout=_START_TIMEOUT,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{log[-4000:]}"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """A clean (``fast``) shutdown: sessions are disconnected, then the server stops."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """An ``immediate`` shutdown: no checkpoint, crash recovery at the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        """Stop (fast) and start again, on the same port."""
        self.stop()
        self.start()

    def running(self) -> bool:
        """Whether the postmaster is running."""
        result = subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "status"),
            capture_output=True,
            check=False,
            cwd=self.root,
        )
        return result.returncode == 0

    def close(self) -> None:
        """Stop the server (if running) and remove the directory."""
        try:
            if self.running():
                self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def create_database(cluster: PostgresCluster, name: str) -> str:
    """A new, empty database ``name`` (dropped first if it exists); its URL."""
    import psycopg

    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    return cluster.database_url(name)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 20 ms until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One PostgreSQL for the test session (``max_connections = 100``)."""
    cluster = PostgresCluster(require_postgres())
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def pg_url(postgres: PostgresCluster, request: pytest.FixtureRequest) -> str:
    """A fresh database for the test module, as a URL."""
    name = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.lower())[:50]
    return create_database(postgres, name)


@pytest.fixture
def pg_cluster() -> Iterator[Callable[..., PostgresCluster]]:
    """A factory of clusters of the test's own (to stop and restart); all closed afterwards."""
    bindir = require_postgres()
    made: list[PostgresCluster] = []

    def make(*, max_connections: int = 100) -> PostgresCluster:
        cluster = PostgresCluster(bindir, max_connections=max_connections)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        with contextlib.suppress(Exception):
            cluster.close()


@pytest.fixture(scope="module")
def pg_faults() -> Iterator[PostgresCluster]:
    """A cluster for the module's fault tests; a test that stops it must start it again."""
    cluster = PostgresCluster(require_postgres())
    try:
        yield cluster
    finally:
        cluster.close()
