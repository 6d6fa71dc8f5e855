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
stored twice, compared by bytes. So it is for each delivery target: a Maildir
with the messages as retrieved (every binding's server) and in the default
form (LF line ends, trace fields), an mbox, and an MDA (a shell script that
delivers into a Maildir). An mbox may end with part of a message between a
kill and the next run (which cuts it off); no other message may be partial.

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
from fetched import lf, mbox_messages, unwrap
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


TARGETS = ["maildir-lf", "mbox", "mda"]
"""``pop3 fetch`` targets killed against the asyncio server."""


def fetch_into(port: int, target: str, dest: Path, err: Path) -> subprocess.Popen[bytes]:
    if target == "maildir-lf":
        return start_fetch(port, "user0", PASSWORD, dest, err, "-q", form=())
    state = ("--state-dir", str(dest / "state"))
    if target == "mbox":
        return start_fetch(
            port, "user0", PASSWORD, None, err, "-q", "--mbox", str(dest / "mbox"), form=()
        )
    # An MDA as a real one delivers: into tmp/, then renamed into new/.
    mda = f't={dest}/out/tmp/$$; cat > "$t" && mv "$t" {dest}/out/new/$$.$(date +%s%N)'
    return start_fetch(port, "user0", PASSWORD, None, err, "-q", "--mda", mda, *state, form=())


def journal(target: str, dest: Path) -> Path:
    """The state journal of ``target``: a line per message recorded in this run."""
    if target == "mbox":
        return dest / ".mbox.pop3-fetch-state.journal"
    return (dest / "state" if target == "mda" else dest) / ".pop3-fetch-state.journal"


def wait_for_records(proc: subprocess.Popen[bytes], path: Path, count: int) -> None:
    """Until the run has recorded ``count`` messages (or ended): first until it has folded
    a killed run's journal into the state file (emptying it), then until it has ``count``
    lines of its own."""
    deadline = time.monotonic() + 30
    emptied = False
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            lines = path.read_bytes().count(b"\n")
        except FileNotFoundError:
            lines = 0
        emptied = emptied or lines == 0
        if emptied and lines >= count:
            return
        time.sleep(0.002)


def delivered(target: str, dest: Path) -> tuple[list[bytes], bool]:
    """The messages the target holds, in order, their trace fields removed; and whether the
    last may be torn (an mbox between a kill and the next run: ``b""`` if torn in them)."""
    if target == "maildir-lf":
        return [unwrap(data, "user0@127.0.0.1") for data in stored(dest).values()], False
    if target == "mda":
        return [unwrap(data, "user0@127.0.0.1") for data in stored(dest / "out").values()], False
    if not (dest / "mbox").exists():
        return [], False
    messages = mbox_messages(dest / "mbox")
    out = []
    for i, stored_message in enumerate(messages):
        try:
            out.append(unwrap(stored_message, "user0@127.0.0.1"))
        except AssertionError:
            assert i == len(messages) - 1, (
                f"a partial message that is not the last: {stored_message[:80]!r}"
            )
            out.append(b"")
    return out, True


def check_delivered(
    source: Path, got: list[bytes], originals: dict[str, bytes], last_may_be_torn: bool
) -> tuple[int, int]:
    """Nothing lost, nothing stored twice, nothing partial but the last message of an mbox
    after a kill; how many are stored whole, and whether the last one is torn."""
    expected = {lf(crlf(data)): name for name, data in originals.items()}
    torn = 0
    if got and got[-1] not in expected:
        assert last_may_be_torn, got[-1][:80]
        assert any(whole.startswith(got[-1].rstrip(b"\n")) for whole in expected), got[-1][:80]
        torn = 1
        got = got[:-1]
    counts = collections.Counter(got)
    unknown = [data[:80] for data in counts if data not in expected]
    assert not unknown, unknown
    twice = [expected[data] for data, n in counts.items() if n > 1]
    assert not twice, f"stored twice: {twice}"
    in_source = stored(source)
    for name, data in originals.items():
        assert name in in_source or lf(crlf(data)) in counts, f"{name} lost"
    return len(got), torn


@pytest.mark.parametrize("target", TARGETS)
def test_fetch_to_each_target_killed_at_random_points_then_completed(
    tmp_path: Path, target: str
) -> None:
    rng = random.Random(f"{SEED}-fetch-target-{target}")
    print(f"seed {SEED} ({target})")
    root = tmp_path / "maildirs"
    source = root / "user0"
    dest = tmp_path / "dest"
    for sub in ("tmp", "new", "cur"):
        (dest / "out" / sub).mkdir(parents=True)
    users = write_users(tmp_path / "users", {"user0": PASSWORD})
    ledger = Ledger()
    originals = ledger.originals["user0"]
    progress = []
    torn_seen = 0
    with PopServer(tmp_path, "asyncio", users, root) as server:
        for kill in range(FETCH_KILLS):
            ledger.deliver(root, rng, 20, ["user0"])
            proc = fetch_into(server.port, target, dest, tmp_path / f"fetch-{kill}.err")
            # Killed once it has recorded a random number of messages (the journal has
            # a line for each), a moment later: inside a run, whatever its speed.
            wait_for_records(proc, journal(target, dest), rng.randrange(0, 20))
            time.sleep(rng.uniform(0, 0.05))
            proc.kill()
            proc.wait(10)
            if target == "mda":
                time.sleep(0.05)  # an MDA that was running finishes its delivery
            got, last_may_be_torn = delivered(target, dest)
            count, torn = check_delivered(source, got, originals, last_may_be_torn)
            torn_seen += torn
            progress.append(count)
        for attempt in range(20):
            err = tmp_path / f"final-{attempt}.err"
            code = fetch_into(server.port, target, dest, err).wait(60)
            if code == 0 or "in use" not in err.read_text():
                break
            time.sleep(0.1)
        assert code == 0, err.read_text()
        got, _ = delivered(target, dest)
        assert check_delivered(source, got, originals, False) == (len(originals), 0)
        assert stored(source) == {}
    print(
        f"{target}: messages stored after each kill: {progress} of {len(originals)}, "
        f"{torn_seen} torn mbox tails cut off"
    )
