"""The core's two exception families.

- ``ProtocolError`` (``LocalProtocolError``, ``RemoteProtocolError``): the protocol
  engine's. Either side's code misused the API, or the peer broke the protocol.
  Only these leave ``ClientConnection``/``ServerConnection`` (docs/architecture.md,
  invariant 3).
- ``Pop3Error`` and its subclasses: the client's. The server answered ``-ERR``; the
  subclass and ``code`` say why, from the response code (RFC 2449, RFC 3206).

And the client's network failures, the same in every binding: ``Pop3TimeoutError``
(a ``TimeoutError``), ``Pop3ConnectionError`` and ``Pop3ConnectionRefusedError`` (a
``ConnectionError``, a ``ConnectionRefusedError``). They are not ``Pop3Error``s: the
server did not answer, and the connection is not usable any more.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._codes import ResponseCode

__all__ = [
    "AuthError",
    "InUseError",
    "LocalProtocolError",
    "LoginDelayError",
    "MessageTooLargeError",
    "PermanentError",
    "Pop3ConnectionError",
    "Pop3ConnectionRefusedError",
    "Pop3Error",
    "Pop3TimeoutError",
    "ProtocolError",
    "RemoteProtocolError",
    "TemporaryError",
]


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


class MessageTooLargeError(RemoteProtocolError):
    """A message body went over its limit (``ClientSession.body_limit``), or was announced so.

    ``msg`` is the message number, ``announced`` the size the server gave in
    its scan listing (LIST), ``limit`` the octets the client accepts for it.
    The rest of the body is not read: the connection cannot be used any more
    (no QUIT either, so nothing marked for deletion is deleted).
    """

    def __init__(self, msg: int, announced: int, limit: int, *, received: int | None) -> None:
        if received is None:
            text = f"message {msg} is announced as {announced} octets, over the limit of {limit}"
        else:
            text = (
                f"message {msg} is announced as {announced} octets, but the server sent "
                f"more than the limit of {limit}"
            )
        super().__init__(text, reason="message-too-large")
        self.msg = msg
        self.announced = announced
        self.limit = limit


class Pop3Error(Exception):
    """The server answered ``-ERR``. ``text`` is its text, ``code`` its response code.

    With ``local=True`` the client refused before asking the server (no safe
    login method, a server that does not offer STLS): ``text`` is the client's
    reason, ``code`` is ``None``, and the message does not read as a ``-ERR``.
    """

    def __init__(
        self,
        text: str,
        code: ResponseCode | None = None,
        command: str = "",
        *,
        local: bool = False,
    ) -> None:
        if local:
            message = f"{command}: {text}"
        else:
            message = f"{command}: -ERR {'[' + str(code) + '] ' if code else ''}{text}"
        super().__init__(message)
        self.text = text
        self.code = code
        self.command = command
        self.local = local


class AuthError(Pop3Error):
    """Authentication failed (``[AUTH]``, RFC 3206), or no safe method was available."""


class InUseError(Pop3Error):
    """Authenticated, but the maildrop is locked by another session (``[IN-USE]``)."""


class LoginDelayError(Pop3Error):
    """Logging in again so soon is not allowed (``[LOGIN-DELAY]``, RFC 2449 section 8.1.1)."""


class TemporaryError(Pop3Error):
    """A transient server problem (``[SYS/TEMP]``, RFC 3206): try again later."""


class PermanentError(Pop3Error):
    """A server problem that needs its operator (``[SYS/PERM]``, RFC 3206)."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Pop3TimeoutError(TimeoutError):
    """A client's network wait took longer than its ``timeout``.

    ``operation`` is what was waited for: ``"connect"`` (the TCP connection and
    an implicit TLS handshake), or the client method (``"start"``: the
    greeting and STLS; ``"login"``, ``"retr"``...); ``host``, ``port`` and
    ``timeout`` (seconds) say where and how long. The original exception is
    the ``__cause__``. The connection cannot be used any more.
    """

    def __init__(
        self,
        message: str = "",
        *,
        operation: str = "",
        host: str = "",
        port: int = 0,
        timeout: float | None = None,
    ) -> None:
        if not message:
            waited = "" if timeout is None else f" within {timeout:g} s"
            message = f"{operation}: no answer from {_where(host, port)}{waited}"
        super().__init__(message)
        self.operation = operation
        self.host = host
        self.port = port
        self.timeout = timeout


class Pop3ConnectionError(ConnectionError):
    """A client could not connect to the server (``operation`` ``"connect"``).

    ``host`` and ``port`` say where; ``errno`` is the system's error number
    when there is one; the original exception is the ``__cause__``. Name
    resolution failures (``socket.gaierror``) and TLS failures
    (``ssl.SSLError``) are raised as they are.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "connect",
        host: str = "",
        port: int = 0,
        errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.operation = operation
        self.host = host
        self.port = port


class Pop3ConnectionRefusedError(Pop3ConnectionError, ConnectionRefusedError):
    """The server refused the connection: nothing listens on that port."""
