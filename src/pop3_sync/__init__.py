"""pop3_sync: POP3 client and threaded server on blocking sockets, on the pop3_sansio core.

``pop3_sync.poplib`` is a drop-in for the standard library's ``poplib``.
"""

from pop3_sansio import ProtocolError, RemoteProtocolError
from pop3_sansio.client import (
    AuthError,
    InUseError,
    LoginDelayError,
    MessageTooLargeError,
    PermanentError,
    Pop3ConnectionError,
    Pop3ConnectionRefusedError,
    Pop3Error,
    Pop3TimeoutError,
    TemporaryError,
)

from ._client import Client, Timeout, connect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._server import Server, ServerOptions, serve
else:

    def __getattr__(name: str) -> object:
        # The server is imported on first use (PEP 562): a client's import loads
        # no server, logging or threading code (docs/architecture.md, section 8).
        if name not in ("Server", "ServerOptions", "serve"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import _server

        value = getattr(_server, name)
        globals()[name] = value
        return value


__all__ = [
    "AuthError",
    "Client",
    "InUseError",
    "LoginDelayError",
    "MessageTooLargeError",
    "PermanentError",
    "Pop3ConnectionError",
    "Pop3ConnectionRefusedError",
    "Pop3Error",
    "Pop3TimeoutError",
    "ProtocolError",
    "RemoteProtocolError",
    "Server",
    "ServerOptions",
    "TemporaryError",
    "Timeout",
    "connect",
    "serve",
]
