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

A killed server's leases stay until they expire (``--lease-seconds 1`` here): logins meet
``[IN-USE]`` for at most that long after a restart, and are retried.

Set POP3_CRASH_SEED to replay a run; the seed in use is printed.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from bindings import NAMES
from pop3_maildrop import PostgresStorage
from served import PopServer, RawClient, crlf, env, write_users

pytest_plugins = ["peers", "postgres"]

SEED = int(os.environ.get("POP3_CRASH_SEED", "20261207"))
KILLS = 3
"""Server kills per binding."""
USERS = [f"user{n}" for n in range(4)]
PASSWORD = "crash-test-pw"
LEASE = "1"


def message(rng: random.Random, name: str) -> bytes:
    """A message of 200 octets to 40 KiB, LF or CRLF line ends, dot lines."""
    body = b"".join(
        b"%s line %d of %s\n" % (rng.choice([b"", b".", b".."]), n, name.encode())
        for n in range(rng.randrange(5, 1500))
    )
    out = b"From: sender@example.org\nSubject: " + name.encode() + b"\n\n" + body
    return out.replace(b"\n", b"\r\n") if rng.random() < 0.3 else out


@dataclass
class Outcome:
    user: str
    deleted: set[str] = field(default_factory=set)  # uids whose DELE got +OK
    quit_sent: bool = False
    quit_ok: bool = False

    @property
    def unanswered(self) -> bool:
        return self.quit_sent and not self.quit_ok


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


class KillableClient(RawClient):
    def line(self) -> bytes:
        line = super().line()
        if not line.endswith(b"\n"):
            raise ConnectionResetError("the server went away")
        return line


class Worker(threading.Thread):
    """Sessions for one user, one after another, until told to stop."""

    def __init__(self, port: int, user: str, ledger: Ledger, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.user = user
        self.ledger = ledger
        self.rng = rng
        self.stop = threading.Event()
        self.sessions = 0
        self.in_use = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            outcome = Outcome(self.user)
            try:
                self.session(outcome)
            except OSError:
                pass  # the server was killed: what was answered is in `outcome`
            except AssertionError as exc:
                self.errors.append(f"{self.user}: {exc}")
                return
            finally:
                self.ledger.outcomes.append(outcome)

    def session(self, outcome: Outcome) -> None:
        rng = self.rng
        with KillableClient(self.port, timeout=5) as client:
            assert client.greeting.startswith(b"+OK"), client.greeting
            answer = client.login(self.user, PASSWORD)
            if answer.startswith(b"-ERR [IN-USE]"):
                # A killed server's lease, until it expires; or the last session's,
                # until the keeper thread has deleted it.
                self.in_use += 1
                time.sleep(0.02)
                return
            assert answer.startswith(b"+OK"), answer
            self.sessions += 1
            assert client.command(b"UIDL").startswith(b"+OK")
            uids = {}
            for line in client.multiline().split(b"\r\n")[:-1]:
                number, uid = line.split(b" ")
                uids[int(number)] = uid.decode()
            assert client.command(b"LIST").startswith(b"+OK")
            sizes = dict(line.split(b" ") for line in client.multiline().split(b"\r\n")[:-1])
            originals = self.ledger.originals[self.user]
            for number, uid in uids.items():
                assert int(sizes[b"%d" % number]) == len(crlf(originals[uid])), uid
            numbers = sorted(uids)
            for msg in rng.sample(numbers, min(len(numbers), rng.randrange(0, 3))):
                assert client.retr(msg) == crlf(originals[uids[msg]]), f"RETR {msg} differs"
            for msg in rng.sample(numbers, min(len(numbers), rng.randrange(1, 4))):
                answer = client.command(b"DELE %d" % msg)
                assert answer.startswith(b"+OK"), answer
                outcome.deleted.add(uids[msg])
            if rng.random() < 0.15:
                return  # hang up without QUIT: nothing may be deleted
            outcome.quit_sent = True
            answer = client.command(b"QUIT")
            assert answer.startswith(b"+OK"), answer
            outcome.quit_ok = True


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
        in_db = stored(url, user)
        for uid, data in in_db.items():
            assert uid in originals, f"{user}: unknown message {uid}"
            assert data == originals[uid], f"{user}: {uid} differs"
        outcomes = [o for o in ledger.outcomes if o.user == user]
        for outcome in outcomes:
            if outcome.quit_ok:
                kept = outcome.deleted & in_db.keys()
                assert not kept, f"{user}: deleted by an answered QUIT, still there: {kept}"
        may_be_gone = set().union(*(o.deleted for o in outcomes if o.quit_sent))
        lost = originals.keys() - in_db.keys() - may_be_gone
        assert not lost, f"{user}: lost without a QUIT that deleted them: {lost}"
        unanswered = set().union(
            *(o.deleted for o in ledger.outcomes[since:] if o.user == user and o.unanswered)
        )
        counts["in the window, committed"] += len(unanswered - in_db.keys())
        counts["in the window, not committed"] += len(unanswered & in_db.keys())
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
            server = PopServer(
                tmp_path, backend, users, tmp_path, "--lease-seconds", LEASE, storage=pg_url
            )
            workers = [
                Worker(server.port, user, ledger, random.Random(f"{SEED}-{backend}-{kill}-{u}"))
                for u, user in enumerate(USERS)
            ]
            for worker in workers:
                worker.start()
            time.sleep(rng.uniform(0.2, 0.9))
            server.kill()
            for worker in workers:
                worker.stop.set()
                worker.join(10)
                assert not worker.is_alive()
                assert not worker.errors, worker.errors
                totals["sessions"] += worker.sessions
                totals["in use"] += worker.in_use
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
        time.sleep(rng.uniform(0.4, 1.0))
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        done.update(int(line) for line in proc.stdout.read().split())
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
