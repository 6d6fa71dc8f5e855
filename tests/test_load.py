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
and deleted exactly once, counted by its key (its Subject) at the ``+OK`` to QUIT
that committed it (a message committed twice, or never, fails); every
Maildir empty at the end. Two sessions on one user's Maildir meet its lock:
the second gets ``-ERR [IN-USE]``, which is expected (RFC 2449 section 8.1.2)
and retried, and counted. Sessions per second are printed for each binding.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import subprocess
import threading
from pathlib import Path

import pytest

from bindings import NAMES
from loadgen import Tally, check, drain_all, load, message
from served import PopServer, deliver, stored, write_users

LOAD_SECONDS = float(os.environ.get("POP3_LOAD_SECONDS", "60"))
CONCURRENCY = 500
USERS = [f"load{n:04d}" for n in range(1000)]
PASSWORD = "load-test-pw"
SEED = 1939
DELIVERIES_PER_SECOND = 200


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
        data = message(name, self.rng.randrange(1, 60))
        self.tally.add(name, data)  # known before any session can see it
        deliver(self.root / user, name, data)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for _ in range(DELIVERIES_PER_SECOND // 20):
                self.deliver_one()


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
            elapsed = asyncio.run(
                load(
                    server.port,
                    USERS,
                    PASSWORD,
                    tally,
                    LOAD_SECONDS,
                    concurrency=CONCURRENCY,
                    seed=SEED,
                )
            )
        finally:
            delivery.stop.set()
            delivery.join(10)
        during = tally.sessions
        asyncio.run(drain_all(server.port, USERS, PASSWORD, tally))
        assert server.proc.poll() is None, server.stderr
        assert server.stop() == 0
    rate = during / elapsed
    print(
        f"{backend}: {during} sessions in {elapsed:.1f} s = {rate:.0f} sessions/s, "
        f"{tally.retrieved} messages retrieved and deleted, "
        f"{len(tally.delivered)} delivered, {tally.in_use} IN-USE answers (retried)"
    )
    check(tally)
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
