"""Several hosts on one PostgreSQL: three ``pop3 serve --storage`` behind HAProxy, under load.

Three ``pop3 serve --storage URL --proxy-protocol`` processes on different ports stand for
three hosts (each with its own connection pool and lease keeper); HAProxy balances between
them round robin, with ``send-proxy-v2`` (the layout of docs/deployment.md). The load test's
clients (tests/loadgen.py: log in as a random user, UIDL, RETR and check up to five messages,
DELE them, QUIT) run through HAProxy for POP3_LOAD_SECONDS seconds (default 8 here) while
mail is delivered at the same time through ``pop3 lmtp`` (two LMTP clients, smtplib.LMTP)
and ``pop3 deliver`` (one process per message, as an MTA runs it). Then delivery stops and
one more session per user drains what is left.

Asserted: no error of any kind (a refused delivery, a protocol error, a message that differs
from what was delivered); every delivered message retrieved and deleted exactly once,
counted at the ``+OK`` to QUIT that committed it; every maildrop empty at the end; every
host served sessions. Two sessions for one user meet the lease whichever hosts they land
on: the second gets ``-ERR [IN-USE]``, retried and counted.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import resource
import smtplib
import subprocess
import threading
from pathlib import Path

from delivery import Lmtp
from haproxy import haproxy
from loadgen import Tally, check, drain_all, load, message
from pop3_maildrop import PostgresStorage
from postgres import PostgresCluster, create_database
from served import PopServer, env, pop3, write_users

pytest_plugins = ["peers", "postgres"]

LOAD_SECONDS = float(os.environ.get("POP3_LOAD_SECONDS", "8"))
HOSTS = 3
CONCURRENCY = 100
USERS = [f"host{n:03d}" for n in range(200)]
PASSWORD = "hosts-test-pw"
SEED = 2033
LMTP_CLIENTS = 2


class LmtpDelivery(threading.Thread):
    """One LMTP connection delivering to random users until stopped (about 40 a second)."""

    def __init__(self, server: Lmtp, tally: Tally, n: int) -> None:
        super().__init__(daemon=True)
        self.server, self.tally, self.n = server, tally, n
        self.rng = random.Random(f"{SEED}-lmtp-{n}")
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        try:
            client = self.server.client()
        except Exception as exc:
            self.tally.errors.append(f"LMTP connect: {exc!r}")
            return
        try:
            while not self.stop.wait(0.025):
                self.sent += 1
                key = f"lmtp{self.n}-{self.sent}"
                data = message(key, self.rng.randrange(1, 60)).replace(b"\n", b"\r\n")
                self.tally.add(key, data)
                user = self.rng.choice(USERS)
                refused = client.sendmail("sender@example.org", [f"{user}@example.org"], data)
                if refused:
                    self.tally.errors.append(f"LMTP refused {key}: {refused}")
            client.quit()
        except smtplib.SMTPException as exc:
            self.tally.errors.append(f"LMTP: {exc!r}")
        finally:
            client.close()


class DeliverProcesses(threading.Thread):
    """``pop3 deliver`` one process per message, one after another, until stopped."""

    def __init__(self, url: str, tally: Tally) -> None:
        super().__init__(daemon=True)
        self.url, self.tally = url, tally
        self.rng = random.Random(f"{SEED}-deliver")
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            key = f"mda-{self.sent}"
            data = message(key, self.rng.randrange(1, 60))
            self.tally.add(key, data)
            envelope = b"From sender@example.org  Mon Dec  7 06:00:00 2026\n"
            user = self.rng.choice(USERS)
            result = subprocess.run(
                pop3("deliver", "--storage", self.url, "--user", user),
                input=envelope + data,
                capture_output=True,
                env=env(),
                timeout=60,
                check=False,
            )
            if result.returncode != 0:
                self.tally.errors.append(
                    f"pop3 deliver {key}: {result.returncode} {result.stderr!r}"
                )


def test_three_hosts_behind_haproxy_retrieve_and_delete_everything_once(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8 * CONCURRENCY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * CONCURRENCY), hard))
    url = create_database(postgres, "hosts")
    users = write_users(tmp_path / "users", dict.fromkeys(USERS, PASSWORD))
    tally = Tally()
    rng = random.Random(SEED)
    with PostgresStorage(url, pool_min=0, pool_max=2) as storage:  # mail waiting at the start
        waiting = [(f"start-{n}", message(f"start-{n}", rng.randrange(1, 60))) for n in range(400)]
        for key, data in waiting:
            tally.add(key, data)
        storage.deliver_many((rng.choice(USERS), data) for _, data in waiting)

    # 3 hosts x 10 connections, lmtp 4, pop3 deliver 1, this test's checks: far below 100.
    options = ("--proxy-protocol", "--max-sessions-per-address", "0", "--pool-max", "10")
    options += ("-v",)  # one line per session (PopServer passes -q)
    servers = [
        PopServer(tmp_path, "asyncio", users, tmp_path, *options, storage=url) for _ in range(HOSTS)
    ]
    lmtp_server = Lmtp(tmp_path, url, users, "--listen", "127.0.0.1:0", "--pool-max", "4")
    try:
        with haproxy(
            tmp_path, [s.port for s in servers], "send-proxy-v2", maxconn=4 * CONCURRENCY
        ) as front:
            lmtp_threads = [LmtpDelivery(lmtp_server, tally, n) for n in range(LMTP_CLIENTS)]
            mda = DeliverProcesses(url, tally)
            for thread in [*lmtp_threads, mda]:
                thread.start()
            try:
                elapsed = asyncio.run(
                    load(
                        front,
                        USERS,
                        PASSWORD,
                        tally,
                        LOAD_SECONDS,
                        concurrency=CONCURRENCY,
                        seed=SEED,
                    )
                )
            finally:
                for thread in [*lmtp_threads, mda]:
                    thread.stop.set()
                for thread in [*lmtp_threads, mda]:
                    thread.join(60)
            during = tally.sessions
            asyncio.run(drain_all(front, USERS, PASSWORD, tally))
        for server in servers:
            assert server.proc.poll() is None, server.stderr
    finally:
        codes = [server.stop() for server in servers]
        assert lmtp_server.stop() == 0, lmtp_server.stderr
    assert codes == [0] * HOSTS
    per_host = [
        len(re.findall(r"session ended: .* reason=quit$", server.stderr, re.M))
        for server in servers
    ]
    by_lmtp = sum(thread.sent for thread in lmtp_threads)
    print(
        f"{during} sessions in {elapsed:.1f} s = {during / elapsed:.0f} sessions/s through "
        f"HAProxy (per host, all phases: {per_host}), {tally.retrieved} messages retrieved "
        f"and deleted, {len(tally.delivered)} delivered ({len(waiting)} before, {by_lmtp} by "
        f"LMTP, {mda.sent} by pop3 deliver), {tally.in_use} IN-USE answers (retried)"
    )
    check(tally)
    assert by_lmtp > 0 and mda.sent > 0
    assert all(count > 0 for count in per_host), per_host
    assert tally.in_use > 0  # sessions for one user met across hosts, and were refused
    assert during > CONCURRENCY  # the load phase did run sessions
    with PostgresStorage(url, pool_min=0, pool_max=1) as storage:
        left = {user: len(storage.open(user).messages) for user in USERS}
    assert {user: n for user, n in left.items() if n} == {}
