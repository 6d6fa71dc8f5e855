"""``pop3 fetch`` delivery targets (Maildir, mbox, MDA) and filters, against ``pop3 serve``.

Each test serves a Maildir of known messages with ``pop3 serve`` (``served.PopServer``)
and runs ``pop3 fetch`` in a subprocess. The MDA tests use real MDAs: procmail
(Debian package procmail) and Dovecot's LDA (dovecot-core); without them they
skip, or fail when ``POP3_REQUIRE_PEERS=1``. The mbox's crash recovery is also
driven directly (``MboxTarget``), one crash window at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import mailbox
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetched import lf, mbox_messages, mbox_quoted, unwrap
from peers import require_peer, unavailable
from pop3_cli._mailform import MessageForm
from pop3_cli._targets import MboxTarget, state_location
from served import PopServer, crlf, deliver, env, pop3, stored, write_users

USER = "alice"
PASSWORD = "targets-pw"
MESSAGES = {
    "1700000001.M1P1.t": b"From: a@example.org\nSubject: one\n\nFrom the start.\n>From quoted\n",
    "1700000002.M2P1.t": b"Return-Path: <bounce@example.org>\r\nSubject: two\r\n\r\n.dot\r\n",
    "1700000003.M3P1.t": b"Subject: three\n\nno final newline",
}
WIRE = {name: crlf(data) for name, data in MESSAGES.items()}
"""What RETR hands over for each message."""
SUMMARY = re.compile(r"fetched (\d+) messages \((\d+) octets\)")


@pytest.fixture(scope="module")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PopServer, Path]]:
    """One ``pop3 serve`` for the module (starting one costs more than most tests)."""
    base = tmp_path_factory.mktemp("served")
    users = write_users(base / "users", {USER: PASSWORD})
    with PopServer(base, "asyncio", users, base / "root") as pop:
        yield pop, base / "root" / USER


@pytest.fixture
def server(served_root: tuple[PopServer, Path]) -> PopServer:
    """The module's server, its maildrop holding ``MESSAGES`` again (and nothing else)."""
    pop, maildrop = served_root
    for sub in ("tmp", "new", "cur"):
        for path in (maildrop / sub).glob("*") if (maildrop / sub).is_dir() else ():
            path.unlink()
    for name, data in MESSAGES.items():
        deliver(maildrop, name, data)
    return pop


@pytest.fixture
def maildrop(served_root: tuple[PopServer, Path]) -> Path:
    """The served maildrop (``server`` fills it)."""
    return served_root[1]


def on_server(maildrop: Path) -> dict[str, bytes]:
    """The messages now in the served maildrop, by unique name."""
    return {name.partition(":")[0]: data for name, data in stored(maildrop).items()}


def fetch_command(port: int, *options: str) -> list[str]:
    """``pop3 fetch`` from our server on ``port`` as alice, the password in the environment."""
    return pop3(
        *("fetch", "--host", "127.0.0.1", "--port", str(port), "--user", USER),
        *("--password-env", "POP3_TEST_PASSWORD", *options),
    )


def fetch(port: int, *options: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = {"HOME": str(home), "XDG_STATE_HOME": str(home / "state")} if home else {}
    return subprocess.run(
        fetch_command(port, *options),
        env=env(POP3_TEST_PASSWORD=PASSWORD, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def expected(mbox: bool = False) -> list[bytes]:
    """The messages as stored by default, without the trace fields."""
    return sorted(mbox_quoted(lf(w)) if mbox else lf(w) for w in WIRE.values())


# --- Maildir -----------------------------------------------------------------------------


def test_maildir_holds_lf_line_ends_after_delivered_to_and_received(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    result = fetch(server.port, "--maildir", str(dest))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    files = stored(dest)
    assert sorted(unwrap(data) for data in files.values()) == expected()
    assert all(b"\r" not in data for data in files.values())
    # Each file's name carries the first 128 bits of the SHA-256 of the message as retrieved.
    digests = {hashlib.sha256(w).hexdigest()[:32] for w in WIRE.values()}
    assert {re.search(r"H([0-9a-f]{32})\.", name).group(1) for name in files} == digests  # type: ignore[union-attr]
    assert on_server(maildrop) == {}


def test_maildir_crlf_and_each_trace_field_can_be_switched_off(
    server: PopServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    result = fetch(server.port, "--maildir", str(dest), "--crlf", "--no-received", "--keep")
    assert result.returncode == 0, result.stderr
    prefix = b"Delivered-To: alice@127.0.0.1\r\n"
    assert sorted(stored(dest).values()) == sorted(prefix + w for w in WIRE.values())
    other = tmp_path / "other"
    result = fetch(server.port, "--maildir", str(other), "--no-delivered-to", "--keep")
    assert result.returncode == 0, result.stderr
    for data in stored(other).values():
        assert data.startswith(b"Received: from 127.0.0.1 [127.0.0.1]\n\tby ")
        assert b"Delivered-To" not in data


def test_a_copy_a_killed_run_stored_but_did_not_record_is_found_by_its_name(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    """Stored (renamed into new/), not recorded: its bytes differ from the retrieved ones, so
    only the digest in its name tells it is this message. One with another digest is not."""
    dest = tmp_path / "dest"
    assert fetch(server.port, "--maildir", str(dest), "--keep").returncode == 0
    for name in (".pop3-fetch-state.json", ".pop3-fetch-state.journal"):
        (dest / name).unlink(missing_ok=True)
    # A mail reader moved one to cur/ and marked it seen; the name's unique part stays.
    first = next(p for p in (dest / "new").iterdir() if b"Subject: one" in p.read_bytes())
    first.rename(dest / "cur" / f"{first.name}:2,S")
    # A file with the token of message 3's id but the digest of other bytes (an id reused).
    third = next(p for p in (dest / "new").iterdir() if b"Subject: three" in p.read_bytes())
    forged = re.sub(r"H[0-9a-f]{32}\.", "H" + "0" * 32 + ".", third.name)
    third.rename(dest / "new" / forged)
    result = fetch(server.port, "--maildir", str(dest))
    assert result.returncode == 0, result.stderr
    assert "fetched 1 message " in result.stdout and "2 already stored" in result.stdout
    assert on_server(maildrop) == {}
    assert sorted(unwrap(d) for d in stored(dest).values()) == sorted(
        [*expected(), lf(WIRE["1700000003.M3P1.t"])]
    )


def test_a_copy_an_earlier_version_stored_is_still_recognised_by_its_bytes(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    """Named without a digest, holding the message as retrieved (CRLF, no fields added)."""
    from pop3_cli._deliver import message_token

    dest = tmp_path / "dest"
    for sub in ("tmp", "new", "cur"):
        (dest / sub).mkdir(parents=True)
    name = "1700000001.M1P1.t"
    # Named as versions before state version 3 named it: after host:port:user.
    token = message_token(f"127.0.0.1:{server.port}:{USER}", name)
    (dest / "cur" / f"1600000000.M1P1Q1X{token}.old:2,S").write_bytes(WIRE[name])
    result = fetch(server.port, "--maildir", str(dest))
    assert result.returncode == 0, result.stderr
    assert "fetched 2 messages" in result.stdout and "1 already stored" in result.stdout
    assert on_server(maildrop) == {}
    assert len(stored(dest)) == 3


# --- mbox --------------------------------------------------------------------------------


def test_mbox_appends_under_its_locks_with_from_lines_and_mboxo_quoting(
    server: PopServer, tmp_path: Path
) -> None:
    mbox = tmp_path / "mail" / "inbox"
    mbox.parent.mkdir()
    mbox.write_bytes(b"From old@example.org Mon Dec  7 06:00:00 2026\nSubject: old\n\nkept\n")
    result = fetch(server.port, "--mbox", str(mbox), "--keep")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    messages = mbox_messages(mbox)
    assert messages[0] == b"Subject: old\n\nkept\n"
    assert sorted(unwrap(m) for m in messages[1:]) == expected(mbox=True)
    text = mbox.read_bytes()
    # mboxo, as mailbox.mbox writes: "From " is quoted, ">From " is left as it is.
    assert b"\n>From the start.\n>From quoted\n" in text
    # The From line names the envelope sender (Return-Path, else From), as mailbox.mbox writes it.
    from_lines = re.findall(
        rb"^From (\S+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$", text, re.M
    )
    assert sorted(from_lines) == sorted(
        [b"old@example.org", b"a@example.org", b"bounce@example.org", b"MAILER-DAEMON"]
    )
    assert not (tmp_path / "mail" / "inbox.lock").exists()
    # The state sits beside the mbox, named after it; the spool files are gone.
    names = sorted(p.name for p in mbox.parent.iterdir())
    assert names == [
        ".inbox.pop3-fetch-state.journal",
        ".inbox.pop3-fetch-state.json",
        ".inbox.pop3-fetch.lock",
        "inbox",
    ]
    again = fetch(server.port, "--mbox", str(mbox), "--keep")
    assert SUMMARY.search(again.stdout).group(1) == "0"  # type: ignore[union-attr]
    assert len(mbox_messages(mbox)) == 4


def test_a_new_mbox_is_private(server: PopServer, maildrop: Path, tmp_path: Path) -> None:
    mbox = tmp_path / "new-mbox"
    assert fetch(server.port, "--mbox", str(mbox)).returncode == 0
    assert stat.S_IMODE(mbox.stat().st_mode) == 0o600
    assert len(mbox_messages(mbox)) == 3
    assert on_server(maildrop) == {}


def test_mbox_locked_by_another_program_is_waited_for(server: PopServer, tmp_path: Path) -> None:
    mbox = tmp_path / "inbox"
    box = mailbox.mbox(str(mbox))
    box.lock()
    proc = subprocess.Popen(
        fetch_command(server.port, "--mbox", str(mbox)),
        env=env(POP3_TEST_PASSWORD=PASSWORD),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)
    assert mbox.read_bytes() == b""  # it waits for the lock
    box.unlock()
    box.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(mbox_messages(mbox)) == 3


def test_mbox_rewritten_by_a_mail_reader_while_fetch_waits_gets_the_mail(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    """A reader holding the locks rewrites the mbox into a new file (``mailbox.mbox.flush``
    renames it over the old one): the appends go to the new file, not the old inode."""
    mbox = tmp_path / "inbox"
    mbox.write_bytes(b"From a Mon Dec  7 06:00:00 2026\nSubject: read\n\nx\n")
    box = mailbox.mbox(str(mbox))
    box.add(b"From b Mon Dec  7 06:00:00 2026\nSubject: unread\n\ny\n")
    box.flush()
    box.lock()
    inode = mbox.stat().st_ino
    proc = subprocess.Popen(
        fetch_command(server.port, "--mbox", str(mbox)),
        env=env(POP3_TEST_PASSWORD=PASSWORD),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # pop3 fetch has the first message and waits for the locks
    box.remove(next(box.iterkeys()))
    box.flush()
    assert mbox.stat().st_ino != inode  # a new file
    box.unlock()
    box.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    messages = mbox_messages(mbox)
    assert messages[0] == b"Subject: unread\n\ny\n"
    assert sorted(unwrap(m) for m in messages[1:]) == expected(mbox=True)
    assert on_server(maildrop) == {}


def test_a_dot_lock_left_long_ago_by_a_dead_program_is_removed(
    server: PopServer, tmp_path: Path
) -> None:
    mbox = tmp_path / "inbox"
    lock = tmp_path / "inbox.lock"
    lock.write_bytes(b"")
    old = time.time() - 1100  # procmail takes a lock this old for one a dead program left
    os.utime(lock, (old, old))
    result = fetch(server.port, "--mbox", str(mbox))
    assert result.returncode == 0, result.stderr
    assert f"{lock}: removed a dot-lock left 1" in result.stderr
    assert len(mbox_messages(mbox)) == 3 and not lock.exists()


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_dot_lock_naming_a_process_that_is_gone_is_removed_at_once(
    server: PopServer, tmp_path: Path
) -> None:
    """liblockfile's rule, and the form pop3 fetch writes its own dot-locks in."""
    mbox = tmp_path / "inbox"
    lock = tmp_path / "inbox.lock"
    pid = dead_pid()
    lock.write_bytes(f"{pid}\n".encode())
    started = time.monotonic()
    result = fetch(server.port, "--mbox", str(mbox))
    assert result.returncode == 0, result.stderr
    assert f"{lock}: removed a dot-lock left by process {pid}, which is gone" in result.stderr
    assert time.monotonic() - started < 20  # not the 30 s wait for a live holder
    assert len(mbox_messages(mbox)) == 3 and not lock.exists()


def test_a_dot_lock_of_a_live_process_is_not_taken(server: PopServer, tmp_path: Path) -> None:
    mbox = tmp_path / "inbox"
    lock = tmp_path / "inbox.lock"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_bytes(f"{holder.pid}\n".encode())
        proc = subprocess.Popen(
            fetch_command(server.port, "--mbox", str(mbox)),
            env=env(POP3_TEST_PASSWORD=PASSWORD),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)
        assert proc.poll() is None and mbox.read_bytes() == b""  # it waits
        lock.unlink()  # the holder is done
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert b"removed a dot-lock" not in err
        assert len(mbox_messages(mbox)) == 3
    finally:
        holder.kill()
        holder.wait()


def test_an_empty_dot_lock_a_killed_run_made_while_locking_is_removed(
    server: PopServer, tmp_path: Path
) -> None:
    """Killed between taking the dot-lock and writing its process id into it: the run had
    said (in its state directory) that it was taking the locks."""
    mbox = tmp_path / "inbox"
    intent = tmp_path / ".inbox.pop3-fetch.locking"
    intent.write_bytes(f"{dead_pid()}\n".encode())
    lock = tmp_path / "inbox.lock"
    lock.write_bytes(b"")  # made after the intent
    result = fetch(server.port, "--mbox", str(mbox))
    assert result.returncode == 0, result.stderr
    assert f"{lock}: removed a dot-lock left by a killed run of pop3 fetch" in result.stderr
    assert len(mbox_messages(mbox)) == 3 and not lock.exists() and not intent.exists()


def test_an_empty_dot_lock_older_than_a_killed_runs_attempt_is_another_programs(
    tmp_path: Path,
) -> None:
    mbox = tmp_path / "inbox"
    lock = tmp_path / "inbox.lock"
    lock.write_bytes(b"")
    old = time.time() - 5
    os.utime(lock, (old, old))
    (tmp_path / ".inbox.pop3-fetch.locking").write_bytes(b"1\n")
    target = mbox_target(mbox)
    assert recovered(target) == []
    assert target._remove_stale_dot_lock() is False  # waited for, as any live holder's
    assert lock.exists()


# --- mbox crash recovery, window by window -----------------------------------------------

META = {"uid": "u1", "size": 30, "sha256": "ab" * 32, "first_seen": None}


class KilledError(Exception):
    """Stands for SIGKILL right after the append was synced, before it was recorded."""


def append_unrecorded(target: MboxTarget, message: bytes) -> None:
    form = MessageForm(mbox=True)
    pending = target.begin("token", form)
    pending.write(message)

    def killed() -> None:
        raise KilledError

    with pytest.raises(KilledError):
        target.store(pending, META, killed)


def mbox_target(mbox: Path) -> MboxTarget:
    """The target of ``pop3 fetch --mbox MBOX`` (its state beside it)."""
    return MboxTarget(
        str(mbox), *state_location(argparse.Namespace(state_dir=None, mbox=str(mbox)))
    )


def recovered(target: MboxTarget) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    target.recover(records.append)
    assert sorted(Path(target.state_dir).glob("*.append")) == []
    assert sorted(Path(target.state_dir).glob("*.message")) == []
    return records


def test_mbox_recovery_records_a_whole_append_a_killed_run_did_not_record(tmp_path: Path) -> None:
    mbox = tmp_path / "inbox"
    target = mbox_target(mbox)
    append_unrecorded(target, b"Subject: x\r\n\r\nbody\r\n")
    assert recovered(mbox_target(mbox)) == [META]
    assert mbox_messages(mbox) == [b"Subject: x\n\nbody\n"]


def test_mbox_recovery_cuts_off_a_torn_append_and_removes_its_stale_dot_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mbox = tmp_path / "inbox"
    mbox.write_bytes(b"From a Mon Dec  7 06:00:00 2026\nSubject: before\n\nx\n")
    before = mbox.read_bytes()
    target = mbox_target(mbox)
    append_unrecorded(target, b"Subject: torn\r\n\r\n" + b"y" * 5000 + b"\r\n")
    whole = mbox.read_bytes()
    with open(mbox, "r+b") as f:  # killed in the middle of the write
        f.truncate(len(before) + 100)
    # ... while holding the dot-lock: the append record names it.
    journal = tmp_path / ".inbox.pop3-fetch.append"
    entry = json.loads(journal.read_text())
    lock = tmp_path / "inbox.lock"
    lock.write_bytes(b"")
    st = lock.stat()
    entry["dot_lock"] = [st.st_dev, st.st_ino, st.st_mtime_ns]
    journal.write_text(json.dumps(entry))
    assert len(whole) > len(before) + 100
    with caplog.at_level(logging.WARNING, logger="pop3.fetch"):
        assert recovered(mbox_target(mbox)) == []
    assert "removed the part of a message that a killed run had appended" in caplog.text
    assert mbox.read_bytes() == before
    assert not lock.exists()


def test_mbox_recovery_finds_the_message_in_an_mbox_rewritten_since(tmp_path: Path) -> None:
    """A mail reader rewrote the mbox (another inode, other offsets): the bytes are searched."""
    mbox = tmp_path / "inbox"
    mbox.write_bytes(b"From a Mon Dec  7 06:00:00 2026\nSubject: deleted later\n\nx\n")
    target = mbox_target(mbox)
    append_unrecorded(target, b"Subject: kept\r\n\r\nbody\r\n")
    data = mbox.read_bytes()
    rewritten = data[data.index(b"\nFrom ") + 1 :]
    mbox.unlink()
    mbox.write_bytes(rewritten)
    assert recovered(mbox_target(mbox)) == [META]
    mbox.write_bytes(b"")  # and once more, with the message gone from it
    append_unrecorded(target, b"Subject: kept\r\n\r\nbody\r\n")
    mbox.unlink()
    mbox.write_bytes(b"From b Mon Dec  7 06:00:00 2026\nSubject: other\n\ny\n")
    assert recovered(mbox_target(mbox)) == []


def test_mbox_recovery_leaves_other_mail_appended_after_a_torn_part(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mbox = tmp_path / "inbox"
    target = mbox_target(mbox)
    append_unrecorded(target, b"Subject: torn\r\n\r\n" + b"y" * 500 + b"\r\n")
    with open(mbox, "r+b") as f:
        f.truncate(60)
    with open(mbox, "ab") as f:
        f.write(b"\nFrom b Mon Dec  7 06:00:00 2026\nSubject: someone else's\n\nz\n")
    after = mbox.read_bytes()
    with caplog.at_level(logging.WARNING, logger="pop3.fetch"):
        assert recovered(mbox_target(mbox)) == []
    assert mbox.read_bytes() == after  # nothing cut: it is not all ours
    assert "left part of a message at offset 0, and other mail was appended" in caplog.text


# --- MDA ---------------------------------------------------------------------------------


def test_mda_procmail_delivers_into_a_maildir(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    procmail = require_peer("procmail", "procmail")
    maildir = tmp_path / "procmail" / "Maildir"
    rc = tmp_path / "procmail" / "procmailrc"
    rc.parent.mkdir()
    rc.write_text(f"MAILDIR={rc.parent}\nDEFAULT={maildir}/\nLOGFILE={rc.parent}/log\n")
    result = fetch(server.port, "--mda", f"{procmail} -m {rc}", home=tmp_path / "home")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert sorted(unwrap(d) for d in stored(maildir).values()) == expected()
    assert on_server(maildrop) == {}
    # The state went to $XDG_STATE_HOME/pop3-fetch; the spool files are gone.
    state = tmp_path / "home" / "state" / "pop3-fetch"
    assert sorted(p.name for p in state.iterdir()) == [
        ".pop3-fetch-state.journal",
        ".pop3-fetch-state.json",
        ".pop3-fetch.lock",
        ".pop3-fetch.mda-lock",
    ]


@pytest.fixture
def lda_home() -> Iterator[Path]:
    """Where Dovecot's LDA keeps its configuration, log and Maildir. It runs as an ordinary
    user without a running Dovecot (as root it would want ``-d USER`` and the auth service):
    as nobody when the tests run as root, in a directory of nobody's under the system
    temporary directory (pytest's are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="pop3-lda-"))
    try:
        root.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(root, 65534, 65534)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_mda_dovecot_lda_delivers_into_a_maildir(
    server: PopServer, maildrop: Path, tmp_path: Path, lda_home: Path
) -> None:
    lda = "/usr/lib/dovecot/dovecot-lda"
    if not os.path.exists(lda):
        unavailable(
            f"{lda} is not installed (Debian package dovecot-core; "
            "'make peers' installs every peer)"
        )
    conf = lda_home / "dovecot.conf"
    conf.write_text(
        f"base_dir = {lda_home}/run\nstate_dir = {lda_home}/state\nlog_path = {lda_home}/lda.log\n"
        f"mail_location = maildir:{lda_home}/Maildir\nprotocols =\nssl = no\n"
    )
    conf.chmod(0o644)
    run_as = "setpriv --reuid=65534 --regid=65534 --clear-groups " if os.geteuid() == 0 else ""
    command = f"HOME={lda_home} {run_as}{lda} -c {conf} -f %F"
    result = fetch(server.port, "--mda", command, "--state-dir", str(tmp_path / "state"))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    delivered = stored(lda_home / "Maildir")
    assert sorted(unwrap(d) for d in delivered.values()) == expected()
    assert on_server(maildrop) == {}
    log = (lda_home / "lda.log").read_text()
    assert log.count("saved mail to INBOX") == 3


def test_mda_exit_75_stops_the_run_keeps_the_rest_and_exits_75(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # Delivers the first message, then asks to be tried again later.
    mda = f'n=$(ls {out} | wc -l); [ "$n" -ge 1 ] && exit 75; cat > {out}/$n'
    result = fetch(server.port, "--mda", mda, "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 75, result.stderr
    assert "the MDA asked to try again later (exit status 75)" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "fetched 1 message " in result.stdout
    assert len(list(out.iterdir())) == 1
    assert len(on_server(maildrop)) == 2  # the first was deleted (QUIT), the others kept
    # Later, the MDA works again: the rest comes, nothing twice.
    result = fetch(
        server.port,
        "--mda",
        f"n=$(ls {out} | wc -l); cat > {out}/$n",
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(unwrap(p.read_bytes()) for p in out.iterdir()) == expected()
    assert on_server(maildrop) == {}


def test_mda_failure_leaves_that_message_on_the_server_and_the_run_goes_on(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mda = f'm=$(cat); case "$m" in *"Subject: two"*) exit 1;; esac; printf "%s\\n" "$m" > {out}/$$'
    result = fetch(server.port, "--mda", mda, "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1
    assert "1 message not delivered (the MDA exited with status 1)" in result.stderr
    assert "fetched 2 messages" in result.stdout and "1 not delivered" in result.stdout
    assert list(on_server(maildrop)) == ["1700000002.M2P1.t"]
    assert len(list(out.iterdir())) == 2


def test_mda_gets_sender_and_recipient_as_percent_f_and_percent_t(
    server: PopServer, tmp_path: Path
) -> None:
    out = tmp_path / "args"
    mda = f"cat >/dev/null; printf '%s|%s|%s\\n' %F %T 100%% >> {out}"
    result = fetch(server.port, "--mda", mda, "--state-dir", str(tmp_path / "state"), "--keep")
    assert result.returncode == 0, result.stderr
    assert sorted(out.read_text().splitlines()) == [
        "a@example.org|alice@127.0.0.1|100%",
        "bounce@example.org|alice@127.0.0.1|100%",
        "|alice@127.0.0.1|100%",
    ]


# --- filters -----------------------------------------------------------------------------


def test_max_size_leaves_larger_messages_and_delete_oversized_deletes_them_unread(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    sizes = {name: len(w) for name, w in WIRE.items()}
    limit = sorted(sizes.values())[1]  # the largest message is over it
    big = max(sizes, key=sizes.__getitem__)
    result = fetch(server.port, "--maildir", str(dest), "--max-size", str(limit))
    assert result.returncode == 0, result.stderr
    assert "fetched 2 messages" in result.stdout
    assert "1 over the size limit left on the server" in result.stdout
    assert list(on_server(maildrop)) == [big]
    result = fetch(
        server.port, "--maildir", str(dest), "--max-size", str(limit), "--delete-oversized"
    )
    assert result.returncode == 0, result.stderr
    assert "1 over the size limit deleted unread" in result.stdout
    assert on_server(maildrop) == {}
    assert len(stored(dest)) == 2


def state_records(dest: Path) -> dict[str, list[object]]:
    data = json.loads((dest / ".pop3-fetch-state.json").read_text())
    return next(iter(data["accounts"].values()), {})


def test_keep_days_deletes_only_after_n_days_from_first_seen(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    before = int(time.time())
    result = fetch(server.port, "--maildir", str(dest), "--keep-days", "3")
    assert result.returncode == 0, result.stderr
    assert "0 deleted on the server" in result.stdout
    records = state_records(dest)
    assert sorted(records) == sorted(MESSAGES)
    for _size, _digest, first_seen in records.values():
        assert isinstance(first_seen, int) and before <= first_seen <= time.time()
    # Two days later nothing changes; a message first seen 3 days ago is fetched and deleted.
    state = json.loads((dest / ".pop3-fetch-state.json").read_text())
    account = next(iter(state["accounts"]))
    state["accounts"][account]["1700000001.M1P1.t"][2] -= 3 * 86400
    state["accounts"][account]["1700000002.M2P1.t"][2] -= 2 * 86400
    (dest / ".pop3-fetch-state.json").write_text(json.dumps(state))
    result = fetch(server.port, "--maildir", str(dest), "--keep-days", "3")
    assert result.returncode == 0, result.stderr
    assert "fetched 0 messages" in result.stdout and "1 deleted on the server" in result.stdout
    assert sorted(on_server(maildrop)) == ["1700000002.M2P1.t", "1700000003.M3P1.t"]
    assert len(stored(dest)) == 3  # retrieved again to be sure, not stored twice
    # --keep-days 0: delete at once, as without it.
    result = fetch(server.port, "--maildir", str(dest), "--keep-days", "0")
    assert "2 deleted on the server" in result.stdout
    assert on_server(maildrop) == {}


def test_all_stores_again_what_keep_fetched_before(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    mbox = tmp_path / "inbox"
    assert fetch(server.port, "--mbox", str(mbox), "--keep").returncode == 0
    result = fetch(server.port, "--mbox", str(mbox), "--keep", "--all")
    assert result.returncode == 0, result.stderr
    assert "fetched 3 messages" in result.stdout
    assert sorted(unwrap(m) for m in mbox_messages(mbox)) == sorted(expected(mbox=True) * 2)
    assert len(on_server(maildrop)) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((), "give one of --maildir, --mbox or --mda"),
        (("--maildir", "d", "--mbox", "m"), "give one of --maildir, --mbox or --mda"),
        (("--mbox", "m", "--crlf"), "--crlf: an mbox holds LF line ends"),
        (("--maildir", "d", "--keep", "--keep-days", "2"), "--keep and --keep-days"),
        (("--maildir", "d", "--all"), "--all goes with --keep or --keep-days"),
        (("--maildir", "d", "--delete-oversized"), "--delete-oversized needs --max-size"),
    ],
)
def test_bad_combinations_are_usage_errors(
    tmp_path: Path, options: tuple[str, ...], message: str
) -> None:
    result = subprocess.run(
        pop3(
            "fetch",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--user",
            "u",
            "--password-env",
            "P",
            *options,
        ),
        env=env(P="x"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_mda_still_running_when_fetch_is_killed_is_waited_for_and_counted(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    """The MDA outlives a killed ``pop3 fetch``; the next run waits for it and reads its status."""
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    mda = f"sleep 0.5; cat > {out}/$$"
    options = ("--mda", mda, "--state-dir", str(state))
    proc = subprocess.Popen(
        fetch_command(server.port, *options),
        env=env(POP3_TEST_PASSWORD=PASSWORD),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (state / ".pop3-fetch.mda-status.started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert list(out.iterdir()) == []  # the MDA is still asleep
    result = fetch(server.port, *options)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "fetched 2 messages" in result.stdout and "1 already stored" in result.stdout
    assert sorted(unwrap(p.read_bytes()) for p in out.iterdir()) == expected()
    assert on_server(maildrop) == {}


def test_an_mda_killed_with_the_run_leaves_its_message_to_be_delivered_again(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    """Killed with its wrapper (no exit status), the MDA's message counts as not delivered:
    the next run delivers it, with a warning. Here the MDA had not written it: once only."""
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    slow = ("--mda", f"sleep 30; cat > {out}/$$", "--state-dir", str(state))
    proc = subprocess.Popen(
        fetch_command(server.port, *slow),
        env=env(POP3_TEST_PASSWORD=PASSWORD),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status_file = str(state / ".pop3-fetch.mda-status")
    deadline = time.monotonic() + 30
    while not os.path.exists(status_file + ".started"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    # The wrapper this run started leads a session of its own: kill all of it. (A child
    # it has forked but not yet exec'd has its command line too, not its process group.)
    wrappers = [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and status_file.encode() in _cmdline(int(pid)) and _leads(int(pid))
    ]
    assert len(wrappers) == 1
    os.killpg(wrappers[0], 9)
    result = fetch(server.port, "--mda", f"cat > {out}/$$", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert "was killed too, leaving no exit status" in result.stderr
    assert "its message will be delivered again" in result.stderr
    assert sorted(unwrap(p.read_bytes()) for p in out.iterdir()) == expected()
    assert on_server(maildrop) == {}


def _leads(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- the stored form, in-process ---------------------------------------------------------


def stored_form(message: bytes, cuts: list[int], **options: bool) -> bytes:
    form = MessageForm(b"X-Head: 1\n", **options)
    out, start = b"", 0
    for cut in [*cuts, len(message)]:
        out += form.feed(message[start:cut])
        start = cut
    out += form.end()
    assert form.sha256 == hashlib.sha256(message).hexdigest()
    assert form.size == len(message)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_stored_form_does_not_depend_on_where_chunks_are_cut(seed: int) -> None:
    import random

    rng = random.Random(seed)
    pieces = [b"From ", b"Fro", b"m ", b"\r\n", b"\r", b"\n", b">From ", b"x", b"."]
    for _ in range(300):
        message = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 20)))
        cuts = sorted(rng.sample(range(len(message) + 1), min(len(message) + 1, 4)))
        for options in ({}, {"crlf": True}, {"mbox": True}):
            whole = stored_form(message, [], **options)
            assert stored_form(message, cuts, **options) == whole, (message, cuts, options)
            lf = options.get("crlf") is not True
            text = message.replace(b"\r\n", b"\n") if lf else message
            if options.get("mbox"):
                text = mbox_quoted(text)
            head = b"X-Head: 1\n" if lf else b"X-Head: 1\r\n"
            if text and not text.endswith(b"\n"):
                text += b"\n" if lf else b"\r\n"
            assert whole == head + text


def test_trace_fields_hold_no_control_characters_and_name_tls() -> None:
    from pop3_cli._mailform import trace_fields

    fields = trace_fields(
        user="al\r\nBcc: x@evil\r\n<ice>",
        host="pop\n.example",
        tls=True,
        delivered_to=True,
        received=True,
        now=0.0,
    )
    lines = fields.split(b"\n")
    assert lines[0] == b"Delivered-To: al??Bcc: x@evil???ice?"  # an address: kept as the name
    assert b"\r" not in fields and len(lines) == 5 and lines[-1] == b""
    assert lines[1] == b"Received: from pop?.example [pop?.example]"
    assert lines[2].endswith(b" with POP3S (pop3 fetch)")
    assert (
        trace_fields(user="a@b", host="h", tls=False, delivered_to=True, received=False, now=0.0)
        == b"Delivered-To: a@b\n"
    )


def test_ctrl_c_during_an_mda_run_lets_it_finish_and_records_it(
    server: PopServer, maildrop: Path, tmp_path: Path
) -> None:
    """SIGINT (Ctrl-C) waits for the running delivery, records it, deletes nothing, exits 130."""
    import signal

    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    options = ("--mda", f"sleep 0.5; cat > {out}/$$", "--state-dir", str(state))
    proc = subprocess.Popen(
        fetch_command(server.port, *options),
        env=env(POP3_TEST_PASSWORD=PASSWORD),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (state / ".pop3-fetch.mda-status.started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted; nothing was deleted on the server" in err
    assert len(list(out.iterdir())) == 1  # the delivery under way was completed
    assert len(on_server(maildrop)) == 3
    result = fetch(server.port, "--mda", f"cat > {out}/$$", "--state-dir", str(state))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "fetched 2 messages" in result.stdout and "1 already stored" in result.stdout
    assert sorted(unwrap(p.read_bytes()) for p in out.iterdir()) == expected()
    assert on_server(maildrop) == {}
