"""Crash safety with PostgreSQL: ``pop3 serve --storage`` and a delivering process, SIGKILLed.

As tests/test_crash_safety.py does for Maildir: each binding's server runs sessions that
RETR, DELE and QUIT (or hang up) for several users at once and is killed at a random
moment, again and again, with new mail delivered between the runs; meanwhile a process
delivering messages (some spanning many chunk rows) through ``PostgresStorage.deliver``
is killed at random moments too. After each kill the database is checked against a
ledger of what the clients and the delivering process were told:

* every message stored is byte for byte one that was delivered (never partial), with the
  size it was delivered with, and no message is stored twice;
* a message DELE'd in a session whose QUIT was answered ``+OK`` is gone;
* a message is gone only if some session DELE'd it and then sent QUIT (a session that
  sent QUIT and got no answer may or may not have committed: the one window no server
  can close);
* every delivery the delivering process reported as done is stored.

A killed server's leases are taken over at once by the server restarted on the same
machine (it can tell that their process is gone): as with Maildir, the first login of each
user after a restart must not meet ``[IN-USE]``, although the leases last a minute.

Set POP3_CRASH_SEED to replay a run; the seed in use is printed.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from bindings import NAMES
from crashes import PASSWORD, Outcome, check_user, message, sessions_until_killed
from pop3_maildrop import PostgresStorage
from served import PopServer, crlf, env, write_users

pytest_plugins = ["peers", "postgres"]

SEED = int(os.environ.get("POP3_CRASH_SEED", "20261207"))
KILLS = 3
"""Server kills per binding."""
USERS = [f"user{n}" for n in range(4)]


@dataclass
class Ledger:
    originals: dict[str, dict[str, bytes]] = field(
        default_factory=lambda: {user: {} for user in USERS}
    )
    outcomes: list[Outcome] = field(default_factory=list)
    serial: int = 0

    def deliver(self, storage: PostgresStorage, rng: random.Random, count: int) -> None:
        for user in USERS:
            for _ in range(count):
                self.serial += 1
                data = message(rng, f"m{self.serial}")
                self.originals[user][storage.deliver(user, data)] = data


def stored(url: str, user: str) -> dict[str, bytes]:
    """``{uid: octets}`` of ``user``'s maildrop, straight from the tables."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT m.uid, m.size, m.octets, m.chunks, count(c.seq), "
            "coalesce(string_agg(c.data, '' ORDER BY c.seq), '') "
            "FROM pop3_messages m LEFT JOIN pop3_chunks c ON c.message = m.id "
            "WHERE m.mailbox = %s GROUP BY m.id",
            (user,),
        ).fetchall()
    out = {}
    for uid, size, octets, chunks, count, data in rows:
        assert uid not in out, f"{user}: {uid} twice"
        assert (chunks, octets, size) == (count, len(data), len(crlf(data)) if data else 0)
        out[uid] = bytes(data)
    return out


def check(url: str, ledger: Ledger, since: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for user in USERS:
        originals = ledger.originals[user]
        counts += check_user(user, stored(url, user), originals, ledger.outcomes, since)
    return counts


@pytest.mark.parametrize("backend", NAMES)
def test_server_killed_at_random_points(tmp_path: Path, pg_url: str, backend: str) -> None:
    rng = random.Random(f"{SEED}-server-{backend}")
    print(f"seed {SEED} ({backend})")
    users = write_users(tmp_path / "users", dict.fromkeys(USERS, PASSWORD))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pop3_chunks, pop3_messages, pop3_leases, pop3_schema")
    ledger = Ledger()
    totals: collections.Counter[str] = collections.Counter()
    with PostgresStorage(pg_url) as storage:
        ledger.deliver(storage, rng, 15)
        for kill in range(KILLS):
            since = len(ledger.outcomes)
            server = PopServer(tmp_path, backend, users, tmp_path, storage=pg_url)
            totals += sessions_until_killed(
                server,
                ledger.originals,
                ledger.outcomes,
                f"{SEED}-{backend}-{kill}",
                rng.uniform(0.2, 0.9),
            )
            totals.update(check(pg_url, ledger, since))
            ledger.deliver(storage, rng, rng.randrange(3, 10))
    quits = sum(o.quit_ok for o in ledger.outcomes)
    print(f"{backend}: {KILLS} kills, {dict(totals)}, {quits} answered QUITs")
    assert quits > KILLS
    assert totals["sessions"] > 2 * KILLS


DELIVERER = """
import random, sys
from pop3_maildrop import PostgresStorage

def octets(n):
    rng = random.Random(n)
    size = rng.choice([300, 5000, 70000, 300000])
    return (b"Subject: %d\\n\\n" % n) + rng.randbytes(size).replace(b"\\r", b"")

storage = PostgresStorage(sys.argv[1])
n = int(sys.argv[2])
while True:
    if n % 3:
        storage.deliver("incoming", octets(n), uid="msg-%d" % n)
    else:
        data = octets(n)
        storage.deliver("incoming", (data[i:i + 1000] for i in range(0, len(data), 1000)),
                        uid="msg-%d" % n)
    print(n, flush=True)
    n += 1
"""


def octets(n: int) -> bytes:
    rng = random.Random(n)
    size = rng.choice([300, 5000, 70000, 300000])
    return (b"Subject: %d\n\n" % n) + rng.randbytes(size).replace(b"\r", b"")


def test_delivery_killed_at_random_points(pg_url: str) -> None:
    rng = random.Random(f"{SEED}-deliver")
    print(f"seed {SEED} (deliver)")
    done: set[int] = set()
    start = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", DELIVERER, pg_url, str(start)],
            stdout=subprocess.PIPE,
            env=env(),
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # delivering (started, connected): now kill it
        assert first, "the delivering process died"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        proc.wait()
        done.update(int(line) for line in (first + proc.stdout.read()).split())
        proc.stdout.close()
        in_db = stored(pg_url, "incoming")
        numbers = {int(uid.removeprefix("msg-")) for uid in in_db}
        assert done <= numbers, f"reported delivered, not stored: {done - numbers}"
        for uid, data in in_db.items():
            assert data == octets(int(uid.removeprefix("msg-"))), f"{uid} is partial"
        # The next run starts again from the first one not reported: a message stored
        # but not reported (killed between the commit and the print) is not stored twice.
        start = max(done, default=-1) + 1
    print(f"deliveries reported: {len(done)}; stored: {len(numbers)}")
    assert len(done) > 10
