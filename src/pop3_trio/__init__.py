"""pop3_trio: POP3 client and server for trio, on the pop3_sansio core.

trio is an optional dependency: without it, importing this package raises
``ModuleNotFoundError`` (``name == "trio"``) saying how to install it.
"""

try:
    import trio as _trio  # noqa: F401 - only to say what is missing
except ModuleNotFoundError as exc:
    if exc.name != "trio":
        raise  # trio is there, but broken: its own error says more
    raise ModuleNotFoundError(
        "pop3_trio needs trio, which is not installed: pip install 'pop3-sansio[trio]'",
        name="trio",
    ) from None

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

from ._client import BrokenConnectionError, Client, OperationTimeoutError, connect

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
    "BrokenConnectionError",
    "Client",
    "InUseError",
    "LoginDelayError",
    "MessageTooLargeError",
    "OperationTimeoutError",
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
    "connect",
    "serve",
]
