"""The session states and which command may be sent in which: the whole table.

RFC 1939 section 3 names three states (AUTHORIZATION, TRANSACTION, UPDATE).
The connections add GREETING (before the server's first line), CLOSED (after
QUIT was answered or the peer went away) and ERROR (after a ProtocolError).
"""

from __future__ import annotations

import enum

from . import _events as ev

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Final

__all__ = ["NEED_DATA", "PAUSED", "Sentinel", "State"]


class State(enum.Enum):
    """Where a POP3 session is."""

    GREETING = "GREETING"
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


class Sentinel(enum.Enum):
    """Values ``next_event()`` returns when it has no event."""

    NEED_DATA = "NEED_DATA"
    """More bytes must be received first."""
    PAUSED = "PAUSED"
    """A server must answer the current command before the next one is read."""


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED

# Tuples, not sets: ``state in (...)`` compares by identity, where a set
# would hash the member with Enum's Python-level __hash__ (once per command).
_A = (State.AUTHORIZATION,)
_T = (State.TRANSACTION,)
_AT = _A + _T

# Which state each command is valid in.  RFC 1939 sections 4-7, RFC 2449
# section 5 (CAPA in both), RFC 5034 section 4 (AUTH), RFC 2595 section 4
# (STLS), RFC 6856 section 2 (UTF8).
COMMAND_STATES: dict[type, tuple[State, ...]] = {
    ev.User: _A,
    ev.Pass: _A,
    ev.Apop: _A,
    ev.Auth: _A,
    ev.Stls: _A,
    ev.Utf8: _A,
    ev.Capa: _AT,
    ev.Quit: _AT,
    ev.Stat: _T,
    ev.List: _T,
    ev.Uidl: _T,
    ev.Retr: _T,
    ev.Top: _T,
    ev.Dele: _T,
    ev.Noop: _T,
    ev.Rset: _T,
}

# Commands after whose +OK the session is authenticated (RFC 1939 section 4).
# A bare AUTH is an Auth too, but its +OK only lists mechanisms: use
# ``completes_login`` rather than ``isinstance(command, LOGIN_COMMANDS)``.
LOGIN_COMMANDS = (ev.Pass, ev.Apop, ev.Auth)


def completes_login(command: object) -> bool:
    """Whether a ``+OK`` answer to ``command`` moves the session to TRANSACTION.

    A bare ``AUTH`` (``mechanism=None``) is answered ``+OK`` with a list of
    mechanisms and authenticates nobody, so it must leave the session in
    AUTHORIZATION (RFC 1734 practice; RFC 5034 section 4).
    """
    if isinstance(command, ev.Auth):
        return command.mechanism is not None
    return isinstance(command, LOGIN_COMMANDS)


def multiline_on_ok(command: object) -> bool:
    """Whether a ``+OK`` answer to ``command`` is followed by a multi-line body."""
    if isinstance(command, (ev.List, ev.Uidl)):
        return command.msg is None
    if isinstance(command, ev.Auth):
        # A bare AUTH lists mechanisms (RFC 1734 practice, Dovecot, Cyrus);
        # AUTH <mechanism> ends with a single +OK (RFC 5034 section 4).
        return command.mechanism is None
    return isinstance(command, (ev.Capa, ev.Retr, ev.Top))
