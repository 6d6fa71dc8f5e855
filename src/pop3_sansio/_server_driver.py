"""The server side's glue, written once: a ServerSession answered from a backend.

``SessionDriver.run()`` is a generator that yields I/O instructions to the
binding -- ``Write``, ``READ``, ``StartTls``, ``Sleep``, ``Call`` -- and never
touches a socket, a file or a clock itself. ``Call(function, args)`` asks the
binding to call a backend method (in a worker thread, for an event loop,
unless the call is marked ``quick``) and send back its result, or throw its
exception into the generator.

The backend is duck-typed (``BackendProtocol``, ``MaildropProtocol`` in
``_storage``); ``pop3_maildrop`` provides Maildir, mbox and in-memory ones.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ._instructions import READ, Read, StartTls, Write
from ._sasl import CheckPassword, CheckToken, LookupSecret
from ._server_session import (
    CloseConnection,
    CommitDeletions,
    OpenMaildrop,
    ReadMessage,
    ServerSession,
)
from ._state import NEED_DATA, PAUSED, State
from ._storage import BackendProtocol, MaildropError, MaildropLockedError, MaildropProtocol

__all__ = ["Call", "ServerInstruction", "SessionDriver", "Sleep"]


@dataclass(frozen=True, slots=True)
class Call:
    """Call ``function(*args)`` and send back the result (or throw its exception).

    ``quick`` marks a call expected to take microseconds (reading a small
    message): an event-loop binding may make it on the loop's own thread, as
    a worker-thread hop would cost more than the call. Other calls (password
    hashing, opening or committing a maildrop, big reads) go to a worker.
    """

    function: Callable[..., Any]
    args: tuple[Any, ...] = field(default=())
    quick: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (the delay after a failed login), then resume."""

    seconds: float


ServerInstruction: TypeAlias = Write | Read | StartTls | Sleep | Call


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


def _answer_secret(
    lookup: Callable[[str], str | None], session: ServerSession, username: str
) -> None:
    """Look the user's secret up and hand it to the session, in one ``Call``.

    For SCRAM the session derives the keys from it then (PBKDF2, some
    milliseconds): that belongs in the worker thread, not on an event loop.
    The session is the driver's alone, and the driver waits for the call.
    """
    session.secret_found(lookup(username))


def _open_message(
    maildrop: MaildropProtocol, msg: int, chunk_size: int
) -> tuple[Iterator[bytes], bytes | None, bytes | None]:
    """Open message ``msg`` and read its first two chunks (``None`` past the end).

    One ``Call`` for all of a message that fits in a chunk, where opening,
    reading and finding the end took three: each is a worker-thread hop in
    the async bindings, and costs more than reading a small file.
    """
    chunks = maildrop.read(msg, chunk_size)
    first = next(chunks, None)
    return chunks, first, None if first is None else next(chunks, None)


class SessionDriver:
    """Runs one ``ServerSession`` against a ``Backend``.

    ``autologout`` is the idle time after which the binding drops the
    connection (RFC 1939 section 3: at least 10 minutes; nothing is deleted);
    before that, a client has ``login_timeout`` seconds in all to log in
    (leave the AUTHORIZATION state). ``read_timeout()`` says how long each
    READ may wait, ``wait_timeout()`` a Write or a TLS handshake, and
    ``timed_out()`` which of the two limits ran out.
    ``failed_login_delay`` seconds pass before a failed login is answered.
    Messages are read ``chunk_size`` octets at a time, one chunk ahead of the
    one being sent: a session streaming a big message holds about three
    chunks. Messages of at most ``quick_read_size`` octets are opened and read
    with one ``quick`` ``Call``, and so is each further chunk of a big message
    if ``chunk_size`` is at most ``quick_read_size`` (0: never; for storage
    where even a small read may block, such as a network file system).
    Call ``release()`` when the connection ends,
    however it ends. ``octets_in`` and ``octets_out`` count what was read
    from the client and what the binding wrote (a ``Write`` counts once
    ``step()`` is called after it).
    """

    def __init__(
        self,
        session: ServerSession,
        backend: BackendProtocol,
        *,
        failed_login_delay: float = 2.0,
        autologout: float = 600.0,
        login_timeout: float = 60.0,
        chunk_size: int = 1 << 16,
        quick_read_size: int = 1 << 16,
    ) -> None:
        self.session = session
        self.backend = backend
        self.failed_login_delay = failed_login_delay
        self.autologout = autologout
        self.login_timeout = login_timeout
        self.chunk_size = chunk_size
        self.quick_read_size = quick_read_size
        self.maildrop: MaildropProtocol | None = None
        self.close_reason: str | None = None
        self.octets_in = 0
        self.octets_out = 0
        self._writing = 0  # the size of the Write given out last, counted when step() returns
        self._steps: Generator[ServerInstruction, Any, None] | None = None
        self._idle_since: float | None = None  # when the READs in a row began
        self._login_deadline: float | None = None  # set by the first wait
        self._logged_in = False  # past AUTHORIZATION: only the autologout applies
        self._expiring = "autologout"  # the limit the last timeout given out was
        self._handshaking = False  # a StartTls was given out and not yet answered
        # Answers not yet written: the answers to pipelined commands go out
        # together, in writes of up to about chunk_size octets.
        self._unwritten: list[bytes] = []
        self._unwritten_size = 0

    @property
    def in_tls_handshake(self) -> bool:
        """Whether the binding is in a TLS handshake: the ``StartTls`` it was given, or
        implicit TLS (a session that starts as TLS, before the first ``step()``)."""
        if self._steps is None:
            return self.session.connection.tls_active
        return self._handshaking

    def abandoned(self, call: Call, value: Any) -> None:
        """A ``Call`` finished after the binding gave up on the session (it was cancelled).

        If it opened the maildrop, the maildrop is kept so that ``release()``
        frees its lock; any other result is dropped.
        """
        if call.function == self.backend.open and self.maildrop is None:
            self.maildrop = value

    def release(self) -> None:
        """Release the maildrop lock (idempotent). Commits nothing."""
        maildrop, self.maildrop = self.maildrop, None
        if maildrop is not None:
            maildrop.close()

    def step(
        self, value: Any = None, error: BaseException | None = None
    ) -> ServerInstruction | None:
        """The next instruction, or ``None`` when the session is over.

        Pass the result of the previous instruction (the bytes read, the
        value a ``Call`` returned) as ``value``, or the exception a ``Call``
        raised as ``error``. This is ``run()`` for a binding's loop.
        """
        if self._steps is None:
            self._steps = self.run()
            value = None
        if self._writing:
            self.octets_out += self._writing
            self._writing = 0
        try:
            steps = self._steps
            instruction = steps.send(value) if error is None else steps.throw(error)
        except StopIteration:
            return None
        if instruction is not READ:
            self._idle_since = None  # a command came in: the autologout timer starts again
            if type(instruction) is Write:
                self._writing = len(instruction.data)
        return instruction

    def read_timeout(self, now: float) -> float:
        """Seconds the READ that ``step()`` just returned may wait (0.0: time is up).

        RFC 1939 section 3: receiving a command resets the autologout timer;
        receiving a byte does not. So the READs in a row (a command arriving
        in pieces) share one deadline, ``autologout`` seconds after the first:
        a client dripping a byte now and then is still logged out. Before
        login the login deadline comes first if it is sooner (see
        ``wait_timeout``). ``now`` is any clock in seconds that does not go
        back, the same at every call.
        """
        if self._idle_since is None:
            self._idle_since = now
        left = self._idle_since + self.autologout - now
        if self._logged_in:  # the common case, once per READ: kept short
            return left if left > 0.0 else 0.0
        return self._bounded(left, now)

    def wait_timeout(self, now: float) -> float:
        """Seconds a ``Write`` or a TLS handshake may take (0.0: time is up).

        ``autologout`` once logged in: a client that stops reading must not
        hold its maildrop for ever. Before that, what is left of
        ``login_timeout``, counted from the first call to this method or
        ``read_timeout()``: a binding asks before the implicit TLS handshake
        or the greeting, so the clock starts as the connection does. The
        login time is not reset by commands: a client sending NOOP now and
        then must not keep a connection that never logs in.
        """
        if self._logged_in:  # the common case, once per write: kept short
            return self.autologout
        return self._bounded(self.autologout, now)

    def timed_out(self) -> str:
        """The binding gave up waiting: the reason to log, also set as ``close_reason``.

        ``"login-timeout"`` if the login deadline was the limit of the wait
        that ran out, else ``"autologout"``. Either way nothing is deleted
        (RFC 1939 section 3: no UPDATE state).
        """
        self.close_reason = self._expiring
        return self._expiring

    def _bounded(self, left: float, now: float) -> float:
        """Until login: ``left``, or the login time left if that is less; never negative."""
        if self.session.state is State.AUTHORIZATION:
            if self._login_deadline is None:
                self._login_deadline = now + self.login_timeout
            login_left = self._login_deadline - now
            if login_left < left:
                self._expiring = "login-timeout"
                return max(0.0, login_left)
        else:
            self._logged_in = True
        self._expiring = "autologout"
        return max(0.0, left)

    def _queue(self, data: bytes) -> Write | None:
        """Add ``data`` to the answers to write; a ``Write`` once a chunk's worth waits."""
        if data:
            self._unwritten.append(data)
            self._unwritten_size += len(data)
        return self._flush() if self._unwritten_size >= self.chunk_size else None

    def _flush(self) -> Write | None:
        """A ``Write`` of every answer not yet written (``None`` if there is none)."""
        unwritten = self._unwritten
        if not unwritten:
            return None
        data = unwritten[0] if len(unwritten) == 1 else b"".join(unwritten)
        self._unwritten = []
        self._unwritten_size = 0
        return Write(data)

    def run(self) -> Generator[ServerInstruction, Any, None]:
        """The session, as instructions for the binding; ends at ``CloseConnection``.

        Answers are written before every READ, wait and handshake, so a
        client never waits for an answer the server holds; the answers to
        commands that were pipelined go out together.
        """
        session = self.session
        failures = 0
        while True:
            request = session.next_request()
            out = session.data_to_send()
            if session.failed_logins > failures:
                failures = session.failed_logins
                if self.failed_login_delay > 0:
                    # Slow password guessing down: the -ERR comes late.
                    # Answers held back from earlier commands go out first.
                    if (write := self._flush()) is not None:
                        yield write
                    yield Sleep(self.failed_login_delay)
            if isinstance(request, CloseConnection):
                # The session is over: release the maildrop before the last
                # answer (the +OK to QUIT) goes out, so that a client which
                # reconnects at once finds it free, not [IN-USE].
                self.release()
            if (write := self._queue(out)) is not None:
                yield write
            if request is PAUSED:
                continue  # the output is taken: answer the next pipelined command
            # Everything but a message read waits (for the client, a worker
            # thread, a handshake, the close): what is held goes out first. A
            # small message's read is immediate, so its answer can join the
            # next ones; _read() flushes before a read that is not.
            if not isinstance(request, ReadMessage) and (write := self._flush()) is not None:
                yield write
            if request is NEED_DATA:
                data = yield READ
                self.octets_in += len(data)
                session.receive_data(data)
            elif isinstance(request, CloseConnection):
                self.close_reason = request.reason
                return
            elif isinstance(request, StartTls):
                self._handshaking = True
                yield request
                self._handshaking = False
                session.tls_established()
            else:
                yield from self._perform(request)

    def _perform(
        self,
        request: CheckPassword
        | LookupSecret
        | CheckToken
        | OpenMaildrop
        | ReadMessage
        | CommitDeletions,
    ) -> Generator[ServerInstruction, Any, None]:
        session = self.session
        backend = self.backend
        if isinstance(request, CheckPassword):
            ok = yield Call(backend.check_password, (request.username, request.password))
            session.password_checked(bool(ok))
        elif isinstance(request, LookupSecret):
            yield Call(_answer_secret, (backend.secret, session, request.username))
        elif isinstance(request, CheckToken):
            ok = yield Call(backend.check_token, (request.username, request.token))
            session.token_checked(bool(ok))
        elif isinstance(request, OpenMaildrop):
            try:
                maildrop = yield Call(backend.open, (request.username,))
            except MaildropLockedError:
                session.maildrop_locked()
            except (MaildropError, OSError):
                # Storage that cannot be read (permissions, a full disk...)
                # is a temporary failure for the client: -ERR [SYS/TEMP].
                session.maildrop_failed()
            else:
                self.maildrop = maildrop
                session.maildrop_opened(maildrop.messages)
        elif isinstance(request, ReadMessage):
            yield from self._read(request)
        else:
            maildrop = self.maildrop
            assert maildrop is not None
            try:
                failed = yield Call(maildrop.commit, (request.messages,))
            except (MaildropError, OSError):
                failed = request.messages
            session.deletions_committed(failed)

    def _read(self, request: ReadMessage) -> Generator[ServerInstruction, Any, None]:
        session = self.session
        maildrop = self.maildrop
        assert maildrop is not None
        # A chunk of a big message costs what a small message does to read.
        chunk_quick = self.chunk_size <= self.quick_read_size
        try:
            size = maildrop.messages[request.msg - 1].size
            quick = size <= self.quick_read_size
            if not quick and (write := self._flush()) is not None:
                yield write  # the answers so far do not wait for a worker thread
            chunks, chunk, ahead = yield Call(
                _open_message, (maildrop, request.msg, self.chunk_size), quick=quick
            )
            # One chunk is read ahead of the one being sent, so the end of
            # the message is known without a call that only finds it.
            while chunk is not None:
                more = session.message_data(chunk)
                if (write := self._queue(session.data_to_send())) is not None:
                    yield write
                if not more:
                    break
                chunk = ahead
                if chunk is not None:
                    if not chunk_quick and (write := self._flush()) is not None:
                        yield write
                    ahead = yield Call(_next_chunk, (chunks,), quick=chunk_quick)
        except (MaildropError, OSError):
            session.message_failed()
        else:
            session.message_end()
