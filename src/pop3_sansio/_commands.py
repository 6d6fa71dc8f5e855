"""The command table: one row per command event, read by both roles and the fast paths.

Each ``CommandSpec`` row says how a command is written, in which states it is
valid, whether its ``+OK`` opens a body, the state it leads to and what else
it changes. ``ClientConnection`` (encoding, ordering, answers),
``ServerConnection`` (validity, answers), the server's parser (``_parse.py``)
and ``ServerSession``'s handler table all read the rows; the sets the fast
paths use are derived from them below, never written by hand.

Sources: RFC 1939 sections 4-7, RFC 2449 section 5 (CAPA), RFC 2595 section 4
(STLS), RFC 5034 section 4 (AUTH and its SASL lines), RFC 6856 section 2 (UTF8).
"""

from __future__ import annotations

import enum

from . import _events as ev
from ._state import State

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Final

__all__ = [
    "BARE_COMMANDS",
    "BY_KEYWORD",
    "COMMANDS",
    "FAST_LINES",
    "KEYWORDS",
    "PLAIN_TRANSACTION",
    "TAKES_ARGUMENTS",
    "Args",
    "CommandSpec",
    "Effect",
    "Multiline",
    "completes_login",
    "multiline_on_ok",
    "spec_of",
    "state_after_ok",
]


class Args(enum.Enum):
    """The shape of a command's arguments on the wire."""

    NONE = enum.auto()  # no argument: "STAT"
    MSG = enum.auto()  # one message number: "RETR 1"
    OPT_MSG = enum.auto()  # an optional message number: "LIST", "LIST 1"
    MSG_LINES = enum.auto()  # a message number and a line count: "TOP 1 10"
    NAME = enum.auto()  # the rest of the line, not empty: "USER name"
    SECRET = enum.auto()  # the rest of the line, spaces included: "PASS a b"
    NAME_DIGEST = enum.auto()  # "APOP name digest"
    AUTH = enum.auto()  # "AUTH [mechanism [initial-response]]"
    SASL_RESPONSE = enum.auto()  # a base64 line inside AUTH
    SASL_CANCEL = enum.auto()  # "*" inside AUTH


class Multiline(enum.Enum):
    """Whether a ``+OK`` to the command is followed by a body."""

    NEVER = "NEVER"
    ALWAYS = "ALWAYS"
    BARE = "BARE"  # LIST/UIDL without a message number
    BARE_AUTH = "BARE_AUTH"  # AUTH without a mechanism: the list of mechanisms


class Effect(enum.Enum):
    """What a ``+OK`` to the command changes besides the session state."""

    NONE = "NONE"
    TLS_PENDING = "TLS_PENDING"  # STLS: the TLS handshake comes next (RFC 2595 section 4)
    UTF8 = "UTF8"  # UTF8: RFC 6856 section 2
    AFTER_USER = "AFTER_USER"  # USER: a PASS may follow (RFC 1939 section 7)


_A = (State.AUTHORIZATION,)
_T = (State.TRANSACTION,)
_AT = _A + _T


class CommandSpec:
    """One row of the table; see the module docstring and docs/architecture.md section 4."""

    __slots__ = (
        "after_err",
        "after_ok",
        "args",
        "barrier",
        "effect",
        "event",
        "fast_line",
        "handler",
        "keyword",
        "multiline",
        "requires_user",
        "states",
        "wire",
    )

    def __init__(
        self,
        keyword: str | None,
        event: type,
        args: Args,
        states: tuple[State, ...],
        *,
        multiline: Multiline = Multiline.NEVER,
        after_ok: State | None = None,
        after_err: State | None = None,
        effect: Effect = Effect.NONE,
        barrier: bool = False,
        requires_user: bool = False,
        fast_line: bytes | None = None,
        handler: str | None = None,
    ) -> None:
        self.keyword = keyword
        """The wire keyword; ``None`` for the SASL lines, which have none."""
        self.wire = b"" if keyword is None else keyword.encode("ascii")
        self.event = event
        self.args = args
        # Tuples, not sets: ``state in (...)`` compares by identity, where a
        # set would hash the member with Enum's Python-level __hash__.
        self.states = states
        self.multiline = multiline
        self.after_ok = after_ok
        self.after_err = after_err
        self.effect = effect
        self.barrier = barrier
        """Nothing may be pipelined behind it: AUTH challenges, the TLS
        handshake and the close (RFC 5034 section 4, RFC 2595 section 4)."""
        self.requires_user = requires_user
        """Valid only right after a USER that was answered ``+OK`` (RFC 1939 section 7)."""
        self.fast_line = fast_line
        self.handler = handler

    def __repr__(self) -> str:
        return f"CommandSpec({self.keyword or self.event.__name__})"


_ROWS = (
    CommandSpec("USER", ev.User, Args.NAME, _A, effect=Effect.AFTER_USER, handler="_user_cmd"),
    CommandSpec(
        "PASS",
        ev.Pass,
        Args.SECRET,
        _A,
        after_ok=State.TRANSACTION,
        requires_user=True,
        handler="_pass",
    ),
    CommandSpec("APOP", ev.Apop, Args.NAME_DIGEST, _A, after_ok=State.TRANSACTION, handler="_apop"),
    # A bare AUTH lists mechanisms and authenticates nobody (RFC 1734
    # practice; RFC 5034 section 4): see completes_login.
    CommandSpec(
        "AUTH",
        ev.Auth,
        Args.AUTH,
        _A,
        multiline=Multiline.BARE_AUTH,
        after_ok=State.TRANSACTION,
        barrier=True,
        handler="_auth",
    ),
    CommandSpec(
        "STLS", ev.Stls, Args.NONE, _A, effect=Effect.TLS_PENDING, barrier=True, handler="_stls"
    ),
    CommandSpec("UTF8", ev.Utf8, Args.NONE, _A, effect=Effect.UTF8, handler="_utf8"),
    CommandSpec("CAPA", ev.Capa, Args.NONE, _AT, multiline=Multiline.ALWAYS, handler="_capa"),
    CommandSpec(
        "QUIT",
        ev.Quit,
        Args.NONE,
        _AT,
        after_ok=State.CLOSED,
        after_err=State.CLOSED,
        barrier=True,
        handler="_quit",
    ),
    CommandSpec("STAT", ev.Stat, Args.NONE, _T, handler="_stat"),
    CommandSpec("LIST", ev.List, Args.OPT_MSG, _T, multiline=Multiline.BARE, handler="_list"),
    CommandSpec("UIDL", ev.Uidl, Args.OPT_MSG, _T, multiline=Multiline.BARE, handler="_uidl"),
    CommandSpec(
        "RETR",
        ev.Retr,
        Args.MSG,
        _T,
        multiline=Multiline.ALWAYS,
        fast_line=b"RETR %d\r\n",
        handler="_retr",
    ),
    # TOP is answered by the same handler as RETR (it filters the message).
    CommandSpec("TOP", ev.Top, Args.MSG_LINES, _T, multiline=Multiline.ALWAYS, handler="_retr"),
    CommandSpec("DELE", ev.Dele, Args.MSG, _T, fast_line=b"DELE %d\r\n", handler="_dele"),
    CommandSpec("NOOP", ev.Noop, Args.NONE, _T, handler="_noop"),
    CommandSpec("RSET", ev.Rset, Args.NONE, _T, handler="_rset"),
    # The client's lines inside an AUTH exchange: valid only after a challenge,
    # which the connections track themselves.
    CommandSpec(None, ev.SaslResponse, Args.SASL_RESPONSE, ()),
    CommandSpec(None, ev.SaslCancel, Args.SASL_CANCEL, ()),
)

COMMANDS: Final[dict[type, CommandSpec]] = {spec.event: spec for spec in _ROWS}
"""Event class -> its row."""

BY_KEYWORD: Final[dict[str, CommandSpec]] = {
    spec.keyword: spec for spec in _ROWS if spec.keyword is not None
}
"""Upper-case wire keyword -> its row (the SASL lines have no keyword)."""

# --- derived from the rows -------------------------------------------------------

TAKES_ARGUMENTS: Final = frozenset(k for k, s in BY_KEYWORD.items() if s.args is not Args.NONE)
"""Keywords that may be followed by a space and arguments."""

KEYWORDS: Final = frozenset(BY_KEYWORD)

BARE_COMMANDS: Final[dict[str, ev.Command]] = {
    k: s.event() for k, s in BY_KEYWORD.items() if s.args in (Args.NONE, Args.OPT_MSG, Args.AUTH)
}
"""One shared instance per command that may come without arguments (events are frozen)."""

PLAIN_TRANSACTION: Final = frozenset(
    s.event
    for s in _ROWS
    if s.states == _T
    and s.after_ok is None
    and s.effect is Effect.NONE
    and s.multiline is not Multiline.NEVER
)
"""Commands valid in TRANSACTION only whose ``+OK`` changes nothing and may open a
body (RETR, TOP, LIST, UIDL): the answers' fast paths take these."""

FAST_LINES: Final[dict[type, bytes]] = {s.event: s.fast_line for s in _ROWS if s.fast_line}
"""The client's preformatted lines for its RETR/DELE fast path (``% msg``)."""

COMMAND_TYPES: Final = tuple(COMMANDS)
"""For ``isinstance``: every command event class."""


def spec_of(command: object) -> CommandSpec | None:
    """The row of ``command`` (an event instance, subclasses included), or ``None``."""
    spec = COMMANDS.get(type(command))
    if spec is None and isinstance(command, COMMAND_TYPES):
        for klass in type(command).__mro__:  # pragma: no branch - one of them is a row
            spec = COMMANDS.get(klass)
            if spec is not None:
                break
    return spec


def multiline_on_ok(command: object) -> bool:
    """Whether a ``+OK`` answer to ``command`` is followed by a multi-line body."""
    spec = spec_of(command)
    if spec is None:
        return False
    multiline = spec.multiline
    if multiline is Multiline.NEVER:
        return False
    if multiline is Multiline.ALWAYS:
        return True
    if multiline is Multiline.BARE:
        return command.msg is None  # type: ignore[attr-defined]
    # A bare AUTH lists mechanisms (RFC 1734 practice, Dovecot, Cyrus);
    # AUTH <mechanism> ends with a single +OK (RFC 5034 section 4).
    return command.mechanism is None  # type: ignore[attr-defined]


def completes_login(command: object) -> bool:
    """Whether a ``+OK`` answer to ``command`` moves the session to TRANSACTION.

    A bare ``AUTH`` (``mechanism=None``) is answered ``+OK`` with a list of
    mechanisms and authenticates nobody, so it must leave the session in
    AUTHORIZATION (RFC 1734 practice; RFC 5034 section 4).
    """
    spec = spec_of(command)
    if spec is None or spec.after_ok is not State.TRANSACTION:
        return False
    return spec.args is not Args.AUTH or command.mechanism is not None  # type: ignore[attr-defined]


def state_after_ok(state: State, command: object) -> State:
    """The session state after ``command`` is answered ``+OK`` in ``state``."""
    spec = spec_of(command)
    if spec is None or spec.after_ok is None:
        return state
    if spec.after_ok is State.TRANSACTION and not completes_login(command):
        return state
    return spec.after_ok
