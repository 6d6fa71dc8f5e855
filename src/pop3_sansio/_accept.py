"""What a server's accept loop does when the system runs out of something.

Shared by every binding's server, so that each pauses and refuses alike.
"""

from __future__ import annotations

from ._server_session import ServerSession

__all__ = ["AcceptPause", "refusal"]


class AcceptPause:
    """How long to stop accepting after ``accept()`` failed (e.g. out of descriptors).

    When ``accept()`` fails for want of descriptors (EMFILE, ENFILE) or kernel
    memory (ENOBUFS, ENOMEM), the connection stays queued and the listening
    socket stays readable: accepting again at once spins a core and floods
    the log. ``failed()`` gives the pause before the next try, doubling with
    each failure in a row from ``first`` up to ``longest`` (a new connection
    waits at most that long once descriptors are free again); ``accepted()``
    starts over. A binding logs once per pause, so the log grows by at most
    one line every ``longest`` seconds.
    """

    def __init__(self, first: float = 0.05, longest: float = 1.0) -> None:
        if not 0 < first <= longest:
            raise ValueError("AcceptPause needs 0 < first <= longest")
        self.first = first
        self.longest = longest
        self._next = first

    def failed(self) -> float:
        """Seconds to stop accepting after a failed ``accept()``."""
        pause = self._next
        self._next = min(pause * 2, self.longest)
        return pause

    def accepted(self) -> None:
        """A connection was accepted: the next failure pauses ``first`` seconds again."""
        self._next = self.first


def refusal(reason: str) -> bytes:
    """The greeting that turns a client away: ``-ERR [SYS/TEMP] reason`` (RFC 3206).

    For a connection the server cannot start a session for (e.g. no thread
    could be started for it); the binding writes it and closes.
    """
    return ServerSession(refuse=reason).data_to_send()
