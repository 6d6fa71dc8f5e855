"""pop3_asyncio: POP3 client and server for asyncio, on the pop3_sansio core."""

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

from ._client import Client, connect
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
    "connect",
    "serve",
]
