"""What every server binding shares: the server's options and how a session starts.

Pure: the SSL contexts are only carried (typed, never imported at run time),
and randomness, the clock and the host name come from the binding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from ._apop import make_timestamp
from ._net import peer_host
from ._server_driver import SessionDriver
from ._server_session import ServerSession
from ._serverlog import LoginAttempt
from ._storage import BackendProtocol

if TYPE_CHECKING:  # pragma: no cover
    from ssl import SSLContext

__all__ = ["MAX_QUEUED_OUTPUT", "AddressCounter", "ServerKeywords", "ServerOptions"]

MAX_QUEUED_OUTPUT = 1 << 16
"""Octets of answers to pipelined commands queued before they are written (backpressure)."""


class AddressCounter:
    """How many sessions each client address has: what ``max_sessions_per_address`` limits.

    ``add(peer)`` counts one more session for the peer's host and returns its
    count, this one included; ``remove(peer)`` counts it off again. Not
    thread-safe: a threaded server calls it under its lock.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        """How many addresses have sessions."""
        return len(self._counts)

    def add(self, peer: object) -> int:
        host = peer_host(peer)
        count = self._counts[host] = self._counts.get(host, 0) + 1
        return count

    def remove(self, peer: object) -> None:
        host = peer_host(peer)
        count = self._counts.pop(host) - 1
        if count:
            self._counts[host] = count


@dataclass
class ServerOptions:
    """How a server runs its sessions; every binding's ``serve`` takes these keywords."""

    ssl_context: SSLContext | None = None
    """Implicit TLS (port 995, RFC 8314) when set."""
    starttls_context: SSLContext | None = None
    """Offer STLS (RFC 2595) with this context when set."""
    mechanisms: Sequence[str] = ("PLAIN", "LOGIN")
    """SASL mechanisms; CRAM-MD5 and SCRAM-* need a backend with plain secrets."""
    apop: bool = False
    """Offer APOP (needs plain secrets; RFC 1939 section 7)."""
    allow_plaintext: bool | None = None
    """Password logins without TLS: ``None`` allows them for loopback peers only."""
    failed_login_delay: float = 2.0
    """Seconds before a failed login is answered."""
    autologout: float = 600.0
    """Idle seconds before a session is dropped (RFC 1939 section 3: at least 600)."""
    login_timeout: float = 60.0
    """Seconds a client has from connecting to logging in; then it is dropped.

    RFC 1939 section 3's 10 minutes are for an idle logged-in client; a
    connection that has not logged in holds a session slot for nothing, so
    it gets far less, in all (commands do not extend it), the TLS handshake
    included. Dovecot's pop3-login drops a client that has not logged in
    after 3 minutes in all (``CLIENT_LOGIN_TIMEOUT_MSECS``); nginx's mail
    proxy waits 60 s (its ``timeout``) for a client not yet logged in, and
    asyncio 60 s for a TLS handshake. A client logs in in well under a
    second, or a few seconds with the delays after failed logins: 60 s.
    """
    max_failed_logins: int = 3
    """Failed logins after which the session is closed."""
    max_sessions: int = 1000
    """Sessions at once; more are greeted with ``-ERR [SYS/TEMP]`` and closed."""
    max_sessions_per_address: int | None = 20
    """Sessions at once from one client address (``None``: no limit); more are refused so.

    Counted from the greeting, logged in or not, so one address cannot take
    every slot of ``max_sessions``. A maildrop admits one session at a time
    (``[IN-USE]``), so 20 sessions from one address are 20 users behind one
    NAT connecting in the same moment: room for an office, while filling
    the default 1000 slots takes 50 addresses. (Dovecot's
    ``mail_max_userip_connections`` allows 10 per user and address.)
    """
    proxy_protocol: bool = False
    """Every connection starts with a PROXY header (v1 or v2) naming the client.

    Read before the greeting and before implicit TLS; the client's address
    is then taken from it for the plaintext-login policy, the limits and the
    logs. A connection without a valid header is closed without a greeting.
    Turn it on only where just the proxy can connect: anyone else could
    claim any address.
    """
    proxy_timeout: float = 10.0
    """Seconds a connection has to send its whole PROXY header."""
    quick_read_size: int = 1 << 16
    """Reads of up to this many octets (a whole small message, or one 64 KiB chunk of a
    big one) are made on an event loop's own thread, not a worker thread (a hop costs
    more than such a read); 0 for storage where any read may block."""
    reuse_port: bool = False
    """Listen with ``SO_REUSEPORT``, so that several processes share the port (Linux)."""
    hostname: str = ""
    """The name in APOP timestamps and CRAM-MD5 challenges ("": the machine's name)."""
    greeting: str = "POP3 server ready"

    def start_session(
        self,
        backend: BackendProtocol,
        *,
        peer_is_loopback: bool,
        sessions: int,
        same_address: int = 1,
        hostname: str,
        random_bytes: Callable[[int], bytes],
        clock: int,
        on_login: Callable[[LoginAttempt], None] | None = None,
        on_trace: Callable[[str], None] | None = None,
    ) -> SessionDriver:
        """A driver for one new connection.

        ``sessions`` counts the sessions running, this one included, and
        ``same_address`` those from the client's address (see
        ``AddressCounter``); ``hostname`` is used when the options name none; ``random_bytes`` and
        ``clock`` (any integer that grows, e.g. microseconds) make the APOP
        timestamp unique (RFC 1939 section 7). ``on_login`` and ``on_trace``
        are the ``ServerSession``'s hooks (for the log).
        """
        name = self.hostname or hostname
        allow = self.allow_plaintext
        session = ServerSession(
            greeting=self.greeting,
            hostname=name,
            tls=self.ssl_context is not None,
            starttls=self.starttls_context is not None,
            allow_plaintext=peer_is_loopback if allow is None else allow,
            mechanisms=self.mechanisms,
            apop_timestamp=(
                make_timestamp(random_bytes(8).hex(), clock, name) if self.apop else None
            ),
            random_bytes=random_bytes,
            max_failed_logins=self.max_failed_logins,
            refuse=self._refusal(sessions, same_address),
            max_output=MAX_QUEUED_OUTPUT,
            on_login=on_login,
            on_trace=on_trace,
        )
        return SessionDriver(
            session,
            backend,
            failed_login_delay=self.failed_login_delay,
            autologout=self.autologout,
            login_timeout=self.login_timeout,
            quick_read_size=self.quick_read_size,
        )

    def _refusal(self, sessions: int, same_address: int) -> str | None:
        if sessions > self.max_sessions:
            return "too many sessions"
        limit = self.max_sessions_per_address
        if limit is not None and same_address > limit:
            return "too many sessions from your address"
        return None


class ServerKeywords(TypedDict, total=False):
    """The keywords of every binding's ``serve()``: the fields of ``ServerOptions``, typed.

    ``serve(backend, host, port, **options: Unpack[ServerKeywords])``: a
    misspelt keyword or a value of the wrong type is an error for a type
    checker, not only at run time. ``tests/test_server_keywords.py`` checks
    that it names exactly the fields of ``ServerOptions``, with their types.
    """

    ssl_context: SSLContext | None
    starttls_context: SSLContext | None
    mechanisms: Sequence[str]
    apop: bool
    allow_plaintext: bool | None
    failed_login_delay: float
    autologout: float
    login_timeout: float
    max_failed_logins: int
    max_sessions: int
    max_sessions_per_address: int | None
    proxy_protocol: bool
    proxy_timeout: float
    quick_read_size: int
    reuse_port: bool
    hostname: str
    greeting: str
