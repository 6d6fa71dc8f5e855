"""What the crash tests share: random messages, a client the server may drop, a session loop.

``Worker`` runs sessions for one user against a server that may be killed at any moment
(RETR some messages, DELE some, then QUIT or hang up) and records in an ``Outcome`` what
each session was told; the tests then check the storage against those outcomes.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field

from served import PopServer, RawClient, crlf

PASSWORD = "crash-test-pw"


def message(rng: random.Random, name: str) -> bytes:
    """A message of 200 octets to 40 KiB, with LF or CRLF line ends and dot lines."""
    body = b"".join(
        b"%s line %d of %s\n" % (rng.choice([b"", b".", b".."]), n, name.encode())
        for n in range(rng.randrange(5, 1500))
    )
    out = b"From: sender@example.org\nSubject: " + name.encode() + b"\n\n" + body
    return out.replace(b"\n", b"\r\n") if rng.random() < 0.3 else out


@dataclass
class Outcome:
    """What one session was told."""

    user: str
    deleted: set[str] = field(default_factory=set)  # uids whose DELE got +OK
    quit_sent: bool = False
    quit_ok: bool = False

    @property
    def unanswered(self) -> bool:
        """QUIT went out, its answer never came: the unavoidable window."""
        return self.quit_sent and not self.quit_ok


class KillableClient(RawClient):
    """A connection the server may drop at any point: that is an ``OSError``, not a failure."""

    def line(self) -> bytes:
        line = super().line()
        if not line.endswith(b"\n"):
            raise ConnectionResetError("the server went away")
        return line


class Worker(threading.Thread):
    """Sessions for one user, one after another, until told to stop or the server dies.

    ``originals`` maps the user's unique ids to the octets delivered (it may grow between
    runs); each session's ``Outcome`` is appended to ``outcomes``. ``in_use_at_first``:
    whether the first login may meet ``[IN-USE]`` (a killed server's lease, until it
    expires); later logins may (the last session's lock, until it is released).
    """

    def __init__(
        self,
        port: int,
        user: str,
        originals: dict[str, bytes],
        outcomes: list[Outcome],
        rng: random.Random,
        *,
        in_use_at_first: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.user = user
        self.originals = originals
        self.outcomes = outcomes
        self.rng = rng
        self.in_use_at_first = in_use_at_first
        self.stop = threading.Event()
        self.sessions = 0
        self.in_use = 0
        self.errors: list[str] = []  # broken promises (not dropped connections)

    def run(self) -> None:
        first = True
        while not self.stop.is_set():
            outcome = Outcome(self.user)
            try:
                self.session(outcome, first)
            except OSError:
                pass  # the server was killed: what was answered is in `outcome`
            except AssertionError as exc:
                self.errors.append(f"{self.user}: {exc}")
                return
            finally:
                self.outcomes.append(outcome)
            first = False

    def session(self, outcome: Outcome, first: bool) -> None:
        rng = self.rng
        with KillableClient(self.port, timeout=5) as client:
            assert client.greeting.startswith(b"+OK"), client.greeting
            answer = client.login(self.user, PASSWORD)
            if answer.startswith(b"-ERR [IN-USE]") and (self.in_use_at_first or not first):
                # The last session's +OK to QUIT goes out just before its lock
                # is released (RFC 1939 allows this): try again.
                self.in_use += 1
                time.sleep(0.005)
                return
            assert answer.startswith(b"+OK"), (first, answer)
            self.sessions += 1
            assert client.command(b"UIDL").startswith(b"+OK")
            uids = {}
            for line in client.multiline().split(b"\r\n")[:-1]:
                number, uid = line.split(b" ")
                uids[int(number)] = uid.decode()
            assert client.command(b"LIST").startswith(b"+OK")
            sizes = dict(line.split(b" ") for line in client.multiline().split(b"\r\n")[:-1])
            originals = self.originals
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
            answer = client.command(b"QUIT")  # OSError: killed before the answer came
            assert answer.startswith(b"+OK"), answer
            outcome.quit_ok = True


def sessions_until_killed(
    server: PopServer,
    originals: dict[str, dict[str, bytes]],
    outcomes: list[Outcome],
    seed: str,
    seconds: float,
    *,
    in_use_at_first: bool = False,
) -> collections.Counter[str]:
    """One ``Worker`` per user of ``originals`` for ``seconds``, then SIGKILL to the server.

    Every promise the server made up to the kill is checked by the workers; returns how
    many sessions logged in and how many met ``[IN-USE]``.
    """
    workers = [
        Worker(
            server.port,
            user,
            originals[user],
            outcomes,
            random.Random(f"{seed}-{user}"),
            in_use_at_first=in_use_at_first,
        )
        for user in originals
    ]
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    server.kill()
    counts: collections.Counter[str] = collections.Counter()
    for worker in workers:
        worker.stop.set()
        worker.join(10)
        assert not worker.is_alive()
        assert not worker.errors, worker.errors
        counts["sessions"] += worker.sessions
        counts["in use"] += worker.in_use
    return counts


def check_user(
    user: str,
    kept: dict[str, bytes],
    originals: dict[str, bytes],
    outcomes: list[Outcome],
    since: int,
) -> collections.Counter[str]:
    """``kept`` (``user``'s messages now, by unique id) against what the sessions were told.

    Every message kept is one delivered, byte for byte; a message DELE'd in a session whose
    QUIT was answered is gone; a message is gone only if a session DELE'd it and sent QUIT.
    Returns how the sessions since ``outcomes[since]`` whose QUIT went unanswered ended.
    """
    for uid, data in kept.items():
        assert uid in originals, f"{user}: unknown message {uid}"
        assert data == originals[uid], f"{user}: {uid} is corrupt"
    mine = [o for o in outcomes if o.user == user]
    for outcome in mine:
        if outcome.quit_ok:
            left = outcome.deleted & kept.keys()
            assert not left, f"{user}: deleted by an answered QUIT, still there: {left}"
    may_be_gone = set().union(*(o.deleted for o in mine if o.quit_sent))
    lost = originals.keys() - kept.keys() - may_be_gone
    assert not lost, f"{user}: lost without a QUIT that deleted them: {lost}"
    unanswered = set().union(
        *(o.deleted for o in outcomes[since:] if o.user == user and o.unanswered)
    )
    counts: collections.Counter[str] = collections.Counter()
    counts["in the window, committed"] += len(unanswered - kept.keys())
    counts["in the window, not committed"] += len(unanswered & kept.keys())
    return counts
