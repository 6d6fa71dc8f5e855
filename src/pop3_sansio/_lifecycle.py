"""How every server binding starts and ends a session, written once.

Each binding reads the PROXY header, starts TLS, drives the ``SessionDriver``
and closes the connection (that is its I/O); around that, it calls a
``SessionLifecycle`` at the same points: ``proxy_failed`` when the header is
bad, ``start`` for the driver, then ``ended``/``failed``/``shut_down`` for
the reason and ``end`` for the session's last log line; ``tls_started``
after each TLS handshake. The binding registers once the exception classes
its I/O raises (timeouts, connection errors, cancellation), so the reasons
are the same words in every binding. Every log line of a session is made
here (its login attempts, its end, its protocol trace), in the formats of
``_serverlog`` (docs/logging.md).

Pure: the host name, random bytes and clocks come from the binding, the
logger too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ._net import is_loopback_address
from ._proxy import ProxyHeaderError
from ._server_driver import SessionDriver
from ._server_options import AddressCounter, ServerOptions
from ._serverlog import (
    LoginAttempt,
    SessionEnd,
    TlsInfo,
    end_line,
    endpoint,
    login_line,
    reason_line,
    tls_info,
)
from ._storage import BackendProtocol

if TYPE_CHECKING:  # pragma: no cover
    from logging import Logger

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "SHUTDOWN",
    "HandshakeTimeoutError",
    "SessionLifecycle",
    "SessionLog",
    "SessionRun",
]

HANDSHAKE_TIMEOUT = 60.0
"""Seconds a TLS handshake may take at most (asyncio's default ``ssl_handshake_timeout``)."""

SHUTDOWN = "server shutdown"
"""The reason logged for a session the server dropped because it is shutting down."""

_DEBUG = 10  # logging.DEBUG, without importing logging


class HandshakeTimeoutError(TimeoutError):
    """A TLS handshake (implicit TLS or STLS) did not finish in time; the binding raises it."""


# A client that rejects the certificate often closes without a TLS alert
# (Python's asyncio, for one): say that it may be why.
_CLOSED_IN_HANDSHAKE = "the client closed the connection, perhaps rejecting the certificate"

# OpenSSL's reasons for the failures a server operator meets, in words.
_TLS_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust the certificate's issuer",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client rejected the certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the client rejected the certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the client says the certificate has expired",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common with the client",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the client",
    "NO_SHARED_CIPHER": "no cipher in common with the client",
    "WRONG_VERSION_NUMBER": "the client did not speak TLS",
    "HTTP_REQUEST": "the client did not speak TLS",
    "UNEXPECTED_EOF_WHILE_READING": _CLOSED_IN_HANDSHAKE,
}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (a binding's error around the OS's or ``ssl``'s)."""
    current: BaseException | None = exc
    for _ in range(8):  # a chain can loop back on itself
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__


def _tls_failure(exc: BaseException) -> str:
    """Why a TLS handshake failed, in words: from an ``ssl.SSLError`` in the chain if any."""
    for cause in _causes(exc):
        code = getattr(cause, "reason", None)
        if isinstance(code, str) and hasattr(cause, "library"):  # an ssl.SSLError
            words = _TLS_REASONS.get(code)
            return f"{words} ({code})" if words else code
    if any(isinstance(cause, ConnectionError) for cause in _causes(exc)):
        return _CLOSED_IN_HANDSHAKE
    return type(exc).__name__


def _connection_failure(exc: BaseException) -> str:
    """The reason for a connection error: the client went away, or what failed."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectionResetError):
            return "client-closed (connection reset)"
        if isinstance(cause, BrokenPipeError):
            return "client-closed (while the server was sending)"
        if isinstance(cause, ConnectionError) and not isinstance(cause, ConnectionRefusedError):
            return f"client-closed (connection lost: {type(cause).__name__})"
    return f"connection error: {type(exc).__name__}"


def _internal(log: Logger, exc: BaseException) -> str:
    # A backend failing in a way it should not (or a bug): the binding ends
    # this session, says so with the traceback, and serves the others.
    log.error("session failed", exc_info=exc)
    return f"internal error: {type(exc).__name__}"


class SessionLifecycle:
    """One server's sessions from start to log line; one per server, shared by its sessions.

    ``timeouts``, ``connection_errors`` and ``shutdown`` are the exception
    classes the binding's I/O raises when a wait runs out, when the
    connection fails, and when the server cancels a session; checked in that
    order (a ``TimeoutError`` is an ``OSError``). ``lock``, if given, is held
    while the address counter is changed (a threaded server's lock).
    ``monotonic`` is a clock in seconds for the sessions' durations (without
    one, the end line has no ``duration``). The protocol trace goes to
    ``log``'s child ``trace`` (``pop3.server.trace`` for the bindings), at
    DEBUG, for sessions started while it is enabled.
    """

    def __init__(
        self,
        options: ServerOptions,
        backend: BackendProtocol,
        *,
        log: Logger,
        timeouts: tuple[type[BaseException], ...],
        connection_errors: tuple[type[BaseException], ...],
        shutdown: tuple[type[BaseException], ...] = (),
        lock: AbstractContextManager[Any] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.options = options
        self.backend = backend
        self.log = log
        self.trace_log = log.getChild("trace")
        self.monotonic = monotonic
        self.timeouts = timeouts
        self.connection_errors = connection_errors
        self.shutdown = shutdown
        self.addresses = AddressCounter()
        self._lock = lock

    def proxy_failed(self, peer: object, exc: BaseException, *, local: object = None) -> str:
        """The PROXY header could not be read: log the session's end, return the reason.

        The connection is closed without a greeting, so there is no driver
        and no user: the line has the addresses and the reason only. A bad
        header or a connection that fails while sending it is ``no valid
        PROXY header: ...``; anything else is an internal error. ``peer`` is
        the connection's (the proxy's) address, ``local`` the server's end.
        """
        if isinstance(exc, (ProxyHeaderError, *self.timeouts, *self.connection_errors)):
            reason = f"no valid PROXY header: {exc!r}"
        else:
            reason = _internal(self.log, exc)
        where = endpoint(peer, local, None, None)
        self.log.info("session ended: %s", reason_line(where, reason))
        return reason

    def start(
        self,
        peer: object,
        *,
        sessions: int,
        hostname: str,
        random_bytes: Callable[[int], bytes],
        clock: int,
        local: object = None,
        proxy: object = None,
    ) -> SessionRun:
        """Count the session for its address and start it (``ServerOptions.start_session``).

        ``peer`` is the client's address (from the PROXY header if any);
        ``sessions`` counts the server's sessions, this one included.
        ``local`` is the server's end of the connection and ``proxy`` the
        proxy's address when a PROXY header named the client (for the log).
        Call ``end()`` on the result however the session ends.
        """
        log = SessionLog(self, peer, local, proxy)
        if self._lock is None:
            same_address = self.addresses.add(peer)
        else:
            with self._lock:
                same_address = self.addresses.add(peer)
        try:
            driver = self.options.start_session(
                self.backend,
                peer_is_loopback=is_loopback_address(peer),
                sessions=sessions,
                same_address=same_address,
                hostname=hostname,
                random_bytes=random_bytes,
                clock=clock,
                on_login=log.login,
                on_trace=log.trace if log.hooked else None,
            )
        except BaseException:
            self._uncount(peer)
            raise
        return SessionRun(self, peer, driver, log)

    def _uncount(self, peer: object) -> None:
        if self._lock is None:
            self.addresses.remove(peer)
        else:
            with self._lock:
                self.addresses.remove(peer)


class SessionLog:
    """Where one session is, for its log lines: addresses, TLS, and when it started.

    Its ``login`` and ``trace`` are the session's ``on_login`` and
    ``on_trace`` hooks. At DEBUG, lines say that the session started and
    (``command:``) what each command was answered; the protocol trace is
    ``trace_log``'s, at DEBUG too. Which of them a session writes is decided
    when it starts (``tracing``, ``commands``).
    """

    __slots__ = (
        "command",
        "commands",
        "lifecycle",
        "local",
        "peer",
        "proxy",
        "started",
        "tls",
        "tracing",
    )

    def __init__(
        self, lifecycle: SessionLifecycle, peer: object, local: object, proxy: object
    ) -> None:
        self.lifecycle = lifecycle
        self.peer = peer
        self.local = local
        # A PROXY header that names no client (LOCAL, UNKNOWN) leaves the
        # connection's own peer as the client: then there is no proxy to show.
        self.proxy = None if proxy is peer else proxy
        self.tls: TlsInfo | None = None
        monotonic = lifecycle.monotonic
        self.started = None if monotonic is None else monotonic()
        self.tracing = lifecycle.trace_log.isEnabledFor(_DEBUG)
        self.commands = lifecycle.log.isEnabledFor(_DEBUG)
        self.command: str | None = None  # the command whose status line comes next
        if self.commands:
            lifecycle.log.debug("session started: %s", self.where())

    @property
    def hooked(self) -> bool:
        """Whether the session's ``on_trace`` hook is wanted (it costs time)."""
        return self.tracing or self.commands

    def where(self) -> str:
        """``rip=... rport=... lip=... lport=... [proxy=...] tls=...`` (``endpoint``)."""
        return endpoint(self.peer, self.local, self.proxy, self.tls)

    def login(self, attempt: LoginAttempt) -> None:
        """Log a login attempt: ``login``, ``auth failed`` or ``login refused``.

        The record carries ``attempt`` as ``pop3_event`` (for metrics, say).
        """
        line = login_line(self.where(), attempt)
        self.lifecycle.log.info("%s", line, extra={"pop3_event": attempt})

    def trace(self, line: str) -> None:
        """The session's trace line (``C: ...``, ``S: ...``): log it, pair commands with status.

        The session answers its commands one after the other, so the next
        status line after a command is its answer; SASL's lines in between
        (``C: ***``, ``C: *``, ``S: + ***``) belong to the AUTH command.
        """
        lifecycle = self.lifecycle
        rip, rport = self.where().split(" ", 2)[:2]
        if self.tracing:
            lifecycle.trace_log.debug("%s %s %s", rip, rport, line)
        if not self.commands:
            return
        if line.startswith("C: "):
            if line not in ("C: ***", "C: *"):
                self.command = line[3:]
        elif self.command is not None and line.startswith(("S: +OK", "S: -ERR")):
            status = "+OK" if line.startswith("S: +OK") else "-ERR"
            command = self.command.replace(">", "\\x3e")  # as shown() brackets it
            self.command = None
            lifecycle.log.debug("command: %s %s status=%s cmd=<%s>", rip, rport, status, command)


class SessionRun:
    """One session of a ``SessionLifecycle``: its driver, its peer and how it ended."""

    __slots__ = ("driver", "lifecycle", "log", "peer", "reason")

    def __init__(
        self,
        lifecycle: SessionLifecycle,
        peer: object,
        driver: SessionDriver,
        log: SessionLog | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.peer = peer
        self.driver = driver
        self.log = log or SessionLog(lifecycle, peer, None, None)
        self.reason: str | None = None
        """Why the session ended, once known; ``end()`` logs it."""

    def tls_started(self, tls: Any) -> None:
        """A TLS handshake finished (implicit TLS or STLS) on ``tls``, an ``ssl.SSLObject``
        or ``SSLSocket`` (anything with ``version()`` and ``cipher()``): the
        lines from now on show its version and cipher."""
        log = self.log
        log.tls = tls_info(tls)
        if self.lifecycle.log.isEnabledFor(_DEBUG):
            self.lifecycle.log.debug("tls started: %s", log.where())

    def handshake_timeout(self, now: float) -> float:
        """Seconds the TLS handshake starting ``now`` may take.

        At most ``HANDSHAKE_TIMEOUT``; less when the driver's ``wait_timeout``
        is (before login, the handshake is part of the time to log in).
        """
        return min(HANDSHAKE_TIMEOUT, self.driver.wait_timeout(now))

    def ended(self) -> str:
        """The driver finished: the reason is its ``close_reason`` (``quit``...)."""
        self.reason = self.driver.close_reason or "closed"
        return self.reason

    def shut_down(self) -> str:
        """The server dropped the session because it is shutting down."""
        self.reason = SHUTDOWN
        return SHUTDOWN

    def failed(self, exc: BaseException) -> str:
        """The session ended with ``exc``: the reason for it, from the one table.

        A handshake timeout, a timeout (``autologout`` or ``login-timeout``,
        RFC 1939 section 3: nothing is deleted), a cancellation (the server
        shuts down), a connection error (in a TLS handshake: ``TLS handshake
        failed: WHY``; a client gone: ``client-closed (...)``), else an
        internal error, logged with its traceback. The binding re-raises what
        it must (a cancellation).
        """
        lifecycle = self.lifecycle
        if isinstance(exc, HandshakeTimeoutError):
            reason = "TLS handshake timed out"
        elif isinstance(exc, lifecycle.timeouts):
            reason = self.driver.timed_out()
        elif isinstance(exc, lifecycle.shutdown):
            reason = SHUTDOWN
        elif isinstance(exc, lifecycle.connection_errors):
            if self.driver.in_tls_handshake:
                reason = f"TLS handshake failed: {_tls_failure(exc)}"
            else:
                reason = _connection_failure(exc)
        else:
            reason = _internal(lifecycle.log, exc)
        self.reason = reason
        return reason

    def end(self) -> None:
        """Release the maildrop (nothing committed), count the session off, log its end.

        Call it once, however the session ended (in a ``finally``); without
        a reason given before, the reason is the driver's, as ``ended()``
        gives it. The binding closes the connection itself.
        """
        reason = self.reason or self.ended()
        lifecycle = self.lifecycle
        try:
            self.driver.release()
        finally:
            # Even if the maildrop's close() failed: an address never counted
            # off would be refused for good once it reached its limit.
            lifecycle._uncount(self.peer)
            summary = self.summary(reason)
            line = end_line(self.log.where(), summary)
            lifecycle.log.info("session ended: %s", line, extra={"pop3_event": summary})

    def summary(self, reason: str) -> SessionEnd:
        """What the session did so far, ending for ``reason``."""
        driver = self.driver
        session = driver.session
        started = self.log.started
        monotonic = self.lifecycle.monotonic
        return SessionEnd(
            user=session.username,
            failed=session.failed_logins,
            retrieved=session.retrieved,
            retrieved_octets=session.retrieved_octets,
            topped=session.topped,
            removed=session.removed,
            messages=len(session.messages),
            octets_in=driver.octets_in,
            octets_out=driver.octets_out,
            duration=None if started is None or monotonic is None else monotonic() - started,
            reason=reason,
        )
