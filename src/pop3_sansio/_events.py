"""Events: what the connections turn bytes into, and what they turn into bytes.

Commands travel from client to server; responses from server to client. Every
event is a small immutable, slotted value class (``_values.Value``: compared,
hashed and pickled by its fields, matched by position through ``__match_args__``)
whose fields are ``bytes``, ``str``, ``int`` or ``None`` -- never ``bytearray`` or
``memoryview``.

Arguments are ``str`` because POP3 commands are text (RFC 1939 section 3);
they are encoded as UTF-8 on the wire, which is ASCII for every classic
command and what RFC 6856 (UTF8) allows after ``UTF8``.
"""

from __future__ import annotations

from ._errors import LocalProtocolError
from ._values import Value, init_field

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._codes import ResponseCode

_MAX_NUMBER = 10**20  # RFC 1939 numbers are decimal; this caps them at 20 digits.


def _text(value: str, what: str, *, empty: bool = True, space: bool = True) -> None:
    """Reject what would break the line (CR, LF, NUL): the poplib injection bug."""
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be str, not {type(value).__name__}", reason="type")
    if not empty and not value:
        raise LocalProtocolError(f"{what} must not be empty", reason="bad-argument")
    if "\r" in value or "\n" in value or "\0" in value:
        raise LocalProtocolError(f"{what} must not contain CR, LF or NUL", reason="bad-argument")
    if not space and " " in value:
        raise LocalProtocolError(f"{what} must not contain spaces", reason="bad-argument")


def _number(value: int, what: str, minimum: int) -> None:
    if type(value) is not int:
        raise LocalProtocolError(f"{what} must be int, not {type(value).__name__}", reason="type")
    if not minimum <= value < _MAX_NUMBER:
        raise LocalProtocolError(f"{what} out of range: {value}", reason="bad-argument")


def _bytes(value: bytes, what: str) -> None:
    if type(value) is not bytes:
        raise LocalProtocolError(f"{what} must be bytes, not {type(value).__name__}", reason="type")


__all__ = [
    "Apop",
    "Auth",
    "Capa",
    "Command",
    "ConnectionClosed",
    "Data",
    "Dele",
    "EndOfResponse",
    "Err",
    "Event",
    "Greeting",
    "List",
    "Noop",
    "Ok",
    "Pass",
    "Quit",
    "Response",
    "Retr",
    "Rset",
    "SaslCancel",
    "SaslChallenge",
    "SaslResponse",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "UnknownCommand",
    "User",
    "Utf8",
]


# --- commands (client -> server) -------------------------------------------------


class User(Value):
    """``USER name`` (RFC 1939 section 7)."""

    __slots__ = __match_args__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        _text(name, "USER name", empty=False)
        init_field(self, "name", name)


class Pass(Value):
    """``PASS secret`` (RFC 1939 section 7). Spaces are part of the secret."""

    __slots__ = __match_args__ = ("password",)
    _hidden = frozenset(__slots__)
    password: str

    def __init__(self, password: str) -> None:
        _text(password, "PASS secret")
        init_field(self, "password", password)


class Apop(Value):
    """``APOP name digest`` (RFC 1939 section 7); ``digest`` is 32 lower-case hex digits."""

    __slots__ = __match_args__ = ("name", "digest")
    name: str
    digest: str

    def __init__(self, name: str, digest: str) -> None:
        _text(name, "APOP name", empty=False, space=False)
        _text(digest, "APOP digest")
        if len(digest) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise LocalProtocolError("APOP digest must be 32 hex digits", reason="bad-argument")
        init_field(self, "name", name)
        init_field(self, "digest", digest)


class Auth(Value):
    """``AUTH [mechanism [initial-response]]`` (RFC 5034 section 4).

    ``initial_response`` is the *decoded* response: ``None`` means none was sent,
    ``b""`` an empty one (``=`` on the wire). ``mechanism=None`` is the bare
    ``AUTH`` that many servers answer with a multi-line list of mechanisms.
    """

    __slots__ = __match_args__ = ("mechanism", "initial_response")
    _hidden = frozenset({"initial_response"})
    mechanism: str | None
    initial_response: bytes | None

    def __init__(self, mechanism: str | None = None, initial_response: bytes | None = None) -> None:
        if mechanism is None:
            if initial_response is not None:
                raise LocalProtocolError(
                    "initial response without mechanism", reason="bad-argument"
                )
        else:
            _text(mechanism, "SASL mechanism", empty=False, space=False)
            # RFC 4422 section 3.1: 1-20 characters of A-Z, 0-9, "-" and "_".
            if len(mechanism) > 20 or not all(
                c.isascii() and (c.isalnum() or c in "-_") for c in mechanism
            ):
                raise LocalProtocolError(
                    f"bad SASL mechanism name: {mechanism!r}", reason="bad-argument"
                )
            if initial_response is not None:
                _bytes(initial_response, "initial response")
        init_field(self, "mechanism", mechanism)
        init_field(self, "initial_response", initial_response)


class SaslResponse(Value):
    """A client line in a SASL exchange: the decoded response bytes (RFC 5034 section 4)."""

    __slots__ = __match_args__ = ("data",)
    _hidden = frozenset(__slots__)
    data: bytes

    def __init__(self, data: bytes) -> None:
        _bytes(data, "SASL response")
        init_field(self, "data", data)


class SaslCancel(Value):
    """The client's ``*`` line, cancelling a SASL exchange (RFC 5034 section 4)."""

    __slots__ = ()


class Capa(Value):
    """``CAPA`` (RFC 2449 section 5)."""

    __slots__ = ()


class Stls(Value):
    """``STLS`` (RFC 2595 section 4)."""

    __slots__ = ()


class Utf8(Value):
    """``UTF8`` (RFC 6856 section 2)."""

    __slots__ = ()


class Stat(Value):
    """``STAT`` (RFC 1939 section 5)."""

    __slots__ = ()


class List(Value):
    """``LIST [msg]`` (RFC 1939 section 5); multi-line when ``msg`` is ``None``."""

    __slots__ = __match_args__ = ("msg",)
    msg: int | None

    def __init__(self, msg: int | None = None) -> None:
        if msg is not None:
            _number(msg, "message number", 1)
        init_field(self, "msg", msg)


class Uidl(Value):
    """``UIDL [msg]`` (RFC 1939 section 7); multi-line when ``msg`` is ``None``."""

    __slots__ = __match_args__ = ("msg",)
    msg: int | None

    def __init__(self, msg: int | None = None) -> None:
        if msg is not None:
            _number(msg, "message number", 1)
        init_field(self, "msg", msg)


class Retr(Value):
    """``RETR msg`` (RFC 1939 section 5)."""

    __slots__ = __match_args__ = ("msg",)
    msg: int

    def __init__(self, msg: int) -> None:
        _number(msg, "message number", 1)
        init_field(self, "msg", msg)


class Top(Value):
    """``TOP msg n`` (RFC 1939 section 7): the headers and ``lines`` lines of the body."""

    __slots__ = __match_args__ = ("msg", "lines")
    msg: int
    lines: int

    def __init__(self, msg: int, lines: int) -> None:
        _number(msg, "message number", 1)
        _number(lines, "line count", 0)
        init_field(self, "msg", msg)
        init_field(self, "lines", lines)


class Dele(Value):
    """``DELE msg`` (RFC 1939 section 5): mark for deletion at QUIT."""

    __slots__ = __match_args__ = ("msg",)
    msg: int

    def __init__(self, msg: int) -> None:
        _number(msg, "message number", 1)
        init_field(self, "msg", msg)


class Noop(Value):
    """``NOOP`` (RFC 1939 section 5)."""

    __slots__ = ()


class Rset(Value):
    """``RSET`` (RFC 1939 section 5): unmark all messages marked as deleted."""

    __slots__ = ()


class Quit(Value):
    """``QUIT`` (RFC 1939 sections 4 and 6)."""

    __slots__ = ()


class UnknownCommand(Value):
    """A command line the server could not accept; it must be answered with ``Err``.

    Only a server produces this event (RFC 1939 section 3: unknown,
    unimplemented, syntactically invalid, or wrong-state commands get ``-ERR``).
    ``keyword`` is the upper-cased first word, ``line`` the whole line without
    CRLF, and ``reason`` a slug: ``"unknown"``, ``"syntax"``, ``"wrong-state"``.
    """

    __slots__ = __match_args__ = ("keyword", "line", "reason")
    _hidden = frozenset({"line"})
    keyword: str
    line: bytes
    reason: str

    def __init__(self, keyword: str, line: bytes, reason: str) -> None:
        init_field(self, "keyword", keyword)
        init_field(self, "line", line)
        init_field(self, "reason", reason)


Command = (
    User
    | Pass
    | Apop
    | Auth
    | SaslResponse
    | SaslCancel
    | Capa
    | Stls
    | Utf8
    | Stat
    | List
    | Uidl
    | Retr
    | Top
    | Dele
    | Noop
    | Rset
    | Quit
)
"""Any command event a client sends and a server receives (``UnknownCommand`` aside)."""


# --- responses (server -> client) ------------------------------------------------


class Greeting(Value):
    """The server's first line: ``+OK text`` (RFC 1939 section 4).

    ``timestamp`` is the APOP ``<...>`` msg-id found in the text, brackets
    included, or ``None`` (RFC 1939 section 7, RFC 2449 section 6).
    """

    __slots__ = __match_args__ = ("text", "code", "timestamp")
    text: str
    code: ResponseCode | None
    timestamp: str | None

    def __init__(
        self, text: str = "", code: ResponseCode | None = None, timestamp: str | None = None
    ) -> None:
        _text(text, "greeting text")
        if timestamp is not None:
            _text(timestamp, "APOP timestamp", space=False)
        init_field(self, "text", text)
        init_field(self, "code", code)
        init_field(self, "timestamp", timestamp)


class Ok(Value):
    """A positive status line ``+OK [code] text``.

    For a multi-line reply (LIST, UIDL, CAPA, RETR, TOP, bare AUTH) ``Data``
    events and an ``EndOfResponse`` follow.
    """

    __slots__ = __match_args__ = ("text", "code")
    text: str
    code: ResponseCode | None

    def __init__(self, text: str = "", code: ResponseCode | None = None) -> None:
        _text(text, "response text")
        init_field(self, "text", text)
        init_field(self, "code", code)


class Err(Value):
    """A negative status line ``-ERR [code] text``; always single-line."""

    __slots__ = __match_args__ = ("text", "code")
    text: str
    code: ResponseCode | None

    def __init__(self, text: str = "", code: ResponseCode | None = None) -> None:
        _text(text, "response text")
        init_field(self, "text", text)
        init_field(self, "code", code)


class Data(Value):
    """A chunk of a multi-line body: dot-unstuffed, CRLF line ends kept.

    Chunks split anywhere, even inside a line; concatenated, they are the body
    with CRLF after every line, without the terminating ``.`` line.
    """

    __slots__ = __match_args__ = ("data",)
    _hidden = frozenset(__slots__)
    data: bytes

    def __init__(self, data: bytes) -> None:
        _bytes(data, "data")
        init_field(self, "data", data)


class EndOfResponse(Value):
    """The ``.`` CRLF that ends a multi-line response."""

    __slots__ = ()


class SaslChallenge(Value):
    """A server ``+ base64`` continuation line, decoded (RFC 5034 section 4).

    ``data`` is ``None`` when a client received a challenge that is not valid
    base64; the client must then cancel with ``SaslCancel`` (RFC 5034 section 4).
    """

    __slots__ = __match_args__ = ("data",)
    _hidden = frozenset(__slots__)
    data: bytes | None

    def __init__(self, data: bytes | None) -> None:
        if data is not None:
            _bytes(data, "SASL challenge")
        init_field(self, "data", data)


class ConnectionClosed(Value):
    """The peer closed the connection (``receive_data(b"")``)."""

    __slots__ = ()


Response = Greeting | Ok | Err | Data | EndOfResponse | SaslChallenge
"""Any response event a server sends and a client receives."""

Event = Command | UnknownCommand | Response | ConnectionClosed
"""Anything ``next_event()`` returns, apart from the ``NEED_DATA``/``PAUSED`` sentinels."""
