"""The session states, and the sentinels ``next_event()`` returns when it has no event.

RFC 1939 section 3 names three states (AUTHORIZATION, TRANSACTION, UPDATE).
The connections add GREETING (before the server's first line), CLOSED (after
QUIT was answered or the peer went away) and ERROR (after a ProtocolError).
Which command is valid in which state, and where each leads, is the command
table's (``_commands.py``).
"""

from __future__ import annotations

import enum

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
"""``next_event()`` needs more bytes (``receive_data``) before it has an event."""
PAUSED: Final = Sentinel.PAUSED
"""A server's ``next_event()`` waits until the current command is answered."""
