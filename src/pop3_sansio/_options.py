"""What every binding shares: the server's options and how a session starts.

Pure: the SSL contexts are only carried (typed, never imported at run time),
and randomness, the clock and the host name come from the binding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from ._apop import make_timestamp
from ._server_driver import Backend, SessionDriver
from ._session import ServerSession

if TYPE_CHECKING:  # pragma: no cover
    from ssl import SSLContext

__all__ = ["ServerOptions", "TlsMode", "default_port"]

TlsMode: TypeAlias = Literal["implicit", "starttls"] | None
"""How a client protects its connection: implicit TLS (port 995), STLS, or not at all."""


def default_port(tls: TlsMode) -> int:
    """995 for implicit TLS (RFC 8314), 110 otherwise (RFC 1939)."""
    return 995 if tls == "implicit" else 110


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
    max_failed_logins: int = 3
    """Failed logins after which the session is closed."""
    max_sessions: int = 1000
    """Sessions at once; more are greeted with ``-ERR [SYS/TEMP]`` and closed."""
    hostname: str = ""
    """The name in APOP timestamps and CRAM-MD5 challenges ("": the machine's name)."""
    greeting: str = "POP3 server ready"

    def start_session(
        self,
        backend: Backend,
        *,
        peer_is_loopback: bool,
        sessions: int,
        hostname: str,
        random_bytes: Callable[[int], bytes],
        clock: int,
    ) -> SessionDriver:
        """A driver for one new connection.

        ``sessions`` counts the sessions running, this one included;
        ``hostname`` is used when the options name none; ``random_bytes`` and
        ``clock`` (any integer that grows, e.g. microseconds) make the APOP
        timestamp unique (RFC 1939 section 7).
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
            refuse="too many sessions" if sessions > self.max_sessions else None,
        )
        return SessionDriver(
            session,
            backend,
            failed_login_delay=self.failed_login_delay,
            autologout=self.autologout,
        )
