"""pop3_sync: POP3 client and threaded server on blocking sockets, on the pop3_sansio core.

``pop3_sync.poplib`` is a drop-in for the standard library's ``poplib``.
"""

from pop3_sansio import (
    AuthError,
    InUseError,
    LoginDelayError,
    MessageTooLargeError,
    PermanentError,
    Pop3Error,
    ProtocolError,
    RemoteProtocolError,
    TemporaryError,
)

from ._client import Client, Timeout, connect
from ._server import Server, ServerOptions, serve

__all__ = [
    "AuthError",
    "Client",
    "InUseError",
    "LoginDelayError",
    "MessageTooLargeError",
    "PermanentError",
    "Pop3Error",
    "ProtocolError",
    "RemoteProtocolError",
    "Server",
    "ServerOptions",
    "TemporaryError",
    "Timeout",
    "connect",
    "serve",
]
