"""The one exception family that leaves the core."""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base of every error the core raises.

    Fields are structured so callers never match on message text:

    - ``reason``: a short machine-readable slug, e.g. ``"line-too-long"``.
    - ``state``: the name of the session state when the error happened, if known.
    - ``line``: the offending line (at most the first 512 octets), if there was one.

    After a ``ProtocolError`` from a connection, that side of the connection is in
    ``State.ERROR`` and only ``receive_data`` of closing data is meaningful.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "protocol-error",
        state: str | None = None,
        line: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.state = state
        self.line = None if line is None else bytes(line[:512])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class LocalProtocolError(ProtocolError):
    """Raised when *this* side misuses the API.

    Examples: a command sent in the wrong state, CR/LF/NUL inside an argument,
    data sent when no multi-line response is open.
    """


class RemoteProtocolError(ProtocolError):
    """Raised when the *peer* broke the protocol.

    Examples: a line over its length limit, a malformed status line, a bad
    base64 SASL line, bytes sent after STLS before the TLS handshake.
    """
