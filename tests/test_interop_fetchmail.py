"""fetchmail (Debian package fetchmail) against every binding's server (see ourserver.py).

fetchmail runs in the foreground (``--nodetach``, ``-v`` for its side of the dialogue) with
a run-control file of its own (``-f``, mode 0600 as fetchmail demands), its UID file
(``-i``), pid file and ``HOME`` in ``tmp_path``. It delivers through an MDA, a small shell
script writing each message to a numbered file. It stores LF line ends and puts one
``Received:`` header field (three lines) in front of each message, which is checked and
removed before the comparison with the stored message (``lf``). As root it warns that it
should not run as root; that is all. Without fetchmail the tests skip, or fail when
``POP3_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trustme

from ourserver import MESSAGES, PASSWORD, USER, Served, lf, run
from peers import HOST, require_peer

pytest_plugins = ["peers", "ourserver"]

NO_MAIL = 1  # fetchmail's exit status when there was no new mail
RECEIVED = re.compile(
    rb"Received: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n"
    rb"\tby \S+ with POP3S? \(fetchmail-[\d.]+\)\n"
    rb"\tfor <[^<>\n]*> \(single-drop\); [A-Z][a-z]{2}, [ \d]?\d [A-Z][a-z]{2} \d{4} "
    rb"\d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)\n"
)


class Fetchmail:
    """One fetchmail poll of ``served``: ``server`` and ``user`` options as rc-file text."""

    def __init__(self, served: Served, directory: Path, server: str, user: str) -> None:
        self.served = served
        self.dir = directory
        self.out = directory / "delivered"
        self.out.mkdir(parents=True)
        mda = directory / "deliver"
        mda.write_text(
            "#!/bin/sh\n"
            f'n=$(ls "{self.out}" | wc -l)\n'
            f'exec cat > "{self.out}/$(printf %03d $((n + 1)))"\n'
        )
        mda.chmod(0o700)
        self.ids = directory / "ids"
        self.rc = directory / "fetchmailrc"
        self.rc.write_text(
            "set no syslog\n"
            f"poll {HOST} with proto POP3 {server}\n"
            f'  user "{USER}" there with password "{PASSWORD}" {user}\n'
            f'  mda "{mda}"\n'
        )
        self.rc.chmod(0o600)  # fetchmail refuses a run-control file others can read

    def run(self) -> tuple[int, list[str]]:
        """Run fetchmail once; its exit status and the commands it sent (from ``-v``)."""
        fetchmail = require_peer("fetchmail", "fetchmail")
        env = {**os.environ, "HOME": str(self.dir)}
        command = [fetchmail, "-f", str(self.rc), "--nodetach", "-v", "-i", str(self.ids)]
        command += ["--pidfile", str(self.dir / "pid")]
        result = run(command, env=env)
        log = result.stdout + result.stderr
        print(log[-5000:])  # shown when the test fails
        return result.returncode, re.findall(r"POP3> (.*)$", log, re.MULTILINE)

    def delivered(self) -> list[bytes]:
        """What the MDA received so far, in delivery order, each Received: field removed."""
        messages = []
        for path in sorted(self.out.iterdir()):
            message = path.read_bytes()
            match = RECEIVED.match(message)
            assert match, message[:300]
            messages.append(message[match.end() :])
        return messages


EXPECTED = [lf(m) for m in MESSAGES]
TOP_DELE = ("TOP {} 99999999", "DELE {}")
TLS = "sslcertck sslcertfile {ca} sslcommonname localhost"


def test_fetchmail_uidl_keep_then_nothing_new(served: Served, tmp_path: Path) -> None:
    server = f"port {served.port} uidl auth password"
    fetchmail = Fetchmail(served, tmp_path / "fm", server, "keep sslproto ''")
    status, sent = fetchmail.run()
    assert status == 0
    assert fetchmail.delivered() == EXPECTED
    assert f"USER {USER}" in sent and "UIDL" in sent and "STLS" not in sent
    # fetchmail reads with TOP n 99999999, not RETR (so the server marks nothing as seen).
    assert [c for c in sent if c.startswith(("RETR", "TOP"))] == [
        f"TOP {n} 99999999" for n in range(1, len(MESSAGES) + 1)
    ]
    assert not any(c.startswith("DELE") for c in sent)
    assert served.stored() == served.original()
    ids = fetchmail.ids.read_text().split()
    assert [i for i in ids if not i.startswith(f"{USER}@")] == served.names
    status, sent = fetchmail.run()
    assert status == NO_MAIL
    assert not any(c.startswith(("RETR", "TOP")) for c in sent), sent
    assert fetchmail.delivered() == EXPECTED
    assert served.stored() == served.original()


def test_fetchmail_stls_nokeep_deletes_at_quit(served: Served, tmp_path: Path) -> None:
    server = f"port {served.port} uidl"
    user = "nokeep sslproto 'TLS1.2+' " + TLS.format(ca=served.ca_file)
    fetchmail = Fetchmail(served, tmp_path / "fm", server, user)
    status, sent = fetchmail.run()
    assert status == 0
    assert fetchmail.delivered() == EXPECTED
    assert sent[:3] == ["CAPA", "STLS", "CAPA"]
    # Each message read with TOP n 99999999 too, and marked deleted right after delivery.
    assert [c for c in sent if c.startswith(("RETR", "TOP", "DELE"))] == [
        command.format(n) for n in range(1, len(MESSAGES) + 1) for command in TOP_DELE
    ]
    assert sent[-1] == "QUIT"
    assert served.stored() == {}


def test_fetchmail_refuses_an_untrusted_certificate(served: Served, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    server = f"port {served.tls_port}"
    user = "nokeep ssl " + TLS.format(ca=other)
    fetchmail = Fetchmail(served, tmp_path / "fm", server, user)
    status, sent = fetchmail.run()
    assert status == 2  # PS_SOCKET: the TLS handshake failed
    assert sent == []
    assert list(fetchmail.out.iterdir()) == []
    assert served.stored() == served.original()


@pytest.mark.parametrize(
    ("auth", "command"), [("cram-md5", "AUTH CRAM-MD5"), ("apop", "APOP")], ids=["cram-md5", "apop"]
)
def test_fetchmail_pop3s(served: Served, tmp_path: Path, auth: str, command: str) -> None:
    proto = "APOP" if auth == "apop" else "POP3"
    server = f"port {served.tls_port} uidl" + ("" if auth == "apop" else f" auth {auth}")
    user = "keep ssl " + TLS.format(ca=served.ca_file)
    fetchmail = Fetchmail(served, tmp_path / "fm", server, user)
    fetchmail.rc.write_text(fetchmail.rc.read_text().replace("proto POP3", f"proto {proto}"))
    status, sent = fetchmail.run()
    assert status == 0
    assert fetchmail.delivered() == EXPECTED
    assert "STLS" not in sent
    assert any(c.startswith(command) for c in sent), sent
    assert served.stored() == served.original()


def test_fetchmail_wrong_password(served: Served, tmp_path: Path) -> None:
    server = f"port {served.port} auth password"
    fetchmail = Fetchmail(served, tmp_path / "fm", server, "nokeep sslproto ''")
    fetchmail.rc.write_text(fetchmail.rc.read_text().replace(PASSWORD, "wrong"))
    status, sent = fetchmail.run()
    assert status == 3  # PS_AUTHFAIL
    assert sent == [f"USER {USER}", "PASS *", "QUIT"]  # fetchmail masks the password
    assert list(fetchmail.out.iterdir()) == []
    assert served.stored() == served.original()
