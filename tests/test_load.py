"""Load: 500 concurrent sessions retrieving and deleting mail, against every binding.

``pop3 serve --backend NAME`` runs in a subprocess (so that this client does
not share its GIL) over 1000 users' Maildirs, while a delivery thread keeps
dropping new mail into them (tmp/ then new/, as a delivery agent does). 500
client sessions (``pop3_asyncio``'s client, all in this process) log in as a
random user, list the unique ids, RETR and check each message byte for byte,
DELE it and QUIT -- for POP3_LOAD_SECONDS seconds (default 60; CI uses the
default, ``POP3_LOAD_SECONDS=10`` is enough while developing). Then delivery
stops and one more session per user drains what is left.

Asserted: no protocol error of any kind; every delivered message retrieved
and deleted exactly once, counted by its unique id at the ``+OK`` to QUIT
that committed it (a message committed twice, or never, fails); every
Maildir empty at the end. Two sessions on one user's Maildir meet its lock:
the second gets ``-ERR [IN-USE]``, which is expected (RFC 2449 section 8.1.2)
and retried, and counted. Sessions per second are printed for each binding.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bindings import NAMES
from pop3_asyncio import InUseError, connect
from served import PopServer, crlf, deliver, stored, write_users

LOAD_SECONDS = float(os.environ.get("POP3_LOAD_SECONDS", "60"))
CONCURRENCY = 500
USERS = [f"load{n:04d}" for n in range(1000)]
PASSWORD = "load-test-pw"
SEED = 1939
SESSION_TIMEOUT = 60.0
DELIVERIES_PER_SECOND = 200


@dataclass
class Tally:
    delivered: dict[str, bytes] = field(default_factory=dict)  # uid (file name): bytes
    committed: collections.Counter[str] = field(default_factory=collections.Counter)
    sessions: int = 0
    in_use: int = 0
    retrieved: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Delivery(threading.Thread):
    """Delivers new mail to random users until stopped."""

    def __init__(self, root: Path, tally: Tally, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.tally = tally
        self.rng = rng
        self.stop = threading.Event()
        self.serial = 0

    def deliver_one(self) -> None:
        self.serial += 1
        user = self.rng.choice(USERS)
        name = f"{1_700_000_000 + self.serial}.M{self.serial}P9.load"
        lines = self.rng.randrange(1, 60)
        data = b"Subject: %s\n\n" % name.encode() + b".line of the body\n" * lines
        with self.tally.lock:  # known before any session can see it
            self.tally.delivered[name] = data
        deliver(self.root / user, name, data)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for _ in range(DELIVERIES_PER_SECOND // 20):
                self.deliver_one()


async def one_session(port: int, user: str, tally: Tally, *, drain: bool = False) -> bool:
    """Retrieve, check and delete what ``user`` has; whether it committed (False: IN-USE)."""
    deleted: list[str] = []
    try:
        async with connect("127.0.0.1", port, tls=None, timeout=SESSION_TIMEOUT) as client:
            await client.login(user, PASSWORD)
            uids = await client.uidl()
            numbers = sorted(uids)
            if not drain:
                numbers = numbers[:5]
            for msg in numbers:
                data = await client.retr(msg)
                expected = tally.delivered.get(uids[msg])
                if expected is None or data != crlf(expected):
                    tally.errors.append(f"{user}: RETR {msg} ({uids[msg]}) differs")
                await client.dele(msg)
                deleted.append(uids[msg])
            await client.quit()
    except InUseError:
        tally.in_use += 1
        return False
    # Committed by the +OK to QUIT: each message exactly once, ever.
    tally.committed.update(deleted)
    tally.retrieved += len(deleted)
    tally.sessions += 1
    return True


async def load(port: int, tally: Tally, seconds: float) -> float:
    """CONCURRENCY clients, sessions back to back until ``seconds`` are up; the time taken."""
    started = time.monotonic()
    deadline = started + seconds

    async def attempt(user: str, rng: random.Random) -> None:
        try:
            if not await one_session(port, user, tally):
                await asyncio.sleep(rng.uniform(0, 0.01))  # IN-USE: another user soon
        except Exception as exc:  # any other failure is a protocol error
            tally.errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)

    async def client(n: int) -> None:
        own = random.Random(f"{SEED}-{n}")
        while time.monotonic() < deadline:
            await attempt(own.choice(USERS), own)

    await asyncio.gather(*(client(n) for n in range(CONCURRENCY)))
    return time.monotonic() - started


async def drain_all(port: int, tally: Tally) -> None:
    """One more session per user (50 at a time) takes whatever is left."""
    limit = asyncio.Semaphore(50)

    async def drain(user: str) -> None:
        async with limit:
            for _ in range(50):
                if await one_session(port, user, tally, drain=True):
                    return
                await asyncio.sleep(0.05)  # a last session may still hold the lock
            tally.errors.append(f"{user}: stayed in use")

    await asyncio.gather(*(drain(user) for user in USERS))


@pytest.mark.parametrize("backend", NAMES)
def test_500_concurrent_sessions_retrieve_and_delete_everything_once(
    tmp_path: Path, backend: str
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * CONCURRENCY:
        assert hard >= 4 * CONCURRENCY, f"RLIMIT_NOFILE hard limit {hard} is too low"
        resource.setrlimit(resource.RLIMIT_NOFILE, (4 * CONCURRENCY, hard))
    root = tmp_path / "maildirs"
    users = write_users(tmp_path / "users", dict.fromkeys(USERS, PASSWORD))
    tally = Tally()
    delivery = Delivery(root, tally, random.Random(SEED))
    for _ in range(2 * len(USERS)):  # mail waiting at the start
        delivery.deliver_one()
    # All 500 clients come from 127.0.0.1: no limit per address.
    unlimited = ("--max-sessions-per-address", "0")
    with PopServer(tmp_path, backend, users, root, *unlimited) as server:
        delivery.start()
        try:
            elapsed = asyncio.run(load(server.port, tally, LOAD_SECONDS))
        finally:
            delivery.stop.set()
            delivery.join(10)
        during = tally.sessions
        asyncio.run(drain_all(server.port, tally))
        assert server.proc.poll() is None, server.stderr
        assert server.stop() == 0
    rate = during / elapsed
    print(
        f"{backend}: {during} sessions in {elapsed:.1f} s = {rate:.0f} sessions/s, "
        f"{tally.retrieved} messages retrieved and deleted, "
        f"{len(tally.delivered)} delivered, {tally.in_use} IN-USE answers (retried)"
    )
    assert tally.errors == []
    twice = [uid for uid, n in tally.committed.items() if n > 1]
    assert twice == [], f"committed twice: {twice[:10]}"
    never = tally.delivered.keys() - tally.committed.keys()
    assert never == set(), f"never retrieved and deleted: {sorted(never)[:10]}"
    assert tally.committed.keys() == tally.delivered.keys()
    assert all(stored(root / user) == {} for user in USERS)
    assert during > CONCURRENCY  # the load phase did run sessions


@pytest.mark.parametrize("backend", NAMES)
def test_listen_backlog_takes_a_burst_of_connections(tmp_path: Path, backend: str) -> None:
    """The listen queue holds a burst of connections (the 500 above arrive at once).

    With asyncio's default backlog (100) or Python's (128) the kernel drops the
    SYNs past it, and those clients wait 1, 3, 7... seconds to retry. ``ss``
    shows a listening socket's backlog as its Send-Q.
    """
    (tmp_path / "maildirs").mkdir()
    users = write_users(tmp_path / "users", {"load": PASSWORD})
    with PopServer(tmp_path, backend, users, tmp_path / "maildirs") as server:
        out = subprocess.run(
            ["ss", "-Hltn", f"sport = :{server.port}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    backlogs = [int(line.split()[2]) for line in out.splitlines()]
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert backlogs and min(backlogs) >= min(1024, somaxconn), out
