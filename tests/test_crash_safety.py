"""Crash safety: ``pop3 serve`` and ``pop3 fetch`` killed with SIGKILL at random points.

The server: every binding's ``pop3 serve`` runs sessions that RETR, DELE and
QUIT (or just hang up) for several users at once, and is killed at a random
moment, again and again, with new mail delivered between the runs. After each
kill the Maildirs are checked against a ledger of what the clients were told:

* every message file present is byte for byte one that was delivered (never
  corrupt, never half-written), and tmp/ holds nothing;
* a message DELE'd in a session whose QUIT was answered ``+OK`` is gone;
* a message is gone only if some session DELE'd it (``+OK``) and then sent
  QUIT: a DELE without QUIT never removes anything (RFC 1939 section 6).

The one window no server can close: it has committed the deletions (unlinked
the files and synced the directories) but is killed before its ``+OK`` to
QUIT reaches the client. The client then cannot tell a commit from none, so
for a session that sent QUIT and got no answer the test allows each message
it DELE'd to be either present or gone -- but, being checked file by file,
never corrupt, and never any message that session did not DELE.

A restart must serve every user at once: the flock of a killed server goes
with its process, so the first login of each user after a restart must not
meet ``[IN-USE]``. The Maildir's size cache, if present, must be complete
and right (it is replaced atomically, so a kill cannot leave half of it).

The fetch client: ``pop3 fetch`` is killed at random points against a running
server (with new mail arriving), then run to completion: no message lost, none
stored twice, compared by bytes.

Set POP3_CRASH_SEED to replay a run; the seed in use is printed.
"""

from __future__ import annotations

import collections
import os
import random
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bindings import NAMES
from crashes import PASSWORD, Outcome, check_user, message, sessions_until_killed
from pop3_maildrop._maildir import SIZE_CACHE
from served import PopServer, RawClient, crlf, deliver, start_fetch, stored, write_users

SEED = int(os.environ.get("POP3_CRASH_SEED", "20240607"))
KILLS = 12
"""Server kills per binding."""
USERS = [f"user{n}" for n in range(4)]


@dataclass
class Ledger:
    originals: dict[str, dict[str, bytes]] = field(
        default_factory=lambda: {user: {} for user in USERS}
    )
    outcomes: list[Outcome] = field(default_factory=list)
    serial: int = 0

    def deliver(self, root: Path, rng: random.Random, count: int, users: list[str] = USERS) -> None:
        for user in users:
            for _ in range(count):
                self.serial += 1
                # The name is also the uid: it is a valid one (RFC 1939 section 7).
                name = f"{1_700_000_000 + self.serial}.M{self.serial}P7.crash"
                data = message(rng, name)
                deliver(root / user, name, data)
                self.originals[user][name] = data


def check_maildirs(root: Path, ledger: Ledger, since: int) -> collections.Counter[str]:
    """The invariants of the module docstring; what the sessions from ``since`` on met."""
    counts: collections.Counter[str] = collections.Counter()
    for user in USERS:
        maildir = root / user
        originals = ledger.originals[user]
        assert list((maildir / "tmp").iterdir()) == []
        counts += check_user(user, stored(maildir), originals, ledger.outcomes, since)
        check_size_cache(maildir, originals)
    return counts


CACHE_LINE = re.compile(r"(\S+) ([0-9]+) ([0-9]+) ([0-9]+)\Z")


def check_size_cache(maildir: Path, originals: dict[str, bytes]) -> None:
    """The size cache, if there is one, is whole, and right for every file it still matches."""
    path = maildir / SIZE_CACHE
    if not path.exists():
        return
    text = path.read_text(encoding="ascii")
    assert text.startswith("pop3-sansio sizes 1\n") and text.endswith("\n"), text[:200]
    files = {p.name: p.stat() for sub in ("new", "cur") for p in (maildir / sub).iterdir()}
    for line in text.splitlines()[1:]:
        match = CACHE_LINE.match(line)
        assert match is not None, line
        uid, fsize, mtime, size = match.group(1), *map(int, match.groups()[1:])
        st = files.get(uid)
        if st is not None and (st.st_size, st.st_mtime_ns) == (fsize, mtime):
            assert size == len(crlf(originals[uid])), line


def final_check(port: int, root: Path, ledger: Ledger) -> None:
    """A last session per user: LIST, UIDL and RETR agree with the files, byte for byte."""
    for user in USERS:
        on_disk = stored(root / user)
        with RawClient(port) as client:
            assert client.login(user, PASSWORD).startswith(b"+OK")
            assert client.command(b"UIDL").startswith(b"+OK")
            uids = dict(line.split(b" ") for line in client.multiline().split(b"\r\n")[:-1])
            assert sorted(uid.decode() for uid in uids.values()) == sorted(on_disk)
            assert client.command(b"LIST").startswith(b"+OK")
            sizes = dict(line.split(b" ") for line in client.multiline().split(b"\r\n")[:-1])
            for number, uid in uids.items():
                expected = crlf(on_disk[uid.decode()])
                assert int(sizes[number]) == len(expected), uid
                assert client.retr(int(number)) == expected
            assert client.command(b"QUIT").startswith(b"+OK")


@pytest.mark.parametrize("backend", NAMES)
def test_server_killed_at_random_points(tmp_path: Path, backend: str) -> None:
    rng = random.Random(f"{SEED}-server-{backend}")
    print(f"seed {SEED} ({backend})")
    root = tmp_path / "maildirs"
    users = write_users(tmp_path / "users", dict.fromkeys(USERS, PASSWORD))
    ledger = Ledger()
    ledger.deliver(root, rng, 25)
    totals: collections.Counter[str] = collections.Counter()
    for kill in range(KILLS):
        since = len(ledger.outcomes)
        server = PopServer(tmp_path, backend, users, root)
        totals += sessions_until_killed(
            server,
            ledger.originals,
            ledger.outcomes,
            f"{SEED}-{backend}-{kill}",
            rng.uniform(0.01, 0.4),
        )
        totals.update(check_maildirs(root, ledger, since))
        # New mail, as a delivery agent brings it, for the next run.
        ledger.deliver(root, rng, rng.randrange(5, 20))
    with PopServer(tmp_path, backend, users, root) as server:
        final_check(server.port, root, ledger)
    quits = sum(o.quit_ok for o in ledger.outcomes)
    print(f"{backend}: {KILLS} kills, {dict(totals)}, {quits} answered QUITs")
    assert quits > KILLS  # sessions did get through, deletions were committed
    assert totals["sessions"] > 2 * KILLS


# --- pop3 fetch, killed -------------------------------------------------------------------------

FETCH_KILLS = 4
"""Fetch kills per binding's server."""


def run_fetch(port: int, dest: Path, err: Path) -> subprocess.Popen[bytes]:
    return start_fetch(port, "user0", PASSWORD, dest, err, "-q")


def check_fetched(source: Path, dest: Path, originals: dict[str, bytes]) -> int:
    """Nothing lost (in the source or in dest), nothing stored twice; how many in dest."""
    expected = {crlf(data): name for name, data in originals.items()}
    got = collections.Counter(stored(dest).values())
    unknown = [data[:80] for data in got if data not in expected]
    assert not unknown, unknown
    twice = [expected[data] for data, n in got.items() if n > 1]
    assert not twice, f"stored twice: {twice}"
    in_source = stored(source)
    for name, data in originals.items():
        assert name in in_source or crlf(data) in got, f"{name} lost"
        if name in in_source:
            assert in_source[name] == data
    return sum(got.values())


@pytest.mark.parametrize("backend", NAMES)
def test_fetch_killed_at_random_points_then_completed(tmp_path: Path, backend: str) -> None:
    rng = random.Random(f"{SEED}-fetch-{backend}")
    print(f"seed {SEED} ({backend})")
    root = tmp_path / "maildirs"
    source = root / "user0"
    dest = tmp_path / "dest"
    users = write_users(tmp_path / "users", {"user0": PASSWORD})
    ledger = Ledger()
    originals = ledger.originals["user0"]
    progress = []
    with PopServer(tmp_path, backend, users, root) as server:
        for kill in range(FETCH_KILLS):
            ledger.deliver(root, rng, 30, ["user0"])
            proc = run_fetch(server.port, dest, tmp_path / f"fetch-{kill}.err")
            time.sleep(rng.uniform(0.15, 0.8))  # from before the login to the QUIT
            proc.kill()
            proc.wait(10)
            progress.append(check_fetched(source, dest, originals))
        for attempt in range(20):
            # The server may not have seen the last killed session end yet.
            err = tmp_path / f"final-{attempt}.err"
            final = run_fetch(server.port, dest, err)
            code = final.wait(60)
            if code == 0 or "in use" not in err.read_text():
                break
            time.sleep(0.1)
        assert code == 0, err.read_text()
        assert check_fetched(source, dest, originals) == len(originals)
        assert stored(source) == {}
        assert list((dest / "tmp").iterdir()) == []
    print(f"{backend}: messages in dest after each kill: {progress} of {len(originals)}")
