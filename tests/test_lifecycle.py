"""The one per-session lifecycle the three servers share, without sockets or clocks.

How a session ended becomes its reason through one table (each binding registers its
own exception classes); the log line has one form, the PROXY failure's included; the
address count goes up at ``start`` and down at ``end``; the TLS handshake gets at most
``HANDSHAKE_TIMEOUT`` seconds, less when the login time left is shorter.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from helpers import FakeBackend, log_fields
from pop3_sansio import State
from pop3_sansio._serverlog import shown
from pop3_sansio.proxy import ProxyHeaderError
from pop3_sansio.server import (
    HANDSHAKE_TIMEOUT,
    READ,
    BackendProtocol,
    Call,
    HandshakeTimeoutError,
    LoginAttempt,
    ServerOptions,
    SessionEnd,
    SessionLifecycle,
    SessionRun,
    StartTls,
    Write,
)

LOGGER = "test.lifecycle"


class SlowError(Exception):
    """A binding's timeout (as trio's ``TooSlowError``, which is no ``TimeoutError``)."""


class BrokenError(Exception):
    """A binding's connection error (as trio's ``BrokenResourceError``)."""


class Cancelled(BaseException):
    """A binding's cancellation (as trio's ``Cancelled`` or asyncio's ``CancelledError``)."""


class CountingLock:
    """A lock that counts how often it was held and whether it is held now."""

    def __init__(self) -> None:
        self.held = False
        self.entered = 0

    def __enter__(self) -> None:
        assert not self.held
        self.held = True
        self.entered += 1

    def __exit__(self, *exc: object) -> None:
        self.held = False


def lifecycle(
    backend: BackendProtocol | None = None, lock: CountingLock | None = None, **options: Any
) -> SessionLifecycle:
    if backend is None:
        backend = FakeBackend()
    return SessionLifecycle(
        ServerOptions(failed_login_delay=0, **options),
        backend,
        log=logging.getLogger(LOGGER),
        timeouts=(TimeoutError, SlowError),
        connection_errors=(OSError, BrokenError),
        shutdown=(Cancelled,),
        lock=lock,
        monotonic=itertools.count(100.0, 0.25).__next__,  # each session lasts 0.25 s
    )


def start(life: SessionLifecycle, peer: object = ("127.0.0.1", 40000)) -> SessionRun:
    return life.start(peer, sessions=1, hostname="pop.example", random_bytes=bytes, clock=1_000_000)


def drive(run: SessionRun, *received: bytes, close: bool = True) -> bytes:
    """Carry out the driver's instructions in memory: what the server wrote.

    ``received`` is what the client sends, one READ each; then the client
    closes, or with ``close=False`` the session stays open, waiting to read.
    """
    reads = iter(received)
    written = []
    instruction = run.driver.step()
    while instruction is not None:
        value: Any = None
        error: BaseException | None = None
        if instruction is READ:
            value = next(reads, None)
            if value is None:
                if not close:
                    break
                value = b""
        elif isinstance(instruction, Write):
            written.append(instruction.data)
        elif isinstance(instruction, Call):
            try:
                value = instruction.function(*instruction.args)
            except Exception as exc:
                error = exc
        instruction = run.driver.step(value, error)
    return b"".join(written)


@contextmanager
def logged(
    caplog: pytest.LogCaptureFixture, level: int = logging.INFO
) -> Iterator[list[logging.LogRecord]]:
    """The records of ``LOGGER`` and its children (the trace) logged in the block."""
    caplog.set_level(level, logger=LOGGER)
    records: list[logging.LogRecord] = []
    yield records
    records.extend(r for r in caplog.records if r.name.partition(".trace")[0] == LOGGER)


def lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]


WHERE = "rip=127.0.0.1 rport=40000 lip=? lport=? tls=no"
"""``start()``'s session: a peer, no local address given, no TLS."""


def ended(reason: str, counts: str = "failed=0 retr=0/0 top=0 del=0/0 in=0 out=0") -> str:
    """The end line of ``start()``'s session with no user logged in."""
    return f"session ended: {WHERE} user=<> {counts} duration=0.250 reason={reason}"


# --- the reason table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (HandshakeTimeoutError(), "TLS handshake timed out"),
        (TimeoutError(), "autologout"),
        (SlowError(), "autologout"),
        (Cancelled(), "server shutdown"),
        (ConnectionResetError(), "client-closed (connection reset)"),
        (BrokenPipeError(), "client-closed (while the server was sending)"),
        (ConnectionAbortedError(), "client-closed (connection lost: ConnectionAbortedError)"),
        (BrokenError(), "connection error: BrokenError"),
        (OSError(113, "No route to host"), "connection error: OSError"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
def test_each_registered_exception_has_its_reason(
    exc: BaseException, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = start(lifecycle())
    drive(run, b"USER alice\r\nPASS secret\r\n")  # then the client is gone: the read fails
    with logged(caplog) as records:
        assert run.failed(exc) == reason
        run.end()
    assert lines(records) == [
        f"session ended: {WHERE} user=<alice> failed=0 retr=0/0 top=0 del=0/3 in=25 out=80"
        f" duration=0.250 reason={reason}"
    ]
    assert records[0].levelno == logging.INFO


def test_checked_in_order_timeouts_before_connection_errors() -> None:
    """A ``TimeoutError`` is an ``OSError``, and a handshake timeout is a ``TimeoutError``."""
    assert issubclass(HandshakeTimeoutError, TimeoutError)
    assert issubclass(TimeoutError, OSError)
    assert start(lifecycle()).failed(TimeoutError()) == "autologout"
    assert start(lifecycle()).failed(HandshakeTimeoutError()) == "TLS handshake timed out"


def test_a_timeout_before_login_is_the_login_timeout() -> None:
    run = start(lifecycle(login_timeout=60, autologout=600))
    assert run.driver.read_timeout(0.0) == 60.0  # the login deadline is the nearer one
    assert run.failed(SlowError()) == "login-timeout"
    assert run.driver.close_reason == "login-timeout"


def test_anything_else_is_an_internal_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = start(lifecycle())
    try:
        raise KeyError("bug")
    except KeyError as exc:
        error = exc
    with logged(caplog) as records:
        assert run.failed(error) == "internal error: KeyError"
        run.end()
    assert lines(records) == ["session failed", ended("internal error: KeyError")]
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is error


def test_a_finished_driver_gives_its_close_reason(caplog: pytest.LogCaptureFixture) -> None:
    run = start(lifecycle())
    written = drive(run, b"USER alice\r\n", b"PASS secret\r\n", b"QUIT\r\n")
    assert written.count(b"+OK") == 4
    with logged(caplog) as records:
        assert run.ended() == "quit"
        run.end()
    assert lines(records) == [
        f"session ended: {WHERE} user=<alice> failed=0 retr=0/0 top=0 del=0/3 in=31"
        f" out={len(written)} duration=0.250 reason=quit"
    ]


def test_end_without_a_reason_takes_the_drivers(caplog: pytest.LogCaptureFixture) -> None:
    run = start(lifecycle())
    drive(run)  # greeted, then the client closed
    with logged(caplog) as records:
        run.end()
    assert lines(records) == [
        ended("client-closed", counts="failed=0 retr=0/0 top=0 del=0/0 in=0 out=23")
    ]


def test_a_driver_without_a_close_reason_ended_closed() -> None:
    run = start(lifecycle())
    assert run.driver.close_reason is None
    assert run.ended() == "closed"


def wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised from ``inner``, as a binding wraps the OS's error (trio does)."""
    try:
        raise outer from inner
    except BaseException as exc:
        return exc


def test_a_client_gone_is_found_behind_the_bindings_error() -> None:
    error = wrapped(BrokenError("broken"), ConnectionResetError())
    assert start(lifecycle()).failed(error) == "client-closed (connection reset)"


def test_a_chain_that_loops_is_read_to_an_end() -> None:
    error = BrokenError("loops")
    error.__context__ = KeyError("inner")
    assert error.__context__ is not None
    error.__context__.__context__ = error
    assert start(lifecycle()).failed(error) == "connection error: BrokenError"


class FakeSslError(OSError):
    """What the reason table reads of an ``ssl.SSLError``: ``library`` and ``reason``."""

    library = "SSL"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def stls_handshake(life: SessionLifecycle) -> SessionRun:
    """A session whose client sent STLS: the driver is waiting for the handshake."""
    run = start(life)
    instruction = run.driver.step()
    while not isinstance(instruction, StartTls):
        value = b"STLS\r\n" if instruction is READ else None
        instruction = run.driver.step(value)
    return run


TLS_FAILURES = [
    (
        FakeSslError("TLSV1_ALERT_UNKNOWN_CA"),
        "TLS handshake failed: the client does not trust the certificate's issuer "
        "(TLSV1_ALERT_UNKNOWN_CA)",
    ),
    (
        FakeSslError("SSLV3_ALERT_BAD_CERTIFICATE"),
        "TLS handshake failed: the client rejected the certificate (SSLV3_ALERT_BAD_CERTIFICATE)",
    ),
    (FakeSslError("SOMETHING_NEW"), "TLS handshake failed: SOMETHING_NEW"),
    (
        ConnectionResetError(),
        "TLS handshake failed: the client closed the connection, perhaps rejecting the certificate",
    ),
    (
        wrapped(BrokenError(), FakeSslError("UNEXPECTED_EOF_WHILE_READING")),
        "TLS handshake failed: the client closed the connection, perhaps rejecting the "
        "certificate (UNEXPECTED_EOF_WHILE_READING)",
    ),
    (BrokenError(), "TLS handshake failed: BrokenError"),
]


@pytest.mark.parametrize(("exc", "reason"), TLS_FAILURES)
def test_a_failed_stls_handshake_says_why(exc: BaseException, reason: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    run = stls_handshake(lifecycle(starttls_context=context, allow_plaintext=True))
    assert run.driver.in_tls_handshake
    assert run.failed(exc) == reason


@pytest.mark.parametrize(("exc", "reason"), TLS_FAILURES)
def test_a_failed_implicit_tls_handshake_says_why(exc: BaseException, reason: str) -> None:
    run = start(lifecycle(ssl_context=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)))
    assert run.driver.in_tls_handshake  # before the first step: the binding handshakes first
    assert run.failed(exc) == reason


def test_after_the_handshake_a_tls_error_is_a_connection_error() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    run = stls_handshake(lifecycle(starttls_context=context, allow_plaintext=True))
    assert run.driver.step() is READ  # handshake done: the session reads again
    assert not run.driver.in_tls_handshake
    assert run.failed(FakeSslError("DECRYPTION_FAILED")) == "connection error: FakeSslError"
    implicit = start(lifecycle(ssl_context=context))
    assert implicit.driver.step() is not None and not implicit.driver.in_tls_handshake
    plain = start(lifecycle())
    assert not plain.driver.in_tls_handshake


def test_shut_down_is_the_cancellations_reason() -> None:
    run = start(lifecycle())
    assert run.shut_down() == "server shutdown"
    assert run.reason == "server shutdown"


# --- the log line's peer ------------------------------------------------------------------


PEERS = [
    (("192.0.2.7", 110), "rip=192.0.2.7 rport=110"),
    (("2001:db8::1", 110, 0, 0), "rip=2001:db8::1 rport=110"),
    (("::ffff:192.0.2.7", 110, 0, 0), "rip=192.0.2.7 rport=110"),  # from a dual-stack socket
    (("::ffff:c000:207", 110, 0, 0), "rip=::ffff:c000:207 rport=110"),  # not dotted: as it is
    ("/run/pop3.sock", "rip=/run/pop3.sock rport=?"),  # an AF_UNIX peer: its path, not "/"
    ("", "rip=? rport=?"),
    (None, "rip=? rport=?"),
]


@pytest.mark.parametrize(("peer", "where"), PEERS)
def test_the_end_line_and_the_proxy_line_name_the_peer_alike(
    peer: object, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    life = lifecycle()
    run = start(life, peer)
    with logged(caplog) as records:
        run.end()
        life.proxy_failed(peer, BrokenError("reset"), local=("10.0.0.1", 110))
    assert lines(records) == [
        f"session ended: {where} lip=? lport=? tls=no user=<> failed=0 retr=0/0 top=0"
        " del=0/0 in=0 out=0 duration=0.250 reason=closed",
        f"session ended: {where} lip=10.0.0.1 lport=110 tls=no"
        " reason=no valid PROXY header: BrokenError('reset')",
    ]


# --- a bad PROXY header -------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ProxyHeaderError("not a PROXY header", reason="proxy-signature"),
        SlowError(),
        BrokenError(),
        ConnectionResetError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_bad_or_broken_proxy_header_is_logged_as_such(
    exc: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    with logged(caplog) as records:
        reason = lifecycle().proxy_failed(("127.0.0.1", 1), exc)
    assert reason == f"no valid PROXY header: {exc!r}"
    assert lines(records) == [
        f"session ended: rip=127.0.0.1 rport=1 lip=? lport=? tls=no reason={reason}"
    ]


def test_a_bug_while_reading_the_proxy_header_is_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with logged(caplog) as records:
        reason = lifecycle().proxy_failed(("127.0.0.1", 1), ValueError("bug"))
    assert reason == "internal error: ValueError"
    assert lines(records) == [
        "session failed",
        "session ended: rip=127.0.0.1 rport=1 lip=? lport=? tls=no"
        " reason=internal error: ValueError",
    ]


# --- counting and releasing ---------------------------------------------------------------


def test_the_address_is_counted_from_start_to_end_under_the_lock() -> None:
    lock = CountingLock()
    life = lifecycle(lock=lock, max_sessions_per_address=1)
    first = start(life, ("192.0.2.7", 1))
    second = start(life, ("192.0.2.7", 2))
    other = start(life, ("192.0.2.8", 1))
    assert len(life.addresses) == 2
    assert drive(first).startswith(b"+OK")
    assert drive(second).startswith(b"-ERR [SYS/TEMP] too many sessions from your address")
    assert drive(other).startswith(b"+OK")
    for run in (first, second, other):
        run.end()
    assert len(life.addresses) == 0
    assert lock.entered == 6  # three counted, three counted off
    assert start(life, ("192.0.2.7", 3)).driver.step() == Write(b"+OK POP3 server ready\r\n")


def test_a_start_that_fails_counts_nothing() -> None:
    life = lifecycle(apop=True)

    def no_randomness(size: int) -> bytes:
        raise OSError("no entropy")

    with pytest.raises(OSError, match="no entropy"):
        life.start(("192.0.2.7", 1), sessions=1, hostname="h", random_bytes=no_randomness, clock=1)
    assert len(life.addresses) == 0


def test_the_start_arguments_reach_the_session() -> None:
    """The binding's host name, random bytes and clock make the APOP timestamp."""
    life = lifecycle(apop=True)
    run = life.start(
        ("10.0.0.1", 1), sessions=1, hostname="pop.example", random_bytes=bytes, clock=42
    )
    greeting = drive(run)
    assert greeting == b"+OK POP3 server ready <0000000000000000.42@pop.example>\r\n"
    # Not loopback: no password login without TLS.
    run = start(life, ("10.0.0.1", 2))
    assert b"-ERR" in drive(run, b"USER alice\r\n")
    assert b"+OK" in drive(start(life, ("::ffff:127.0.0.1", 3, 0, 0)), b"USER alice\r\n")


def test_over_the_session_cap_is_refused() -> None:
    life = lifecycle(max_sessions=1)
    run = life.start(("127.0.0.1", 1), sessions=2, hostname="h", random_bytes=bytes, clock=1)
    assert drive(run).startswith(b"-ERR [SYS/TEMP] too many sessions")


def test_end_releases_the_maildrop_and_commits_nothing() -> None:
    backend = FakeBackend()
    run = start(lifecycle(backend))
    # Logged in, DELE sent, then the connection fails: no QUIT, so no UPDATE state.
    written = drive(run, b"USER alice\r\n", b"PASS secret\r\n", b"DELE 1\r\n", close=False)
    assert written.count(b"+OK") == 4
    assert (backend.opened, backend.closed) == (1, 0)
    run.failed(ConnectionResetError())
    run.end()
    assert run.driver.maildrop is None
    assert (backend.opened, backend.closed) == (1, 1)
    assert backend.committed == []


def test_a_maildrop_that_fails_to_close_still_counts_the_session_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing ``close()`` must not leave the address counted: it would be refused for good."""
    backend = FakeBackend()
    life = lifecycle(backend, max_sessions_per_address=1)
    run = start(life, ("127.0.0.7", 1))
    drive(run, b"USER alice\r\n", b"PASS secret\r\n", close=False)
    assert run.driver.maildrop is not None

    def broken_close() -> None:
        raise OSError("close failed")

    run.driver.maildrop.close = broken_close  # type: ignore[method-assign]
    run.failed(ConnectionResetError())
    with caplog.at_level(logging.INFO, LOGGER), pytest.raises(OSError, match="close failed"):
        run.end()
    assert len(life.addresses) == 0
    assert "session ended: rip=127.0.0.7 rport=1 " in caplog.text
    assert "reason=client-closed (connection reset)" in caplog.text
    assert drive(start(life, ("127.0.0.7", 2))).startswith(b"+OK")


# --- the TLS handshake's limit ------------------------------------------------------------


def test_the_handshake_gets_at_most_handshake_timeout() -> None:
    assert HANDSHAKE_TIMEOUT == 60.0
    run = start(lifecycle(login_timeout=600, autologout=600))
    assert run.handshake_timeout(0.0) == HANDSHAKE_TIMEOUT


def test_the_handshake_before_login_gets_what_is_left_of_the_login_time() -> None:
    run = start(lifecycle(login_timeout=5, autologout=600))
    assert run.handshake_timeout(100.0) == 5.0  # the login clock starts here
    assert run.handshake_timeout(103.0) == 2.0
    assert run.handshake_timeout(106.0) == 0.0


def test_the_handshake_after_login_gets_the_autologout_if_shorter() -> None:
    """STLS is refused after login (RFC 2595 section 4); the limit holds all the same."""
    run = start(lifecycle(login_timeout=600, autologout=30))
    drive(run, b"USER alice\r\nPASS secret\r\n", close=False)
    assert run.driver.session.state is State.TRANSACTION
    assert run.handshake_timeout(0.0) == 30.0


# --- the log lines: logins, the end's counts, TLS, the proxy, the trace (docs/logging.md) ---


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def logged_in_lines(records: list[logging.LogRecord]) -> list[tuple[str, dict[str, str]]]:
    return [log_fields(r.getMessage()) for r in records if r.levelno == logging.INFO]


@pytest.mark.parametrize(
    ("commands", "method", "user"),
    [
        (["USER alice", "PASS {password}"], "USER", "alice"),
        (["AUTH PLAIN {plain}"], "PLAIN", "alice"),
        (["AUTH LOGIN", "{b64user}", "{b64password}"], "LOGIN", "alice"),
        (["APOP alice {digest}"], "APOP", "alice"),
        (["AUTH XOAUTH2 {xoauth2}"], "XOAUTH2", "alice"),
    ],
    ids=["USER", "PLAIN", "LOGIN", "APOP", "XOAUTH2"],
)
@pytest.mark.parametrize("right", [True, False], ids=["right", "wrong"])
def test_each_login_method_logs_its_attempts(
    commands: list[str],
    method: str,
    user: str,
    right: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if method == "XOAUTH2" and not right:
        commands = [*commands, ""]  # the client's empty answer to the error challenge
    password = "secret" if right else "wrong"
    token = "tok-1" if right else "tok-x"
    life = lifecycle(apop=True, mechanisms=("PLAIN", "LOGIN", "XOAUTH2"))
    run = start(life)
    instruction = run.driver.step()  # the greeting; drive() goes on from there
    assert isinstance(instruction, Write)
    greeting = instruction.data.decode()
    timestamp = greeting[greeting.index("<") : greeting.index(">") + 1]
    values = {
        "password": password,
        "plain": plain("alice", password).decode(),
        "b64user": base64.b64encode(b"alice").decode(),
        "b64password": base64.b64encode(password.encode()).decode(),
        "digest": hashlib.md5(f"{timestamp}{password}".encode()).hexdigest(),
        "xoauth2": base64.b64encode(f"user=alice\1auth=Bearer {token}\1\1".encode()).decode(),
    }
    with logged(caplog) as records:
        drive(run, *(f"{c.format(**values)}\r\n".encode() for c in commands), b"QUIT\r\n")
        run.end()
    (event, fields), (end, summary) = logged_in_lines(records)
    assert (event, fields["method"], fields["user"]) == (
        "login" if right else "auth failed",
        method,
        f"<{user}>",
    )
    assert list(fields)[:5] == ["rip", "rport", "lip", "lport", "tls"]  # rip first, always
    if right:
        assert "attempts" not in fields
        assert (summary["user"], summary["failed"]) == ("<alice>", "0")
    else:
        assert fields["attempts"] == "1"
        assert (summary["user"], summary["failed"]) == ("<>", "1")
    assert end == "session ended"
    assert summary["reason"] == "quit"
    secret_forms = [v for k, v in values.items() if k != "b64user"]
    for record in records:
        for form in secret_forms:
            assert form not in record.getMessage()


def test_failed_attempts_are_counted_and_the_last_closes(caplog: pytest.LogCaptureFixture) -> None:
    run = start(lifecycle(max_failed_logins=3))
    with logged(caplog) as records:
        drive(run, *[b"USER alice\r\nPASS nope\r\n"] * 3)
        run.end()
    logged_lines = logged_in_lines(records)
    assert [(event, f.get("attempts")) for event, f in logged_lines] == [
        ("auth failed", "1"),
        ("auth failed", "2"),
        ("auth failed", "3"),
        ("session ended", None),
    ]
    assert logged_lines[-1][1]["reason"] == "too-many-failures"
    assert logged_lines[-1][1]["failed"] == "3"


def test_a_sasl_exchange_that_names_no_user_logs_an_empty_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = start(lifecycle())
    with logged(caplog) as records:
        drive(run, b"AUTH PLAIN\r\n", b"!!not base64!!\r\n", b"QUIT\r\n")
    event, fields = logged_in_lines(records)[0]
    assert (event, fields["method"], fields["user"]) == ("auth failed", "PLAIN", "<>")


@pytest.mark.parametrize(("knob", "error"), [("locked", "in-use"), ("open_fails", "unavailable")])
def test_right_credentials_and_no_maildrop_is_a_refused_login_not_a_failure(
    knob: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = start(lifecycle(FakeBackend(**{knob: True})))
    with logged(caplog) as records:
        drive(run, b"USER alice\r\n", b"PASS secret\r\n", b"QUIT\r\n")
        run.end()
    (event, fields), (_, summary) = logged_in_lines(records)
    assert event == "login refused"  # not "auth failed": fail2ban must not count it
    assert (fields["method"], fields["error"], fields["user"]) == ("USER", error, "<alice>")
    assert summary["failed"] == "0"


def test_the_end_line_counts_what_the_session_did(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    run = start(lifecycle(backend))
    received = [b"USER alice\r\n", b"PASS secret\r\n", b"RETR 1\r\n", b"RETR 2\r\n"]
    received += [b"TOP 3 0\r\n", b"DELE 1\r\n", b"DELE 3\r\n", b"QUIT\r\n"]
    with logged(caplog) as records:
        written = drive(run, *received)
        run.end()
    sizes = [m.size for m in run.driver.session.messages]
    _, summary = logged_in_lines(records)[-1]
    assert summary["retr"] == f"2/{sizes[0] + sizes[1]}"
    assert (summary["top"], summary["del"]) == ("1", "2/3")
    assert summary["in"] == str(sum(map(len, received)))
    assert summary["out"] == str(len(written))
    assert (summary["duration"], summary["reason"]) == ("0.250", "quit")


def test_deletions_that_fail_are_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    run = start(lifecycle(FakeBackend(commit_fails=(2,))))
    with logged(caplog) as records:
        drive(run, b"USER alice\r\nPASS secret\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n")
        run.end()
    assert logged_in_lines(records)[-1][1]["del"] == "1/3"


def test_without_a_clock_the_end_line_has_no_duration(caplog: pytest.LogCaptureFixture) -> None:
    life = SessionLifecycle(
        ServerOptions(),
        FakeBackend(),
        log=logging.getLogger(LOGGER),
        timeouts=(),
        connection_errors=(),
    )
    run = start(life)
    with logged(caplog) as records:
        run.end()
    assert "duration" not in log_fields(lines(records)[0])[1]


class FakeTls:
    """What ``tls_started`` reads of an ``SSLObject``: its version and cipher."""

    def __init__(self, version: str | None, cipher: tuple[str, str, int] | None) -> None:
        self._version, self._cipher = version, cipher

    def version(self) -> str | None:
        return self._version

    def cipher(self) -> tuple[str, str, int] | None:
        return self._cipher


def test_tls_shows_its_version_and_cipher_from_the_handshake_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    life = lifecycle()
    with logged(caplog, logging.DEBUG) as records:
        run = life.start(
            ("192.0.2.7", 5555),
            sessions=1,
            hostname="h",
            random_bytes=bytes,
            clock=1,
            local=("192.0.2.1", 995),
            proxy=("2001:db8::9", 40000, 0, 0),
        )
        run.tls_started(FakeTls("TLSv1.3", ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)))
        drive(run)
        run.end()
        start(life).tls_started(FakeTls(None, None))
    records = [r for r in records if r.name == LOGGER]  # not the trace
    where = "rip=192.0.2.7 rport=5555 lip=192.0.2.1 lport=995 proxy=[2001:db8::9]:40000"
    assert lines(records)[:3] == [
        f"session started: {where} tls=no",
        f"tls started: {where} tls=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384",
        f"session ended: {where} tls=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 user=<> failed=0"
        " retr=0/0 top=0 del=0/0 in=0 out=23 duration=0.250 reason=client-closed",
    ]
    assert [r.levelno for r in records[:3]] == [logging.DEBUG, logging.DEBUG, logging.INFO]
    assert lines(records)[-1] == f"tls started: {WHERE[: -len('tls=no')]}tls=? cipher=?"


@pytest.mark.parametrize(
    ("name", "shown_as"),
    [
        ("alice", "alice"),
        ("a b", "a b"),
        ("x>rip=6.6.6.6", "x\\x3erip=6.6.6.6"),
        ("back\\slash", "back\\\\slash"),
        ("\x1b[31mred\x7f", "\\x1b[31mred\\x7f"),
        ("line\nbreak\r", "line\\x0abreak\\x0d"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("bad\udcff", "bad\\udcff"),
        ("zwsp\U000e0001", "zwsp\\U000e0001"),
        ("é中", "é中"),
        ("a" * 100, "a" * 64 + "..."),
        ("\x00" * 100, "\\x00" * 64 + "..."),
    ],
)
def test_a_user_name_is_shown_escaped_and_bounded(name: str, shown_as: str) -> None:
    assert shown(name) == shown_as
    assert shown(name).isprintable()


def test_an_injected_user_name_cannot_move_the_address(caplog: pytest.LogCaptureFixture) -> None:
    """The client's text comes after ``rip=``, bracketed, its ``>`` and line breaks escaped."""
    run = start(lifecycle())
    name = b"x> method=USER\nauth failed: rip=6.6.6.6 rport=1 "
    with logged(caplog) as records:
        drive(run, b"AUTH PLAIN " + base64.b64encode(b"\0" + name + b"\0pw") + b"\r\n")
    message = lines(records)[0]
    assert "\n" not in message
    event, fields = log_fields(message)
    assert (event, fields["rip"], fields["method"]) == ("auth failed", "127.0.0.1", "PLAIN")
    assert fields["user"] == "<x\\x3e method=USER\\x0aauth failed: rip=6.6.6.6 rport=1 >"


def test_the_trace_shows_commands_and_status_lines_never_secrets_or_bodies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=f"{LOGGER}.trace")
    life = lifecycle(apop=True)
    run = start(life)
    with logged(caplog, logging.DEBUG) as records:
        written = drive(
            run,
            b"AUTH PLAIN " + plain("alice", "wrong-1") + b"\r\n",
            b"AUTH LOGIN\r\n",
            base64.b64encode(b"alice") + b"\r\n",
            b"*\r\n",
            b"APOP alice 0123456789abcdef0123456789abcdef\r\n",
            b"PASS wrong-2 out of turn\r\n",
            b"HELO\x1b[2J\r\n",
            b"AUTH\r\n",
            b"USER alice\r\n",
            b"PASS secret\r\n",
            b"RETR 1\r\n",
            b"LIST\r\n",
            b"QUIT\r\n",
        )
    trace = [r.getMessage() for r in records if r.name == f"{LOGGER}.trace"]
    greeting = written.split(b"\r\n")[0].decode()
    total = sum(m.size for m in run.driver.session.messages)
    assert trace == [
        f"rip=127.0.0.1 rport=40000 S: {greeting}",
        "rip=127.0.0.1 rport=40000 C: AUTH PLAIN ***",
        "rip=127.0.0.1 rport=40000 S: -ERR [AUTH] authentication failed",
        "rip=127.0.0.1 rport=40000 C: AUTH LOGIN",
        "rip=127.0.0.1 rport=40000 S: + ***",
        "rip=127.0.0.1 rport=40000 C: ***",
        "rip=127.0.0.1 rport=40000 S: + ***",
        "rip=127.0.0.1 rport=40000 C: *",
        "rip=127.0.0.1 rport=40000 S: -ERR authentication cancelled",
        "rip=127.0.0.1 rport=40000 C: APOP alice ***",
        "rip=127.0.0.1 rport=40000 S: -ERR [AUTH] authentication failed",
        "rip=127.0.0.1 rport=40000 C: PASS (wrong state)",
        "rip=127.0.0.1 rport=40000 S: -ERR command not valid in this state: PASS",
        "rip=127.0.0.1 rport=40000 C: HELO\\x1b[2J (unknown)",
        "rip=127.0.0.1 rport=40000 S: -ERR unknown command",
        "rip=127.0.0.1 rport=40000 C: AUTH",
        "rip=127.0.0.1 rport=40000 S: +OK SASL mechanisms follow",
        "rip=127.0.0.1 rport=40000 C: USER alice",
        "rip=127.0.0.1 rport=40000 S: +OK send PASS",
        "rip=127.0.0.1 rport=40000 C: PASS ***",
        f"rip=127.0.0.1 rport=40000 S: +OK maildrop has 3 messages ({total} octets)",
        "rip=127.0.0.1 rport=40000 C: RETR 1",
        f"rip=127.0.0.1 rport=40000 S: +OK {run.driver.session.messages[0].size} octets",
        "rip=127.0.0.1 rport=40000 C: LIST",
        f"rip=127.0.0.1 rport=40000 S: +OK 3 messages ({total} octets)",
        "rip=127.0.0.1 rport=40000 C: QUIT",
        "rip=127.0.0.1 rport=40000 S: +OK POP3 server signing off",
    ]
    assert all(r.levelno == logging.DEBUG for r in records if r.name == f"{LOGGER}.trace")
    text = "\n".join(trace)
    for secret in ("wrong-1", "wrong-2", "secret", "0123456789abcdef", "first"):
        assert secret not in text
    assert plain("alice", "wrong-1").decode() not in text
    assert base64.b64encode(b"alice").decode() not in text


def test_a_protocol_error_is_traced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=f"{LOGGER}.trace")
    run = start(lifecycle())
    with logged(caplog, logging.DEBUG) as records:
        drive(run, b"X" * 70000)
    trace = [r.getMessage() for r in records if r.name == f"{LOGGER}.trace"]
    assert trace[-1].startswith("rip=127.0.0.1 rport=40000 S: -ERR ")


def test_no_trace_unless_its_logger_is_enabled_at_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=f"{LOGGER}.trace")
    run = start(lifecycle())
    caplog.set_level(logging.DEBUG, logger=f"{LOGGER}.trace")  # too late for this session
    with logged(caplog, logging.DEBUG) as records:
        drive(run, b"NOOP\r\n")
    assert [r for r in records if r.name == f"{LOGGER}.trace"] == []


def test_tls_started_without_debug_logs_only_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    run = start(lifecycle())
    with logged(caplog) as records:
        run.tls_started(FakeTls("TLSv1.2", ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2", 128)))
        run.end()
    assert len(records) == 1
    fields = log_fields(lines(records)[0])[1]
    assert (fields["tls"], fields["cipher"]) == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")


def test_at_debug_each_command_is_logged_with_its_status(caplog: pytest.LogCaptureFixture) -> None:
    """``pop3 serve -v``: one ``command:`` line a command, secrets hidden as in the trace."""
    caplog.set_level(logging.INFO, logger=f"{LOGGER}.trace")  # no trace: that is -vv
    with logged(caplog, logging.DEBUG) as records:
        run = start(lifecycle())
        drive(
            run,
            b"CAPA\r\n",
            b"AUTH PLAIN\r\n",
            plain("alice", "nope") + b"\r\n",
            b"USER alice\r\nPASS secret\r\n",
            b"RETR 1\r\n",
            b"X>Y\r\n",
            b"QUIT\r\n",
        )
    assert [r.name for r in records if r.name != LOGGER] == []
    commands = [m for m in lines(records) if m.startswith("command: ")]
    assert commands == [
        f"command: rip=127.0.0.1 rport=40000 status={status} cmd=<{command}>"
        for status, command in [
            ("+OK", "CAPA"),
            ("-ERR", "AUTH PLAIN"),
            ("+OK", "USER alice"),
            ("+OK", "PASS ***"),
            ("+OK", "RETR 1"),
            ("-ERR", "X\\x3eY (unknown)"),
            ("+OK", "QUIT"),
        ]
    ]
    assert all(r.levelno == logging.DEBUG for r in records if r.getMessage() in commands)
    assert lines(records)[0] == f"session started: {WHERE}"


def test_each_login_and_end_record_carries_its_event(caplog: pytest.LogCaptureFixture) -> None:
    """``record.pop3_event``: the ``LoginAttempt`` or ``SessionEnd`` the line shows."""
    run = start(lifecycle())
    with logged(caplog) as records:
        received = [b"USER alice\r\nPASS nope\r\n", b"USER alice\r\nPASS secret\r\n"]
        received.append(b"RETR 2\r\nDELE 2\r\nQUIT\r\n")
        drive(run, *received)
        run.end()
    events = [getattr(r, "pop3_event", None) for r in records]
    assert events[:2] == [
        LoginAttempt("USER", "alice", "failed", 1),
        LoginAttempt("USER", "alice", "ok", 1),
    ]
    end = events[2]
    assert isinstance(end, SessionEnd)
    size = run.driver.session.messages[1].size
    assert (end.user, end.failed, end.retrieved, end.retrieved_octets) == ("alice", 1, 1, size)
    assert (end.topped, end.removed, end.messages, end.reason) == (0, 1, 3, "quit")
    assert (end.octets_in, end.duration) == (sum(map(len, received)), 0.25)
    assert f" retr=1/{size} " in lines(records)[2]
