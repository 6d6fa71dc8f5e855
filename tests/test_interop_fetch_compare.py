"""``pop3 fetch`` stores what getmail6 and fetchmail store, byte for byte, header fields aside.

One mailbox (ourserver.MESSAGES: LF and CRLF line ends, dot lines, ``From `` and
``>From `` lines, no final newline, 8-bit text, a big one) is served by our asyncio
server and by a private Dovecot. Each source is fetched, with the mail kept on the
server, by ``pop3 fetch`` into a Maildir, into an mbox and through an MDA (a shell
command writing each message to a file), by getmail6 into a Maildir
and into an mbox (its ``Mboxrd`` destination), and by fetchmail through an MDA that
writes each message to a file (fetchmail's own way to a Maildir or mbox). Then the
header fields each adds are removed (ours: Delivered-To and Received; getmail's:
Return-Path; fetchmail's: Received) and the messages compared:

* the Maildirs of ``pop3 fetch`` and getmail6, and what fetchmail's MDA and ``pop3
  fetch``'s MDA were given, are equal;
* the mboxes differ only in the quoting, as they should: getmail6 writes mboxrd
  (``>From `` becomes ``>>From ``), ``pop3 fetch`` mboxo as Python's ``mailbox.mbox``
  (only ``From `` is quoted): getmail's messages, unquoted (mboxrd is reversible) and
  quoted again the mboxo way, equal ours.

Without getmail6, fetchmail or Dovecot the tests skip, or fail when
``POP3_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from fetched import mbox_messages, mbox_quoted, unwrap
from ourserver import MESSAGES, PASSWORD, USER, run, serve_maildir
from peers import HOST, MAIL_GID, MAIL_UID, USERS, DovecotFactory, require_peer
from served import env, pop3, stored

pytest_plugins = ["peers", "ourserver"]

RETURN_PATH = b"Return-Path: <unknown>\n"
GETMAIL_TIMEOUT = 15.0
"""Seconds before a getmail run is taken for hung (it takes well under one)."""
FETCHMAIL_RECEIVED = re.compile(
    rb"Received: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n\tby \S+ with POP3 \(fetchmail-[\d.]+\)\n"
    rb"\tfor <[^<>\n]*> \(single-drop\); [^\n]+\n"
)


@dataclass
class Source:
    name: str
    port: int
    password: str


@pytest.fixture(params=["ours", "dovecot"])
def source(
    request: pytest.FixtureRequest, tmp_path: Path, ca: trustme.CA, served_cert: trustme.LeafCert
) -> Iterator[Source]:
    if request.param == "ours":
        with serve_maildir("asyncio", tmp_path / "served", ca, served_cert) as served:
            yield Source("ours", served.port, PASSWORD)
        return
    start: DovecotFactory = request.getfixturevalue("dovecot")
    server = start({USER: MESSAGES})
    yield Source("dovecot", server.port, USERS[USER])


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory getmail6 can deliver to: as root it delivers as the mail user."""
    root = Path(tempfile.mkdtemp(prefix="pop3-compare-"))
    try:
        root.chmod(0o711)
        maildir = root / "Maildir"
        for sub in ("", "tmp", "new", "cur"):
            (maildir / sub).mkdir()
        mbox = root / "mbox"
        mbox.write_bytes(b"")
        if os.geteuid() == 0:
            for path in [maildir, *maildir.iterdir(), mbox]:
                os.chown(path, MAIL_UID, MAIL_GID)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pop3_fetch(source: Source, *target: str) -> None:
    result = run(
        pop3(
            *("fetch", "--host", HOST, "--port", str(source.port), "--user", USER),
            *("--password-env", "POP3_TEST_PASSWORD", "--keep", *target),
        ),
        env=env(POP3_TEST_PASSWORD=source.password),
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def getmail(source: Source, directory: Path, destination: dict[str, str]) -> None:
    """Run getmail6 once into ``destination`` (emptied first).

    getmail6 6.18 delivering as another user (root runs it as mail) now and then
    hangs for good in a futex wait after a few messages (seen about once in ten runs,
    with our server and with no other process involved): a hung run is killed and
    run again, its partial delivery removed.
    """
    binary = require_peer("getmail", "getmail6")
    directory.mkdir()
    if os.geteuid() == 0:
        destination = {**destination, "user": "mail"}
    sections = {
        "retriever": {
            "type": "SimplePOP3Retriever",
            "server": HOST,
            "port": str(source.port),
            "username": USER,
            "password": source.password,
        },
        "destination": destination,
        "options": {"read_all": "true", "delete": "false", "delivered_to": "false"}
        | {"received": "false"},
    }
    (directory / "getmailrc").write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
            for name, values in sections.items()
        )
    )
    command = [binary, "--getmaildir", str(directory), "--rcfile", "getmailrc"]
    for attempt in range(3):
        path = Path(destination["path"])
        if path.is_dir():
            for old in (*(path / "new").iterdir(), *(path / "tmp").iterdir()):
                old.unlink()
        else:
            path.write_bytes(b"")
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=GETMAIL_TIMEOUT,
                check=False,
                env={**os.environ, "HOME": str(directory)},
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            print(f"getmail hung (attempt {attempt + 1}); running it again")
            continue
        assert result.returncode == 0, result.stdout + result.stderr
        return
    raise AssertionError("getmail hung three times")


def without_return_path(message: bytes) -> bytes:
    assert message.startswith(RETURN_PATH), message[:200]
    return message[len(RETURN_PATH) :]


def mboxrd_unquoted(message: bytes) -> bytes:
    """mboxrd's quoting reversed: one ``>`` less before ``>*From `` at a line start."""
    return re.sub(rb"(?m)^>(>*From )", rb"\1", message)


def fetchmail(source: Source, directory: Path) -> list[bytes]:
    binary = require_peer("fetchmail", "fetchmail")
    out = directory / "delivered"
    out.mkdir(parents=True)
    mda = directory / "deliver"
    mda.write_text(f'#!/bin/sh\nexec cat > "$(mktemp "{out}/m.XXXXXX")"\n')
    mda.chmod(0o700)
    rc = directory / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll {HOST} with proto POP3 port {source.port} uidl auth password\n"
        f'  user "{USER}" there with password "{source.password}" keep fetchall sslproto \'\'\n'
        f'  mda "{mda}"\n'
    )
    rc.chmod(0o600)
    command = [binary, "-f", str(rc), "--nodetach", "-i", str(directory / "ids")]
    command += ["--pidfile", str(directory / "pid")]
    result = run(command, env={**os.environ, "HOME": str(directory)})
    assert result.returncode == 0, result.stdout + result.stderr
    messages = []
    for path in out.iterdir():
        data = path.read_bytes()
        match = FETCHMAIL_RECEIVED.match(data)
        assert match, data[:300]
        messages.append(data[match.end() :])
    return messages


def test_pop3_fetch_stores_what_getmail_and_fetchmail_store(
    source: Source, tmp_path: Path, shared: Path
) -> None:
    to = f"{USER}@{HOST}"
    ours_maildir = tmp_path / "pop3-maildir"
    pop3_fetch(source, "--maildir", str(ours_maildir))
    ours_mbox = tmp_path / "pop3-mbox"
    pop3_fetch(source, "--mbox", str(ours_mbox))
    ours_mda = tmp_path / "pop3-mda"
    ours_mda.mkdir()
    mda = f'cat > "$(mktemp "{ours_mda}/m.XXXXXX")"'
    pop3_fetch(source, "--mda", mda, "--state-dir", str(tmp_path / "mda-state"))
    getmail(source, tmp_path / "getmail-maildir", {"type": "Maildir", "path": f"{shared}/Maildir/"})
    getmail(source, tmp_path / "getmail-mbox", {"type": "Mboxrd", "path": f"{shared}/mbox"})

    ours = sorted(unwrap(m, to) for m in stored(ours_maildir).values())
    assert len(ours) == len(MESSAGES)
    theirs = sorted(without_return_path(m) for m in stored(shared / "Maildir").values())
    assert ours == theirs
    assert sorted(fetchmail(source, tmp_path / "fetchmail")) == ours
    assert sorted(unwrap(p.read_bytes(), to) for p in ours_mda.iterdir()) == ours

    ours_in_mbox = sorted(unwrap(m, to) for m in mbox_messages(ours_mbox))
    getmail_mbox = [without_return_path(m) for m in mbox_messages(shared / "mbox")]
    assert ours_in_mbox == sorted(mbox_quoted(mboxrd_unquoted(m)) for m in getmail_mbox)
    # The quoting was exercised: the first message has a "From " and a ">From " line.
    assert any(b"\n>From the desk" in m for m in ours_in_mbox)
    assert any(b"\n>>From quoted" in m for m in getmail_mbox)
    assert sorted(mboxrd_unquoted(m) for m in getmail_mbox) == ours
