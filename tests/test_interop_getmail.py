"""getmail6 (Debian package getmail6) against every binding's server (see ourserver.py).

getmail runs with ``--getmaildir`` in ``tmp_path`` (its rc file and its oldmail file, the
UIDs it has seen, live there) and delivers to a Maildir. getmail refuses to deliver as
root: as root, the destination says ``user = mail`` and the Maildir lives in a private
directory (mode 0711) under the system temporary directory that the mail user can reach,
removed after the test (pytest's own temporary directories are 0700). getmail has no STLS.

getmail parses each message and writes it out again with LF line ends; with
``delivered_to`` and ``received`` off it still writes a ``Return-Path:`` field first
(``<unknown>`` for these messages, which have neither Return-Path nor Sender). That line
is checked and removed; the rest must equal the stored message with LF line ends (``lf``).
Without getmail the tests skip, or fail when ``POP3_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from ourserver import MESSAGES, PASSWORD, USER, Served, lf, run, serve_maildir
from peers import HOST, MAIL_GID, MAIL_UID, require_peer

pytest_plugins = ["peers", "ourserver"]

RETURN_PATH = b"Return-Path: <unknown>\n"
EXPECTED = sorted(lf(m) for m in MESSAGES)


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[Path]:
    """An empty Maildir getmail can deliver to (see the module)."""
    if os.geteuid() != 0:
        maildir = tmp_path / "delivered"
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True)
        yield maildir
        return
    root = Path(tempfile.mkdtemp(prefix="pop3-getmail-"))
    try:
        root.chmod(0o711)
        maildir = root / "Maildir"
        for sub in ("", "tmp", "new", "cur"):
            (maildir / sub).mkdir(exist_ok=True)
            os.chown(maildir / sub, MAIL_UID, MAIL_GID)
        yield maildir
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Getmail:
    def __init__(self, directory: Path, destination: Path, retriever: dict[str, str]) -> None:
        self.dir = directory
        self.dir.mkdir()
        self.destination = destination
        options = {"verbose": "2", "read_all": "false", "delete": "false"}
        options |= {"delivered_to": "false", "received": "false"}
        target = {"type": "Maildir", "path": f"{destination}/"}
        if os.geteuid() == 0:
            target["user"] = "mail"
        retriever = {"server": HOST, "username": USER, "password": PASSWORD} | retriever
        sections = {"retriever": retriever, "destination": target, "options": options}
        (self.dir / "getmailrc").write_text(
            "".join(
                f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                for name, values in sections.items()
            )
        )

    def set(self, section: str, key: str, value: str) -> None:
        rc = self.dir / "getmailrc"
        text = rc.read_text()
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        rc.write_text(text.replace(old, f"{key} = {value}"))

    def run(self) -> int:
        getmail = require_peer("getmail", "getmail6")
        command = [getmail, "--getmaildir", str(self.dir), "--rcfile", "getmailrc"]
        result = run(command, env={**os.environ, "HOME": str(self.dir)})
        print(result.stdout, result.stderr)  # shown when the test fails
        return result.returncode

    def delivered(self) -> list[bytes]:
        """The messages delivered so far, sorted, each Return-Path: line checked and removed."""
        messages = []
        for path in (self.destination / "new").iterdir():
            message = path.read_bytes()
            assert message.startswith(RETURN_PATH), message[:300]
            messages.append(message[len(RETURN_PATH) :])
        return sorted(messages)

    def oldmail(self) -> list[str]:
        """The UIDs in getmail's oldmail file(s): ``UID\\0time`` lines."""
        return sorted(
            line.split("\0")[0]
            for path in self.dir.glob("oldmail-*")
            for line in path.read_text().splitlines()
        )


def test_getmail_pop3_keep_then_nothing_new(
    served: Served, tmp_path: Path, destination: Path
) -> None:
    retriever = {"type": "SimplePOP3Retriever", "port": str(served.port)}
    getmail = Getmail(tmp_path / "getmail", destination, retriever)
    assert getmail.run() == 0
    assert getmail.delivered() == EXPECTED
    assert served.stored() == served.original()  # delete = false
    assert getmail.oldmail() == sorted(served.names)
    # The oldmail file remembers every UID, so a second run fetches nothing.
    assert getmail.run() == 0
    assert getmail.delivered() == EXPECTED
    assert served.stored() == served.original()


def test_getmail_pop3_delete(served: Served, tmp_path: Path, destination: Path) -> None:
    retriever = {"type": "SimplePOP3Retriever", "port": str(served.port)}
    getmail = Getmail(tmp_path / "getmail", destination, retriever)
    getmail.set("options", "delete", "true")
    assert getmail.run() == 0
    assert getmail.delivered() == EXPECTED
    assert served.stored() == {}


def test_getmail_pop3_ssl(served: Served, tmp_path: Path, destination: Path) -> None:
    # The certificate is checked against the server's address, 127.0.0.1 (an IP SAN).
    retriever = {
        "type": "SimplePOP3SSLRetriever",
        "port": str(served.tls_port),
        "ca_certs": str(served.ca_file),
    }
    getmail = Getmail(tmp_path / "getmail", destination, retriever)
    getmail.set("options", "delete", "true")
    assert getmail.run() == 0
    assert getmail.delivered() == EXPECTED
    assert served.stored() == {}


def test_getmail_pop3_ssl_refuses_an_untrusted_certificate(
    served: Served, tmp_path: Path, destination: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    retriever = {
        "type": "SimplePOP3SSLRetriever",
        "port": str(served.tls_port),
        "ca_certs": str(other),
    }
    getmail = Getmail(tmp_path / "getmail", destination, retriever)
    getmail.set("options", "delete", "true")
    assert getmail.run() != 0
    assert getmail.delivered() == []
    assert served.stored() == served.original()


def test_getmail_apop(
    served: Served, tmp_path: Path, destination: Path, ca: trustme.CA, served_cert: trustme.LeafCert
) -> None:
    retriever = {"type": "SimplePOP3Retriever", "port": str(served.port), "use_apop": "true"}
    getmail = Getmail(tmp_path / "getmail", destination, retriever)
    assert getmail.run() == 0
    assert getmail.delivered() == EXPECTED
    # getmail really used APOP: against a server without it, the same run fails.
    with serve_maildir(served.binding, tmp_path / "no-apop", ca, served_cert, apop=False) as other:
        getmail = Getmail(tmp_path / "getmail2", destination, retriever)
        getmail.set("retriever", "port", str(other.port))
        assert getmail.run() != 0
        assert other.stored() == other.original()
    assert getmail.delivered() == EXPECTED  # nothing more
