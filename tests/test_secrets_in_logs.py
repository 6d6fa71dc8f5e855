"""No password reaches a log or an error message, whatever the login method.

Every login method the server offers is used with the right password and with a wrong
one, plus the over-long and malformed lines that end up in protocol errors, against
every binding's server, with every logger of the process at DEBUG (the protocol trace
included). Then the whole captured log (messages, arguments, tracebacks) and every
exception's text are searched for the passwords in each form they travel in: as they are,
in base64 (AUTH LOGIN), and inside the base64 of a PLAIN message. The same logins against
``pop3 serve -vv`` of each binding: its stderr, trace and all, holds no password either.
docs/architecture.md, invariant 7; issue 7's "never logged"; docs/logging.md.
"""

from __future__ import annotations

import base64
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pop3_sync
from bindings import NAMES, serving
from helpers import log_fields
from pop3_maildrop import Backend, MemoryStorage, UserDB
from served import PopServer, deliver, write_users

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


def attempt(port: int, method: str, password: str) -> str | None:
    """Log in as alice with ``method``; the error's text if refused, else ``None``."""
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
            return f"{exc!s} {exc!r} {exc.args!r}"
        assert password == PASSWORD, method
        assert client.stat()[0] == 1
        return None


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
                error = attempt(port, method, password)
                if error is not None:
                    errors.append(error)
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
    # The log does say who tried what, and the trace was on (DEBUG): what was searched.
    logins = [log_fields(r.getMessage()) for r in caplog.records if r.name == "pop3.server"]
    for event in ("login", "auth failed"):
        tried = [f["method"] for e, f in logins if e == event and f["user"] == "<alice>"]
        assert tried == METHODS, (event, tried)
    trace = [r.getMessage() for r in caplog.records if r.name == "pop3.server.trace"]
    assert sum(" C: PASS ***" in line for line in trace) == 2  # right and wrong (not over-long)
    assert sum(" S: + ***" in line for line in trace) >= 10  # SASL challenges, hidden
    for secret in (PASSWORD, WRONG):
        for form in forms(secret):
            assert form not in haystack, (form, secret)


@pytest.mark.parametrize("backend", NAMES)
def test_no_password_in_the_trace_of_pop3_serve_vv(tmp_path: Path, backend: str) -> None:
    """``pop3 serve -vv``: every method, right and wrong at once (the failed-login delay
    is the CLI's 2 s, so the attempts run side by side), then the whole stderr is searched."""
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    deliver(tmp_path / "mail" / "alice", "m1", b"Subject: hello\n\nbody\n")
    # -q is PopServer's own: -vvv makes it -vv.
    with PopServer(tmp_path, backend, users, tmp_path / "mail", "-vvv") as server:
        with ThreadPoolExecutor(len(METHODS)) as pool:
            # The wrong ones side by side; the right ones one at a time (the maildrop
            # admits one session at a time).
            wrong = [pool.submit(attempt, server.port, method, WRONG) for method in METHODS]
            assert [attempt(server.port, method, PASSWORD) for method in METHODS] == [None] * 7
            assert all(future.result() is not None for future in wrong)
        assert server.stop() == 0
        stderr = server.stderr
    trace = [line for line in stderr.splitlines() if " pop3.server.trace[" in line]
    assert sum(line.endswith(" C: PASS ***") for line in trace) == 2
    assert sum(line.endswith(" C: APOP alice ***") for line in trace) == 2
    assert any(" S: +OK maildrop has 1 messages" in line for line in trace)
    assert sum("auth failed: rip=127.0.0.1 " in line for line in stderr.splitlines()) == 7
    for secret in (PASSWORD, WRONG):
        for form in forms(secret):
            assert form not in stderr, (form, secret)
