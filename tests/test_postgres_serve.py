"""``pop3 serve --storage postgresql://...`` on every binding, against a real PostgreSQL.

Over the wire: ids and CRLF sizes, the snapshot fixed at login, deletion only at QUIT
(guarantee 1); one session per maildrop across two server processes, ``-ERR [IN-USE]``
(guarantee 2); PostgreSQL down at login gives ``-ERR [SYS/TEMP]`` and the server keeps
running; PostgreSQL restarted under logged-in sessions: what they ask meanwhile fails
cleanly, nothing is deleted that a QUIT did not commit, and new sessions succeed once it
is back (guarantee 5). The command line: flags, exclusions, defaults.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from bindings import NAMES
from pop3_cli._defaults import LEASE_SECONDS, POOL_MAX, STORAGE_TIMEOUT
from pop3_maildrop import PostgresStorage
from postgres import PostgresCluster, create_database
from served import PopServer, RawClient, crlf, env, pop3, write_users

pytest_plugins = ["peers", "postgres"]

PASSWORD = "pg-serve-pw"
SERVERS = [*NAMES, "workers"]


def serve(tmp_path: Path, kind: str, url: str, *args: str) -> PopServer:
    """``pop3 serve --storage URL`` with binding ``kind`` (``workers``: asyncio, 2 workers)."""
    users = write_users(tmp_path / "users", {f"u{n}": PASSWORD for n in range(4)})
    if kind == "workers":
        return PopServer(tmp_path, "asyncio", users, tmp_path, "--workers", "2", *args, storage=url)
    return PopServer(tmp_path, kind, users, tmp_path, *args, storage=url)


def listing(client: RawClient, command: bytes) -> dict[int, bytes]:
    assert client.command(command).startswith(b"+OK")
    return {
        int(number): value
        for number, value in (line.split(b" ") for line in client.multiline().split(b"\r\n")[:-1])
    }


def login(port: int, user: str, timeout: float = 10.0) -> RawClient:
    """A session logged in as ``user``, retrying while a lease just given back is held."""
    deadline = time.monotonic() + timeout
    while True:
        client = RawClient(port)
        answer = client.login(user, PASSWORD)
        if answer.startswith(b"+OK"):
            return client
        client.close()
        assert answer.startswith(b"-ERR [IN-USE]") and time.monotonic() < deadline, answer
        time.sleep(0.02)


@pytest.mark.parametrize("kind", SERVERS)
def test_ids_sizes_snapshot_and_in_use(tmp_path: Path, pg_url: str, kind: str) -> None:
    user = f"u{SERVERS.index(kind)}"
    messages = [b"Subject: one\n\n.dot line\nbody\n", b"Subject: two\r\n\r\nbody\r\n"]
    with PostgresStorage(pg_url) as storage:
        uids = [storage.deliver(user, m).encode() for m in messages]
        with serve(tmp_path, kind, pg_url) as server, serve(tmp_path, "sync", pg_url) as other:
            client = login(server.port, user)
            with client:
                assert listing(client, b"UIDL") == {1: uids[0], 2: uids[1]}
                assert listing(client, b"LIST") == {
                    n: b"%d" % len(crlf(m)) for n, m in enumerate(messages, 1)
                }
                late = storage.deliver(user, b"Subject: late\n\nlate\n").encode()
                # One session per maildrop, whichever server the second login reaches.
                for port in (server.port, other.port):
                    with RawClient(port) as second:
                        assert second.login(user, PASSWORD).startswith(b"-ERR [IN-USE]")
                assert client.retr(1) == crlf(messages[0])
                assert client.retr(2) == messages[1]
                assert client.command(b"STAT") == b"+OK 2 %d\r\n" % sum(
                    len(crlf(m)) for m in messages
                )
                assert client.command(b"DELE 1").startswith(b"+OK")
                assert client.command(b"DELE 2").startswith(b"+OK")
                assert client.command(b"QUIT").startswith(b"+OK")
            # The commit released the lease: the other server serves the user at once.
            with RawClient(other.port) as after:
                assert after.login(user, PASSWORD).startswith(b"+OK")
                assert listing(after, b"UIDL") == {1: late}  # delivered during the session
                assert after.command(b"DELE 1").startswith(b"+OK")
                after.close()  # no QUIT: nothing deleted
            with login(server.port, user) as again:
                assert listing(again, b"UIDL") == {1: late}
                assert again.command(b"QUIT").startswith(b"+OK")
            assert server.stop() == 0
            assert other.stop() == 0


def test_a_stopped_server_gives_its_leases_back(tmp_path: Path, pg_url: str) -> None:
    with serve(tmp_path, "asyncio", pg_url) as server:
        held = login(server.port, "u3")  # no QUIT: the server's shutdown ends it
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT mailbox FROM pop3_leases").fetchall() == [("u3",)]
        assert server.stop() == 0  # SIGTERM
        held.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM pop3_leases").fetchone() == (0,)


def test_database_down_at_login_then_back(tmp_path: Path, pg_faults: PostgresCluster) -> None:
    cluster = pg_faults
    url = create_database(cluster, "down_at_login")
    with PostgresStorage(url) as storage:
        storage.deliver("u0", b"Subject: kept\n\nkept\n")
    with serve(tmp_path, "asyncio", url, "--storage-timeout", "2") as server:
        cluster.stop()
        with RawClient(server.port) as client:
            assert client.command(b"USER u0").startswith(b"+OK")
            started = time.monotonic()
            client.send(b"PASS " + PASSWORD.encode() + b"\r\n")
            # The login waits for the database in a worker thread, never on the
            # event loop: another client is greeted meanwhile.
            time.sleep(0.2)
            with RawClient(server.port) as other:
                greeted = time.monotonic() - started
                assert other.greeting.startswith(b"+OK")
            assert client.line().startswith(b"-ERR [SYS/TEMP]")
            waited = time.monotonic() - started
            assert greeted < 1.5 < 1.9 < waited < 8
        assert server.proc.poll() is None  # still serving
        # The operator is told why, once (not once a login):
        assert server.stderr.count("PostgreSQL storage: the database is unavailable") in (1, 2)
        assert "Connection refused" in server.stderr  # the reason, not only the wait
        assert "error connecting" not in server.stderr  # not the pool's line per attempt
        cluster.start()
        with login(server.port, "u0") as client:
            assert client.retr(1) == b"Subject: kept\r\n\r\nkept\r\n"
            assert client.command(b"QUIT").startswith(b"+OK")
        assert server.stop() == 0


@pytest.mark.parametrize("kind", NAMES)
def test_database_restarted_under_sessions(
    tmp_path: Path, pg_faults: PostgresCluster, kind: str
) -> None:
    cluster = pg_faults
    url = create_database(cluster, f"restarted_{kind}")
    with PostgresStorage(url) as storage:
        for user in ("u0", "u1", "u2"):
            storage.deliver(user, b"Subject: 1\n\none\n")
            storage.deliver(user, b"Subject: 2\n\ntwo\n")
    with serve(tmp_path, kind, url, "--storage-timeout", "1") as server:
        sessions = {user: login(server.port, user) for user in ("u0", "u1", "u2")}
        for client in sessions.values():
            assert client.command(b"DELE 1").startswith(b"+OK")
        cluster.stop()
        # During the outage: a read fails cleanly, a QUIT deletes nothing.
        assert sessions["u0"].command(b"RETR 2").startswith(b"-ERR [SYS/TEMP]")
        assert sessions["u0"].command(b"QUIT").startswith(b"-ERR [SYS/TEMP]")
        cluster.start()
        # After it: the sessions go on (their leases are rows, kept by the restart).
        assert sessions["u1"].retr(2) == b"Subject: 2\r\n\r\ntwo\r\n"
        assert sessions["u1"].command(b"QUIT").startswith(b"+OK")
        sessions["u2"].close()  # hung up: nothing deleted
        for client in sessions.values():
            client.close()
        expected = {"u0": 2, "u1": 1, "u2": 2}
        for user, count in expected.items():
            with login(server.port, user) as client:
                assert client.command(b"STAT").startswith(b"+OK %d " % count), user
                assert client.command(b"QUIT").startswith(b"+OK")
        assert server.stop() == 0


def test_serve_help_and_arguments(tmp_path: Path, pg_url: str) -> None:
    help_text = subprocess.run(
        pop3("serve", "--help"), capture_output=True, text=True, env=env(), check=True
    ).stdout
    for flag in ("--storage URL", "--pool-max N", "--lease-seconds SECONDS", "--storage-timeout"):
        assert flag in help_text
    assert f"(default {POOL_MAX})" in help_text
    assert f"default {LEASE_SECONDS:g}" in help_text
    assert f"(default {STORAGE_TIMEOUT:g})" in help_text
    storage = PostgresStorage(pg_url)
    assert (storage.pool_max, storage.lease_seconds, storage.timeout) == (
        POOL_MAX,
        LEASE_SECONDS,
        STORAGE_TIMEOUT,
    )
    users = write_users(tmp_path / "users", {"u0": PASSWORD})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            pop3("serve", "--port", "0", *args),
            capture_output=True,
            text=True,
            env=env(),
            timeout=30,
            check=False,
        )

    both = run("--users", str(users), "--storage", pg_url, "--maildir", str(tmp_path))
    assert both.returncode == 2 and "exclude each other" in both.stderr
    no_users = run("--storage", pg_url)
    assert no_users.returncode == 2 and "--storage needs --user" in no_users.stderr
    bad = run("--users", str(users), "--storage", "mysql://somewhere/db")
    assert bad.returncode == 2 and "postgresql://" in bad.stderr
    zero = run("--users", str(users), "--storage", pg_url, "--pool-max", "0")
    assert zero.returncode == 2 and "--pool-max" in zero.stderr
    short = run("--users", str(users), "--storage", pg_url, "--lease-seconds", "0.1")
    assert short.returncode == 2 and "--lease-seconds must be at least 0.5" in short.stderr


def test_a_password_in_the_url_is_warned_about_and_never_logged(
    tmp_path: Path, pg_url: str
) -> None:
    url = pg_url.replace("@", ":not-needed-secret@")  # trusted anyway: loopback, test cluster
    with serve(tmp_path, "sync", url, "-v") as server:
        with login(server.port, "u3") as client:
            assert client.command(b"QUIT").startswith(b"+OK")
        assert server.stop() == 0
    assert "prefer ~/.pgpass" in server.stderr
    assert "not-needed-secret" not in server.stderr
    # The session's end line was logged (with -v), naming the user: the URL is nowhere in it.
    assert re.search(
        r"session ended: rip=127\.0\.0\.1 .* user=<u3> .* reason=quit$", server.stderr, re.M
    )
