"""Events: what the connections turn bytes into, and what they turn into bytes.

Commands travel from client to server; responses from server to client. Every
event is a small frozen, slotted dataclass whose fields are ``bytes``, ``str``,
``int`` or ``None`` -- never ``bytearray`` or ``memoryview``.

Arguments are ``str`` because POP3 commands are text (RFC 1939 section 3);
they are encoded as UTF-8 on the wire, which is ASCII for every classic
command and what RFC 6856 (UTF8) allows after ``UTF8``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._codes import ResponseCode
from ._errors import LocalProtocolError

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


@dataclass(frozen=True, slots=True)
class User:
    """``USER name`` (RFC 1939 section 7)."""

    name: str

    def __post_init__(self) -> None:
        _text(self.name, "USER name", empty=False)


@dataclass(frozen=True, slots=True)
class Pass:
    """``PASS secret`` (RFC 1939 section 7). Spaces are part of the secret."""

    password: str = field(repr=False)

    def __post_init__(self) -> None:
        _text(self.password, "PASS secret")


@dataclass(frozen=True, slots=True)
class Apop:
    """``APOP name digest`` (RFC 1939 section 7); ``digest`` is 32 lower-case hex digits."""

    name: str
    digest: str

    def __post_init__(self) -> None:
        _text(self.name, "APOP name", empty=False, space=False)
        _text(self.digest, "APOP digest")
        if len(self.digest) != 32 or any(c not in "0123456789abcdefABCDEF" for c in self.digest):
            raise LocalProtocolError("APOP digest must be 32 hex digits", reason="bad-argument")


@dataclass(frozen=True, slots=True)
class Auth:
    """``AUTH [mechanism [initial-response]]`` (RFC 5034 section 4).

    ``initial_response`` is the *decoded* response: ``None`` means none was sent,
    ``b""`` an empty one (``=`` on the wire). ``mechanism=None`` is the bare
    ``AUTH`` that many servers answer with a multi-line list of mechanisms.
    """

    mechanism: str | None = None
    initial_response: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mechanism is None:
            if self.initial_response is not None:
                raise LocalProtocolError(
                    "initial response without mechanism", reason="bad-argument"
                )
            return
        _text(self.mechanism, "SASL mechanism", empty=False, space=False)
        # RFC 4422 section 3.1: 1-20 characters of A-Z, 0-9, "-" and "_".
        if len(self.mechanism) > 20 or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in self.mechanism
        ):
            raise LocalProtocolError(
                f"bad SASL mechanism name: {self.mechanism!r}", reason="bad-argument"
            )
        if self.initial_response is not None:
            _bytes(self.initial_response, "initial response")


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """A client line in a SASL exchange: the decoded response bytes (RFC 5034 section 4)."""

    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _bytes(self.data, "SASL response")


@dataclass(frozen=True, slots=True)
class SaslCancel:
    """The client's ``*`` line, cancelling a SASL exchange (RFC 5034 section 4)."""


@dataclass(frozen=True, slots=True)
class Capa:
    """``CAPA`` (RFC 2449 section 5)."""


@dataclass(frozen=True, slots=True)
class Stls:
    """``STLS`` (RFC 2595 section 4)."""


@dataclass(frozen=True, slots=True)
class Utf8:
    """``UTF8`` (RFC 6856 section 2)."""


@dataclass(frozen=True, slots=True)
class Stat:
    """``STAT`` (RFC 1939 section 5)."""


@dataclass(frozen=True, slots=True)
class List:
    """``LIST [msg]`` (RFC 1939 section 5); multi-line when ``msg`` is ``None``."""

    msg: int | None = None

    def __post_init__(self) -> None:
        if self.msg is not None:
            _number(self.msg, "message number", 1)


@dataclass(frozen=True, slots=True)
class Uidl:
    """``UIDL [msg]`` (RFC 1939 section 7); multi-line when ``msg`` is ``None``."""

    msg: int | None = None

    def __post_init__(self) -> None:
        if self.msg is not None:
            _number(self.msg, "message number", 1)


@dataclass(frozen=True, slots=True)
class Retr:
    """``RETR msg`` (RFC 1939 section 5)."""

    msg: int

    def __post_init__(self) -> None:
        _number(self.msg, "message number", 1)


@dataclass(frozen=True, slots=True)
class Top:
    """``TOP msg n`` (RFC 1939 section 7): the headers and ``lines`` lines of the body."""

    msg: int
    lines: int

    def __post_init__(self) -> None:
        _number(self.msg, "message number", 1)
        _number(self.lines, "line count", 0)


@dataclass(frozen=True, slots=True)
class Dele:
    """``DELE msg`` (RFC 1939 section 5): mark for deletion at QUIT."""

    msg: int

    def __post_init__(self) -> None:
        _number(self.msg, "message number", 1)


@dataclass(frozen=True, slots=True)
class Noop:
    """``NOOP`` (RFC 1939 section 5)."""


@dataclass(frozen=True, slots=True)
class Rset:
    """``RSET`` (RFC 1939 section 5): unmark all messages marked as deleted."""


@dataclass(frozen=True, slots=True)
class Quit:
    """``QUIT`` (RFC 1939 sections 4 and 6)."""


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A command line the server could not accept; it must be answered with ``Err``.

    Only a server produces this event (RFC 1939 section 3: unknown,
    unimplemented, syntactically invalid, or wrong-state commands get ``-ERR``).
    ``keyword`` is the upper-cased first word, ``line`` the whole line without
    CRLF, and ``reason`` a slug: ``"unknown"``, ``"syntax"``, ``"wrong-state"``.
    """

    keyword: str
    line: bytes = field(repr=False)
    reason: str


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


# --- responses (server -> client) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greeting:
    """The server's first line: ``+OK text`` (RFC 1939 section 4).

    ``timestamp`` is the APOP ``<...>`` msg-id found in the text, brackets
    included, or ``None`` (RFC 1939 section 7, RFC 2449 section 6).
    """

    text: str = ""
    code: ResponseCode | None = None
    timestamp: str | None = None

    def __post_init__(self) -> None:
        _text(self.text, "greeting text")
        if self.timestamp is not None:
            _text(self.timestamp, "APOP timestamp", space=False)


@dataclass(frozen=True, slots=True)
class Ok:
    """A positive status line ``+OK [code] text``.

    For a multi-line reply (LIST, UIDL, CAPA, RETR, TOP, bare AUTH) ``Data``
    events and an ``EndOfResponse`` follow.
    """

    text: str = ""
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        _text(self.text, "response text")


@dataclass(frozen=True, slots=True)
class Err:
    """A negative status line ``-ERR [code] text``; always single-line."""

    text: str = ""
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        _text(self.text, "response text")


@dataclass(frozen=True, slots=True)
class Data:
    """A chunk of a multi-line body: dot-unstuffed, CRLF line ends kept.

    Chunks split anywhere, even inside a line; concatenated, they are the body
    with CRLF after every line, without the terminating ``.`` line.
    """

    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _bytes(self.data, "data")


@dataclass(frozen=True, slots=True)
class EndOfResponse:
    """The ``.`` CRLF that ends a multi-line response."""


@dataclass(frozen=True, slots=True)
class SaslChallenge:
    """A server ``+ base64`` continuation line, decoded (RFC 5034 section 4).

    ``data`` is ``None`` when a client received a challenge that is not valid
    base64; the client must then cancel with ``SaslCancel`` (RFC 5034 section 4).
    """

    data: bytes | None = field(repr=False)

    def __post_init__(self) -> None:
        if self.data is not None:
            _bytes(self.data, "SASL challenge")


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (``receive_data(b"")``)."""


Response = Greeting | Ok | Err | Data | EndOfResponse | SaslChallenge

Event = Command | UnknownCommand | Response | ConnectionClosed
