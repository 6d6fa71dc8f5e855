"""The rules for using one client connection, written once for every binding.

A binding (``AsyncClient`` for asyncio and trio, ``pop3_sync.Client``) runs each
operation of its ``ClientSession`` between ``ClientGuard.begin()`` and
``finished()`` or ``failed(exc)``, and asks ``exit_plan()`` what leaving its
``with`` block does. The guard decides; the binding only does the I/O. No I/O
here: the guard closes the connection through the ``close`` it was given.
"""

from __future__ import annotations

from ._client_session import ClientSession
from ._errors import (
    LocalProtocolError,
    Pop3ConnectionError,
    Pop3ConnectionRefusedError,
    Pop3Error,
    Pop3TimeoutError,
)
from ._net import is_loopback_address
from ._state import State

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    # Types only: a client's import does not load ``typing`` (docs/architecture.md, section 8).
    from collections.abc import Callable
    from typing import Literal, TypeAlias

    from ._net import TlsMode

    ExitPlan: TypeAlias = Literal["commit", "quit", "close"]
    """What leaving a client's ``with`` block does (see ``ClientGuard.exit_plan``)."""

__all__ = ["ClientGuard"]


def _refusals(exc: BaseException) -> list[ConnectionRefusedError]:
    """The refusals ``exc`` stands for: itself, or every attempt (trio tries each address
    and raises an ``OSError`` from the group of their errors); empty if any was not one."""
    if isinstance(exc, ConnectionRefusedError):
        return [exc]
    group = exc.__cause__
    if isinstance(group, BaseExceptionGroup):
        attempts = list(group.exceptions)
        if all(isinstance(attempt, ConnectionRefusedError) for attempt in attempts):
            return attempts  # type: ignore[return-value]
    return []


class ClientGuard:
    """One connection's state of use: idle, busy with an operation, or broken for good.

    An operation that is cancelled, times out, breaks, or whose message is not
    read to the end leaves the answers out of step with the commands; from
    then on every call raises ``ConnectionError`` and no QUIT is sent (RFC
    1939 section 6: without QUIT nothing is deleted).
    """

    __slots__ = ("_close", "_timeout_error", "_timeouts", "broken", "busy")

    def __init__(
        self,
        close: Callable[[], object],
        *,
        timeouts: tuple[type[BaseException], ...] = (TimeoutError,),
        timeout_error: type[Pop3TimeoutError] = Pop3TimeoutError,
    ) -> None:
        self._close = close  # closes the connection at once, without QUIT
        self._timeouts = timeouts  # what the binding's waits raise when they run out
        self._timeout_error = timeout_error  # what the binding raises for them
        self.busy = False
        """An operation has begun and has not finished (or was abandoned half-way)."""
        self.broken: BaseException | None = None
        """Why the connection is unusable (the first cause), or ``None``."""

    def new_session(
        self,
        *,
        tls: TlsMode,
        allow_plaintext_login: bool,
        peer: object,
        random_bytes: Callable[[int], bytes] | None,
        max_message_size: int | None,
    ) -> ClientSession:
        """The session for a fresh connection to ``peer`` (its socket address, or ``None``).

        A password may go in the clear only to a loopback peer
        (``is_loopback_address``: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) or
        when the caller allowed it; over TLS it always may (RFC 2595 section 2.3).
        """
        return ClientSession(
            tls=tls == "implicit",
            allow_plaintext_login=allow_plaintext_login or is_loopback_address(peer),
            random_bytes=random_bytes,
            max_message_size=max_message_size,
        )

    def network_error(
        self,
        exc: BaseException,
        *,
        operation: str,
        host: str,
        port: int,
        timeout: float | None,
    ) -> BaseException:
        """What the client raises for ``exc``, raised by the network during ``operation``.

        One family in every binding: a timeout (one of the binding's
        ``timeouts``) becomes ``timeout_error`` (a ``Pop3TimeoutError``), and a
        failure to connect (``operation == "connect"``) a
        ``Pop3ConnectionRefusedError`` or ``Pop3ConnectionError``, each with
        ``exc`` as its ``__cause__``. Anything else (``ssl`` and name
        resolution errors included) is ``exc`` itself. Raise the result.
        """
        error: BaseException
        if isinstance(exc, Pop3TimeoutError | Pop3ConnectionError):
            return exc
        if isinstance(exc, self._timeouts):
            error = self._timeout_error(operation=operation, host=host, port=port, timeout=timeout)
        elif operation == "connect" and (type(exc) is OSError or isinstance(exc, ConnectionError)):
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            refused = _refusals(exc)
            if refused:
                error = Pop3ConnectionRefusedError(
                    f"connect: {where} refused the connection (is the server running, "
                    "and on this port?)",
                    host=host,
                    port=port,
                    errno=refused[0].errno,
                )
            else:
                assert isinstance(exc, OSError)
                error = Pop3ConnectionError(
                    f"connect: cannot connect to {where}: {exc.strerror or exc}",
                    host=host,
                    port=port,
                    errno=exc.errno,
                )
        else:
            return exc
        error.__cause__ = exc
        return error

    def begin(self) -> None:
        """Claim the connection for one operation; ``ConnectionError`` if it cannot be used."""
        if self.broken is not None:
            raise ConnectionError(
                "connection unusable after an interrupted operation"
            ) from self.broken
        if self.busy:
            # An earlier operation stopped half-way (a RETR loop left early)
            # or runs in another task or thread: either way the answers are
            # out of step with the commands, so the connection cannot go on.
            self.interrupted(RuntimeError("an earlier operation was not finished"))
            raise ConnectionError(
                "connection unusable: an earlier operation was not finished "
                "(read every chunk of iter_retr, or use one connection per task or thread)"
            )
        self.busy = True

    def finished(self) -> None:
        """The operation ended normally: the connection is idle."""
        self.busy = False

    def failed(self, exc: BaseException, *, wrote: bool, session: ClientSession) -> None:
        """The operation raised ``exc``; break the connection unless it is still in step.

        A ``Pop3Error`` is a complete ``-ERR`` answer: still in step. So is a
        ``LocalProtocolError`` raised before anything was written (a bad
        argument such as ``dele(0)``) that left the connection usable. Anything
        else (a timeout, a lost connection, a cancellation, a body over its
        limit, a command refused after a write) leaves it out of step.
        """
        self.busy = False
        if isinstance(exc, Pop3Error):
            return
        if (
            isinstance(exc, LocalProtocolError)
            and not wrote
            and session.connection.our_state is not State.ERROR
        ):
            return
        self.interrupted(exc)

    def interrupted(self, exc: BaseException) -> None:
        """Out of step for good because of ``exc`` (the first cause is kept): close now."""
        if self.broken is None:
            self.broken = exc
        self._close()

    def open_failed(self) -> None:
        """Opening failed: the connection is unusable (the binding closes it)."""
        if self.broken is None:
            self.broken = RuntimeError("open() failed")

    def exit_plan(
        self, exc_type: type[BaseException] | None, session: ClientSession | None
    ) -> ExitPlan:
        """What leaving the ``with`` block does.

        ``"close"`` after an exception, on a broken connection, or with an
        operation left half-way (which breaks it now): no QUIT, nothing is
        deleted; the binding then calls ``closed_without_quit``. Otherwise
        QUIT, then close: ``"commit"`` in TRANSACTION, where QUIT commits the
        deletions and a failure must reach the caller (whether they were made
        is unknown); ``"quit"`` before login, where a failed goodbye loses
        nothing and is not reported.
        """
        if exc_type is None and self.busy and self.broken is None:
            self.interrupted(RuntimeError("an operation was not finished"))
        if exc_type is not None or self.broken is not None:
            return "close"
        return "commit" if session is not None and session.quit_commits else "quit"

    def closed_without_quit(
        self, exc_type: type[BaseException] | None, session: ClientSession | None
    ) -> None:
        """After ``"close"``: raise ``ConnectionError`` if marked messages were not deleted.

        Only when the block itself ended normally: the caller must hear that
        the messages it deleted are still there (``raise_if_marks_lost``).
        """
        if exc_type is None and session is not None:
            session.raise_if_marks_lost(self.broken)
