"""PostgreSQL storage at size: a 200 MB message, and 1,000 sessions on 100 connections.

Streaming (guarantee 4): a 200 MB message is delivered with ``PostgresStorage.deliver``
from a file-like stream in a process of its own, then served by ``pop3 serve --storage``
(RETR), byte-exact (SHA-256 of what was sent and of what came back); the peak memory of
the delivering process and the growth of the server's resident memory while it sends are
measured and must stay well under the message size: both sides hold a few 64 KiB chunk
rows, never the message.

Scale (guarantee 2): 1,000 sessions are logged in at once across two server processes
(asyncio and trio) on a PostgreSQL whose ``max_connections`` is 100: each process's pool
holds at most ``--pool-max`` connections, and a session holds none (its lock is a lease
row). All 1,000 logins must succeed, then each session works and quits.

Not in the version tier (noxfile.py): they measure the storage and the database, not the
interpreter.
"""

from __future__ import annotations

import asyncio
import hashlib
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from pop3_maildrop import PostgresStorage
from pop3_maildrop._postgres import STORE_CHUNK
from postgres import PostgresCluster
from served import PopServer, env, write_users

pytest_plugins = ["peers", "postgres"]

BIG = 200_000_000  # 200,000 lines of 1,000 octets
LINE = 998  # octets of text per line, CRLF added: RFC 5322 limit

# The delivering process: a stream of CRLF lines made on the fly (never the whole message
# in memory), delivered, then its peak RSS (KiB) and the SHA-256 of what it sent. The peak is
# VmHWM, this program's own: getrusage's ru_maxrss keeps the parent's RSS at fork across exec
# (Linux), so a large test process would count as the deliverer's.
DELIVERER = """
import hashlib, random, sys
from pop3_maildrop import PostgresStorage

def peak_rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")

class Generated:
    def __init__(self, size):
        self.left = size
        self.rng = random.Random(1939)
        self.digest = hashlib.sha256()
        self.pending = b""

    def read(self, n):
        while len(self.pending) < n and self.left > len(self.pending):
            line = self.rng.randbytes(LINE // 2).hex().encode() + b"\\r\\n"
            self.pending += line
        out = self.pending[: min(n, self.left)]
        self.pending = self.pending[len(out):]
        self.left -= len(out)
        self.digest.update(out)
        return out

storage = PostgresStorage(sys.argv[1])
storage.create_schema()
before = peak_rss()
stream = Generated(int(sys.argv[2]))
uid = storage.deliver("big", stream)
storage.close()
peak = peak_rss()
print(uid, before, peak, stream.digest.hexdigest())
""".replace("LINE", str(LINE))


def test_a_200_mb_message_is_delivered_and_served_in_bounded_memory(
    tmp_path: Path, pg_url: str
) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", DELIVERER, pg_url, str(BIG)],
        capture_output=True,
        env=env(),
        check=True,
        timeout=300,
    ).stdout.split()
    delivered = time.monotonic() - started
    uid, before, peak, digest = out[0], int(out[1]), int(out[2]), out[3].decode()
    with PostgresStorage(pg_url) as storage, storage.open("big") as drop:
        assert [(m.uid, m.size) for m in drop.messages] == [(uid.decode(), BIG)]
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT count(*), max(length(data)) FROM pop3_chunks").fetchone()
    assert rows == (-(-BIG // STORE_CHUNK), STORE_CHUNK)  # stored in chunk rows
    users = write_users(tmp_path / "users", {"big": "pw"})
    with PopServer(tmp_path, "asyncio", users, tmp_path, storage=pg_url) as server:
        import socket

        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"+OK")
            sock.sendall(b"USER big\r\nPASS pw\r\n")
            assert reader.readline().startswith(b"+OK")
            assert reader.readline().startswith(b"+OK")
            baseline = server.rss_kib()
            samples: list[int] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.05):
                    samples.append(server.rss_kib())

            sampler = threading.Thread(target=sample)
            sampler.start()
            retr_started = time.monotonic()
            try:
                sock.sendall(b"RETR 1\r\n")
                assert reader.readline() == b"+OK %d octets\r\n" % BIG
                received = hashlib.sha256()
                count = 0
                # No line of the message starts with ".": the body is sent as it is.
                tail = b""
                while True:
                    chunk = reader.read1(1 << 20)
                    assert chunk, "the server closed in the middle"
                    data = tail + chunk
                    if data.endswith(b"\r\n.\r\n") and count + len(data) - 3 >= BIG:
                        received.update(data[:-3])
                        count += len(data) - 3
                        break
                    received.update(data[:-5])
                    count += len(data) - 5
                    tail = data[-5:]
            finally:
                done.set()
                sampler.join()
            served = time.monotonic() - retr_started
            sock.sendall(b"QUIT\r\n")
            assert reader.readline().startswith(b"+OK")
            reader.close()
        assert server.stop() == 0
    growth = max(samples) - baseline
    print(
        f"200 MB: delivered in {delivered:.1f} s (delivering process peak RSS {peak // 1024} "
        f"MiB, {(peak - before) // 1024} MiB over its start), served in {served:.1f} s "
        f"(server RSS {baseline // 1024} MiB, grew by at most {growth // 1024} MiB, "
        f"{len(samples)} samples)"
    )
    assert count == BIG
    assert received.hexdigest() == digest
    assert peak - before < 40 * 1024  # KiB: a few chunks, not 200 MB
    assert peak < 120 * 1024
    assert growth < 40 * 1024
    assert len(samples) >= 3  # the sampler saw the transfer


SESSIONS = 1000


async def hold_session(port: int, user: str, ready: asyncio.Event) -> bool:
    """Log in as ``user``, wait for ``ready`` (all logged in), then STAT and QUIT."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await reader.readline()).startswith(b"+OK")
        writer.write(b"USER %s\r\n" % user.encode())
        assert (await reader.readline()).startswith(b"+OK")
        writer.write(b"PASS pw\r\n")
        answer = await reader.readline()
        if not answer.startswith(b"+OK"):
            return False
        await ready.wait()
        writer.write(b"STAT\r\n")
        assert await reader.readline() == b"+OK 1 9\r\n"  # b"message" and CRLF
        writer.write(b"QUIT\r\n")
        assert (await reader.readline()).startswith(b"+OK")
        return True
    finally:
        writer.close()


async def all_sessions(ports: list[int], url: str) -> tuple[int, int, int, float]:
    """Log 1,000 sessions in at once; while all are held, count connections and leases."""
    ready = asyncio.Event()
    started = time.monotonic()
    tasks = [
        asyncio.create_task(hold_session(ports[n % 2], f"u{n}", ready)) for n in range(SESSIONS)
    ]
    while True:
        await asyncio.sleep(0.1)
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pop3_leases").fetchone()
            assert row is not None
            if row[0] >= SESSIONS or all(t.done() for t in tasks):
                leases = row[0]
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pop3-sansio'"
                ).fetchone()
                assert row is not None
                connections = row[0]
                break
    logged_in = time.monotonic() - started
    ready.set()
    results = await asyncio.gather(*tasks)
    return sum(results), leases, connections, logged_in


def test_1000_sessions_on_two_servers_with_100_database_connections(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    from postgres import create_database

    url = create_database(postgres, "scale_sessions")
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == ("100",)
    with PostgresStorage(url) as storage:
        storage.deliver_many([(f"u{n}", b"message\n") for n in range(SESSIONS)])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * SESSIONS:  # our 1,000 sockets; each server's 500 (inherited)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * SESSIONS), hard))
    users = write_users(tmp_path / "users", {f"u{n}": "pw" for n in range(SESSIONS)})
    options = ("--pool-max", "10", "--max-sessions-per-address", "0", "--max-sessions", "1000")
    with (
        PopServer(tmp_path, "asyncio", users, tmp_path, *options, storage=url) as one,
        PopServer(tmp_path, "trio", users, tmp_path, *options, storage=url) as two,
    ):
        ok, leases, connections, seconds = asyncio.run(
            asyncio.wait_for(all_sessions([one.port, two.port], url), 180)
        )
        assert one.stop() == 0
        assert two.stop() == 0
    print(
        f"{SESSIONS} sessions logged in at once in {seconds:.1f} s on 2 servers: "
        f"{leases} leases, {connections} database connections; {ok} went through"
    )
    assert leases == SESSIONS
    assert connections <= 20  # two pools of at most 10
    assert ok == SESSIONS
