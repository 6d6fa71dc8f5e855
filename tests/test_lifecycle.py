"""The one per-session lifecycle the three servers share, without sockets or clocks.

How a session ended becomes its reason through one table (each binding registers its
own exception classes); the log line has one form, the PROXY failure's included; the
address count goes up at ``start`` and down at ``end``; the TLS handshake gets at most
``HANDSHAKE_TIMEOUT`` seconds, less when the login time left is shorter.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from helpers import FakeBackend
from pop3_sansio import State
from pop3_sansio.proxy import ProxyHeaderError
from pop3_sansio.server import (
    HANDSHAKE_TIMEOUT,
    READ,
    BackendProtocol,
    Call,
    HandshakeTimeoutError,
    ServerOptions,
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
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.set_level(logging.INFO, logger=LOGGER)
    records: list[logging.LogRecord] = []
    yield records
    records.extend(r for r in caplog.records if r.name == LOGGER)


def lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]


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
    assert lines(records) == [f"session from 127.0.0.1 ended: {reason} (user alice)"]
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
    assert lines(records) == [
        "session failed",
        "session from 127.0.0.1 ended: internal error: KeyError (user -)",
    ]
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
    assert lines(records) == ["session from 127.0.0.1 ended: quit (user alice)"]


def test_end_without_a_reason_takes_the_drivers(caplog: pytest.LogCaptureFixture) -> None:
    run = start(lifecycle())
    drive(run)  # greeted, then the client closed
    with logged(caplog) as records:
        run.end()
    assert lines(records) == ["session from 127.0.0.1 ended: client-closed (user -)"]


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
    (("192.0.2.7", 110), "192.0.2.7"),
    (("2001:db8::1", 110, 0, 0), "2001:db8::1"),
    ("/run/pop3.sock", "/run/pop3.sock"),  # an AF_UNIX peer: its path, not "/"
    ("", "?"),
    (None, "?"),
]


@pytest.mark.parametrize(("peer", "host"), PEERS)
def test_the_end_line_and_the_proxy_line_name_the_peer_alike(
    peer: object, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    life = lifecycle()
    run = start(life, peer)
    with logged(caplog) as records:
        run.end()
        life.proxy_failed(peer, BrokenError("reset"))
    assert lines(records) == [
        f"session from {host} ended: closed (user -)",
        f"session from {host} ended: no valid PROXY header: BrokenError('reset') (user -)",
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
    assert lines(records) == [f"session from 127.0.0.1 ended: {reason} (user -)"]


def test_a_bug_while_reading_the_proxy_header_is_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with logged(caplog) as records:
        reason = lifecycle().proxy_failed(("127.0.0.1", 1), ValueError("bug"))
    assert reason == "internal error: ValueError"
    assert lines(records) == [
        "session failed",
        "session from 127.0.0.1 ended: internal error: ValueError (user -)",
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
    assert "session from 127.0.0.7 ended: client-closed (connection reset)" in caplog.text
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
