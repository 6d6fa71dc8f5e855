"""The load test's client side, shared by tests/test_load.py (Maildir) and the multi-host test.

``Tally`` keeps what was delivered and what the sessions committed. Every message carries
its key as its ``Subject:`` (``message(key, lines)``), so a retrieved message is checked
byte for byte against what was delivered whatever unique id the storage gave it. ``load``
runs ``concurrency`` clients (``pop3_asyncio``'s, all in this process), each running
sessions back to back until the time is up: log in as a random user, list the unique ids,
RETR and check up to five messages, DELE them, QUIT. ``drain_all`` then takes whatever is
left, one session per user. A second session on a locked maildrop gets ``-ERR [IN-USE]``
(RFC 2449 section 8.1.2): expected, retried and counted; any other failure is an error.

``check(tally, ...)`` asserts the outcome: no error, every delivered message committed
(retrieved and deleted, counted at the ``+OK`` to QUIT) exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pop3_asyncio import InUseError, connect
from served import crlf

SESSION_TIMEOUT = 60.0
_SUBJECT = re.compile(rb"\ASubject: (\S+)\r?\n")


@dataclass
class Tally:
    delivered: dict[str, bytes] = field(default_factory=dict)  # key: bytes as delivered
    committed: collections.Counter[str] = field(default_factory=collections.Counter)
    sessions: int = 0
    in_use: int = 0
    retrieved: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, data: bytes) -> None:
        """Record a message before it is delivered (before any session can see it)."""
        with self.lock:
            self.delivered[key] = data


def message(key: str, lines: int) -> bytes:
    """A message whose ``Subject:`` is ``key``, with ``lines`` body lines (LF line ends)."""
    return b"Subject: %s\n\n" % key.encode() + b".line of the body\n" * lines


def key_of(data: bytes) -> str | None:
    match = _SUBJECT.match(data)
    return match.group(1).decode() if match else None


async def one_session(
    port: int, user: str, password: str, tally: Tally, *, drain: bool = False
) -> bool:
    """Retrieve, check and delete what ``user`` has; whether it committed (False: IN-USE)."""
    deleted: list[str] = []
    try:
        async with connect("127.0.0.1", port, tls=None, timeout=SESSION_TIMEOUT) as client:
            await client.login(user, password)
            uids = await client.uidl()
            numbers = sorted(uids)
            if not drain:
                numbers = numbers[:5]
            for msg in numbers:
                data = await client.retr(msg)
                key = key_of(data)
                expected = tally.delivered.get(key or "")
                if key is None or expected is None or data != crlf(expected):
                    tally.errors.append(f"{user}: RETR {msg} ({uids[msg]}, {key}) differs")
                await client.dele(msg)
                deleted.append(key or uids[msg])
            await client.quit()
    except InUseError:
        tally.in_use += 1
        return False
    # Committed by the +OK to QUIT: each message exactly once, ever.
    tally.committed.update(deleted)
    tally.retrieved += len(deleted)
    tally.sessions += 1
    return True


async def load(
    port: int,
    users: Sequence[str],
    password: str,
    tally: Tally,
    seconds: float,
    *,
    concurrency: int,
    seed: int,
) -> float:
    """``concurrency`` clients, sessions back to back until ``seconds`` are up; the time taken."""
    started = time.monotonic()
    deadline = started + seconds

    async def attempt(user: str, rng: random.Random) -> None:
        try:
            if not await one_session(port, user, password, tally):
                await asyncio.sleep(rng.uniform(0, 0.01))  # IN-USE: another user soon
        except Exception as exc:  # any other failure is a protocol error
            tally.errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)

    async def client(n: int) -> None:
        own = random.Random(f"{seed}-{n}")
        while time.monotonic() < deadline:
            await attempt(own.choice(users), own)

    await asyncio.gather(*(client(n) for n in range(concurrency)))
    return time.monotonic() - started


async def drain_all(port: int, users: Sequence[str], password: str, tally: Tally) -> None:
    """One more session per user (50 at a time) takes whatever is left."""
    limit = asyncio.Semaphore(50)

    async def drain(user: str) -> None:
        async with limit:
            for _ in range(50):
                if await one_session(port, user, password, tally, drain=True):
                    return
                await asyncio.sleep(0.05)  # a last session may still hold the lock
            tally.errors.append(f"{user}: stayed in use")

    await asyncio.gather(*(drain(user) for user in users))


def check(tally: Tally) -> None:
    """No error; every delivered message committed exactly once, nothing else committed."""
    assert tally.errors == []
    twice = [key for key, n in tally.committed.items() if n > 1]
    assert twice == [], f"committed twice: {twice[:10]}"
    never = tally.delivered.keys() - tally.committed.keys()
    assert never == set(), f"never retrieved and deleted: {sorted(never)[:10]}"
    assert tally.committed.keys() == tally.delivered.keys()
