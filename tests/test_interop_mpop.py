"""mpop (Debian package mpop) against every binding's server (see ourserver.py).

mpop runs with a configuration file of its own (``-C``), its UIDs file and its deliveries in
``tmp_path``, and ``--debug`` so that its side of the dialogue can be checked. It stores LF
line ends; with ``received_header off`` it adds nothing, so what it delivers must equal the
stored message with CRLF made LF (``lf``). Its default ``Received:`` header is checked in
its own test. Without mpop the tests skip, or fail when ``POP3_REQUIRE_PEERS=1``.
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


class Mpop:
    """One mpop account (``test``) for ``served``, configured in ``dir``."""

    def __init__(self, served: Served, directory: Path, **settings: str) -> None:
        self.served = served
        self.dir = directory
        self.dir.mkdir(exist_ok=True)
        self.maildir = self.dir / "delivered"
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        self.uidls = self.dir / "uidls"
        config = {
            "host": HOST,
            "port": str(served.port),
            "user": USER,
            "password": PASSWORD,
            "auth": "user",
            "tls": "off",
            "delivery": f"maildir {self.maildir}",
            "uidls_file": str(self.uidls),
            "received_header": "off",
            "keep": "on",
            "timeout": "20",
        }
        config.update(settings)
        self.rc = self.dir / "mpoprc"
        self.rc.write_text(
            "account test\n" + "".join(f"{key} {value}\n" for key, value in config.items())
        )
        self.rc.chmod(0o600)  # mpop refuses a configuration file others can read

    def run(self) -> tuple[int, list[str]]:
        """Run mpop once; its exit status and the commands it sent (from ``--debug``)."""
        mpop = require_peer("mpop", "mpop")
        env = {**os.environ, "HOME": str(self.dir)}
        result = run([mpop, "-C", str(self.rc), "--debug", "test"], env=env)
        sent = re.findall(r"^--> (.*)$", result.stdout, re.MULTILINE)
        print(result.stdout[-4000:], result.stderr)  # shown when the test fails
        return result.returncode, sent

    def delivered(self) -> list[bytes]:
        """The messages mpop delivered to its Maildir so far, sorted."""
        return sorted(path.read_bytes() for path in (self.maildir / "new").iterdir())


def expected() -> list[bytes]:
    return sorted(lf(m) for m in MESSAGES)


def test_mpop_keep_then_nothing_new(served: Served, tmp_path: Path) -> None:
    mpop = Mpop(served, tmp_path / "mpop")
    status, sent = mpop.run()
    assert status == 0
    assert mpop.delivered() == expected()
    assert sent[:3] == ["CAPA", f"USER {USER}", f"PASS {PASSWORD}"]
    assert sent[-1] == "QUIT" and not any(c.startswith("DELE") for c in sent)
    assert served.stored() == served.original()  # keep: nothing deleted
    # The UIDL answer went into mpop's UIDs file, so a second run fetches nothing.
    assert mpop.uidls.read_text().splitlines()[-len(MESSAGES) :] == served.names
    status, sent = mpop.run()
    assert status == 0
    assert not any(c.startswith(("RETR", "TOP")) for c in sent), sent
    assert mpop.delivered() == expected()
    assert served.stored() == served.original()


def test_mpop_stls_without_keep_deletes_at_quit(served: Served, tmp_path: Path) -> None:
    settings = {
        "tls": "on",
        "tls_starttls": "on",
        "tls_trust_file": str(served.ca_file),
        "keep": "off",
        "auth": "plain",
    }
    mpop = Mpop(served, tmp_path / "mpop", **settings)
    status, sent = mpop.run()
    assert status == 0
    assert mpop.delivered() == expected()
    assert sent[:3] == ["CAPA", "STLS", "CAPA"]
    assert "AUTH PLAIN" in sent
    assert [c for c in sent if c.startswith("DELE")] == [
        f"DELE {n}" for n in range(1, len(MESSAGES) + 1)
    ]
    assert sent[-1] == "QUIT"
    assert served.stored() == {}


def test_mpop_stls_refuses_an_untrusted_certificate(served: Served, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    settings = {"tls": "on", "tls_starttls": "on", "tls_trust_file": str(other), "keep": "off"}
    mpop = Mpop(served, tmp_path / "mpop", **settings)
    status, sent = mpop.run()
    assert status != 0
    assert "USER alice" not in sent and mpop.delivered() == []
    assert served.stored() == served.original()


def test_mpop_pop3s_to_mbox(served: Served, tmp_path: Path) -> None:
    mbox = tmp_path / "mbox"
    settings = {
        "port": str(served.tls_port),
        "tls": "on",
        "tls_starttls": "off",
        "tls_trust_file": str(served.ca_file),
        "auth": "cram-md5",
        "delivery": f"mbox {mbox}",
    }
    mpop = Mpop(served, tmp_path / "mpop", **settings)
    status, sent = mpop.run()
    assert status == 0
    assert "STLS" not in sent and "AUTH CRAM-MD5" in sent
    # mboxrd: a "From " line before each message, a blank line after it, and every
    # body line matching ">*From " one more ">".
    separator = rb"From MAILER-DAEMON [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\n"
    text = mbox.read_bytes()
    assert re.match(separator, text)
    parts = re.split(separator, text)
    assert parts[0] == b""
    quoted = [re.sub(rb"(?m)^(>*From )", rb">\1", lf(m)) + b"\n" for m in MESSAGES]
    assert parts[1:] == quoted
    assert served.stored() == served.original()


@pytest.mark.parametrize(
    ("auth", "command"),
    [
        ("user", f"USER {USER}"),
        ("plain", "AUTH PLAIN"),
        ("login", "AUTH LOGIN"),
        ("cram-md5", "AUTH CRAM-MD5"),
        ("apop", f"APOP {USER} "),
    ],
    ids=["user", "plain", "login", "cram-md5", "apop"],
)
def test_mpop_auth(served: Served, tmp_path: Path, auth: str, command: str) -> None:
    mpop = Mpop(served, tmp_path / "mpop", auth=auth)
    status, sent = mpop.run()
    assert status == 0
    assert any(c.startswith(command) for c in sent), sent
    assert mpop.delivered() == expected()


def test_mpop_wrong_password(served: Served, tmp_path: Path) -> None:
    mpop = Mpop(served, tmp_path / "mpop", password="wrong", keep="off")
    status, _ = mpop.run()
    assert status == 77  # EX_NOPERM: authentication failed
    assert mpop.delivered() == []
    assert served.stored() == served.original()


def test_mpop_received_header(served: Served, tmp_path: Path) -> None:
    mpop = Mpop(served, tmp_path / "mpop", received_header="on")
    status, _ = mpop.run()
    assert status == 0
    # Exactly one header field is added in front: "Received:" with two folded lines.
    received = re.compile(
        rb"Received: from 127\.0\.0\.1 \(localhost \[127\.0\.0\.1\]\)\n"
        rb"\tby \S+ \(mpop-[\d.]+\) with POP3\n"
        rb"\tfor <[^<>\n]*>; [A-Z][a-z]{2}, [ \d]?\d [A-Z][a-z]{2} \d{4} "
        rb"\d\d:\d\d:\d\d [+-]\d{4}\n"
    )
    stripped = []
    for message in mpop.delivered():
        match = received.match(message)
        assert match, message[:300]
        stripped.append(message[match.end() :])
    assert sorted(stripped) == expected()
