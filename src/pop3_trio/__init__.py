"""pop3_trio: POP3 client and server for trio, on the pop3_sansio core."""

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

from ._client import BrokenConnectionError, Client, OperationTimeoutError, connect
from ._server import Server, ServerOptions, serve

__all__ = [
    "AuthError",
    "BrokenConnectionError",
    "Client",
    "InUseError",
    "LoginDelayError",
    "MessageTooLargeError",
    "OperationTimeoutError",
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
