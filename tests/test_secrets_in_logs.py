"""No password reaches a log or an error message, whatever the login method.

Every login method the server offers is used with the right password and with a wrong
one, plus the over-long and malformed lines that end up in protocol errors, against
every binding's server, with every logger of the process at DEBUG. Then the whole
captured log (messages, arguments, tracebacks) and every exception's text are searched
for the passwords in each form they travel in: as they are, in base64 (AUTH LOGIN), and
inside the base64 of a PLAIN message. docs/architecture.md, invariant 7; issue 7's "never logged".
"""

from __future__ import annotations

import base64
import logging
import socket

import pytest

import pop3_sync
from bindings import NAMES, serving
from pop3_maildrop import Backend, MemoryStorage, UserDB

PASSWORD = "Pw-7f3a9c-right"
WRONG = "Pw-c4d2e1-wrong"
METHODS = ["USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]


def forms(secret: str) -> list[str]:
    """The ways ``secret`` can appear on the wire or in a log."""
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.b64encode(b"\0alice\0" + raw).decode(),
        base64.b64encode(b"alice\0alice\0" + raw).decode(),
        repr(raw),
    ]


def raw_exchange(port: int, lines: list[bytes]) -> list[bytes]:
    """Send ``lines`` one by one on a fresh connection; the answer line to each.

    Stops when the server closes the connection (it does after some errors); a
    reset then may drop that last answer, which the caller does not count on.
    """
    answers: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # the greeting
        for line in lines:
            try:
                sock.sendall(line)
                answer = reader.readline()
            except ConnectionError:
                break
            if not answer:
                break
            answers.append(answer)
        reader.close()
    return answers


@pytest.mark.parametrize("server", NAMES)
def test_no_password_in_any_log_or_error(server: str, caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    storage.add("alice", b"Subject: hello\n\nbody\n")
    backend = Backend(UserDB.from_pairs({"alice": PASSWORD}), storage)
    errors: list[str] = []
    caplog.set_level(logging.DEBUG)  # the root logger: every logger of the process
    with serving(
        server,
        backend,
        failed_login_delay=0,
        max_failed_logins=100,
        apop=True,
        mechanisms=METHODS[2:],
    ) as port:
        for method in METHODS:
            for password in (PASSWORD, WRONG):
                with pop3_sync.connect("127.0.0.1", port, tls=None, timeout=10) as client:
                    try:
                        if method == "USER":
                            client.login("alice", password, mechanism="USER")
                        elif method == "APOP":
                            client.apop("alice", password)
                        else:
                            client.auth(method, "alice", password=password)
                    except pop3_sync.Pop3Error as exc:
                        assert password == WRONG, (method, exc)
                        errors.append(f"{exc!s} {exc!r} {exc.args!r}")
                    else:
                        assert password == PASSWORD, method
                        assert client.stat() == (1, len(b"Subject: hello\r\n\r\nbody\r\n"))
        # Lines the server refuses as malformed or too long: the errors it logs and
        # answers must not quote them.
        pad = "x" * 300
        plain = base64.b64encode(b"\0alice\0" + WRONG.encode())
        answers = [
            *raw_exchange(port, [b"USER alice\r\n", f"PASS {WRONG}{pad}\r\n".encode()]),
            *raw_exchange(port, [f"APOP alice {WRONG}{pad}\r\n".encode()]),
            *raw_exchange(port, [b"AUTH PLAIN " + plain + b"!\r\n"]),  # not base64: refused
            *raw_exchange(
                port,
                [
                    b"AUTH LOGIN\r\n",
                    base64.b64encode(b"alice") + b"\r\n",
                    base64.b64encode(WRONG.encode()) + b"A" * 40000 + b"\r\n",
                ],
            ),
        ]
    # The over-long PASS and APOP lines and the bad base64 are answered -ERR.
    assert sum(answer.startswith(b"-ERR") for answer in answers) >= 3, answers
    errors.append(b"".join(answers).decode("latin-1"))
    records = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    haystack = caplog.text + records + "\n".join(errors)
    assert "alice" in haystack  # the logs do name the sessions' user
    for secret in (PASSWORD, WRONG):
        for form in forms(secret):
            assert form not in haystack, (form, secret)
