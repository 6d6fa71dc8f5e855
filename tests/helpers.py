"""Shared test utilities: a fake link between the two roles, three-way feeding, the one
fake backend, and bounded waits.

``Link`` joins a ``ClientConnection`` and a ``ServerConnection`` the way h11's
tests do: what one side's ``send`` returns is fed to the other side's
``receive_data``, and both directions are recorded byte for byte.

``feed_three_ways`` feeds the same bytes to fresh connections whole, byte by
byte, in 3-octet chunks, and followed by trailing bytes, and checks that every
split gives the same events (adjacent ``Data`` merged) and the same error.

``FakeBackend`` is the storage every server test uses: the ``Backend`` protocol
for ``SessionDriver`` and the servers, and ``serve()`` for a bare
``ServerSession``. Test modules import what they share from here (or take
fixtures from conftest.py), never from each other.
"""

from __future__ import annotations

import hmac
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from pop3_sansio import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    ConnectionClosed,
    Data,
    EndOfResponse,
    Err,
    Event,
    Greeting,
    Ok,
    Pass,
    ProtocolError,
    Response,
    SaslCancel,
    ServerConnection,
    State,
    UnknownCommand,
    User,
)
from pop3_sansio._commands import multiline_on_ok
from pop3_sansio.codec import message_size
from pop3_sansio.sasl import CheckPassword, CheckToken, LookupSecret
from pop3_sansio.server import (
    CloseConnection,
    CommitDeletions,
    MaildropError,
    MaildropLockedError,
    MessageInfo,
    OpenMaildrop,
    ReadMessage,
    Request,
    ServerSession,
    StartTls,
)

Connection = ClientConnection | ServerConnection


def merge_data(events: Iterable[Event]) -> list[Event]:
    """Join adjacent ``Data`` events: how a body was chunked is not part of the result."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def check_event_types(event: Event) -> None:
    """Fields promised as bytes are ``bytes`` exactly, never bytearray or memoryview."""
    for name in ("data", "line", "initial_response"):
        value = getattr(event, name, None)
        if value is not None:
            assert type(value) is bytes, (event, name, type(value))
    if isinstance(event, Data):
        assert event.data, "empty Data events must not be produced"


def drain(conn: Connection) -> list[Event]:
    """Every event ``conn`` has ready, until ``NEED_DATA`` or ``PAUSED`` (not merged)."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        check_event_types(event)
        events.append(event)
        if isinstance(event, ConnectionClosed):
            return events  # it would come again on every further call


@dataclass(frozen=True)
class ErrorInfo:
    """The comparable part of a ``ProtocolError``."""

    type: type
    reason: str
    state: str | None
    line: bytes | None

    @classmethod
    def of(cls, exc: ProtocolError) -> ErrorInfo:
        return cls(type(exc), exc.reason, exc.state, exc.line)


Responder = Callable[[ServerConnection, Event], None]


def answer_generically(server: ServerConnection, event: Event) -> None:
    """A server that says -ERR to what it must refuse and +OK (empty body) otherwise."""
    if isinstance(event, UnknownCommand | SaslCancel):
        server.send(Err("no"))
        return
    server.send(Ok("yes"))
    if multiline_on_ok(event):
        server.send(EndOfResponse())


def run(
    conn: Connection,
    chunks: Iterable[bytes],
    *,
    respond: Responder | None = None,
    close: bool = False,
) -> tuple[list[Event], ErrorInfo | None]:
    """Feed ``chunks`` one by one, reading events after each; stop at the first error.

    For a server, ``respond`` answers each command as it comes so reading goes on.
    Returns the merged events and the error, if one was raised.
    """
    events: list[Event] = []

    def pump() -> None:
        while True:
            event = conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            check_event_types(event)
            events.append(event)
            if isinstance(event, ConnectionClosed):
                assert conn.next_event() == event  # it comes again on every call
                return
            if respond is not None and isinstance(conn, ServerConnection):
                respond(conn, event)

    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            pump()
        if close:
            conn.receive_data(b"")
            pump()
    except ProtocolError as exc:
        return merge_data(events), ErrorInfo.of(exc)
    return merge_data(events), None


def splits(data: bytes) -> dict[str, list[bytes]]:
    """The ways to cut ``data`` that every reader must treat alike."""
    return {
        "whole": [data] if data else [],  # b"" would mean "closed"
        "bytewise": [data[i : i + 1] for i in range(len(data))],
        "threes": [data[i : i + 3] for i in range(0, len(data), 3)],
    }


def feed_three_ways(
    make: Callable[[], Connection],
    data: bytes,
    *,
    respond: Responder | None = None,
    trailing: bytes | None = None,
    close: bool = False,
) -> tuple[list[Event], ErrorInfo | None]:
    """Feed ``data`` to fresh connections from ``make`` whole, byte by byte, in threes,
    and (when no error is expected) followed by ``trailing``; assert that all agree.

    ``trailing`` defaults to the start of a further line without its line end, so
    it must produce no event and stay buffered. Returns ``(events, error)``.
    """
    results = {
        name: run(make(), chunks, respond=respond, close=close)
        for name, chunks in splits(data).items()
    }
    events, error = results["whole"]
    for name, result in results.items():
        assert result == (events, error), f"{name} differs from whole"
    if error is None and not close:
        conn = make()
        if trailing is None:
            trailing = b"+OK tra" if isinstance(conn, ClientConnection) else b"NOO"
        with_tail = run(conn, [data + trailing], respond=respond)
        assert with_tail == (events, None), "trailing data changed the events"
        assert conn.buffered == len(trailing)
    return events, error


# --- ready-made connections ------------------------------------------------------------


GREETING_LINE = b"+OK POP3 ready\r\n"


def client_after_greeting(greeting: bytes = GREETING_LINE, **kwargs: object) -> ClientConnection:
    """A client that has read the greeting (AUTHORIZATION)."""
    client = ClientConnection(**kwargs)  # type: ignore[arg-type]
    client.receive_data(greeting)
    assert isinstance(client.next_event(), Greeting)
    assert client.next_event() is NEED_DATA
    return client


def client_logged_in(**kwargs: object) -> ClientConnection:
    """A client in TRANSACTION after USER/PASS."""
    client = client_after_greeting(**kwargs)
    client.send(User("alice"))
    client.send(Pass("secret"))
    client.receive_data(b"+OK\r\n+OK\r\n")
    assert drain(client) == [Ok(), Ok()]
    assert client.our_state is State.TRANSACTION
    return client


def server_after_greeting(**kwargs: object) -> ServerConnection:
    """A server that has sent its greeting (AUTHORIZATION)."""
    server = ServerConnection(**kwargs)  # type: ignore[arg-type]
    assert server.send(Greeting("POP3 ready")) == GREETING_LINE
    return server


def server_logged_in(**kwargs: object) -> ServerConnection:
    """A server in TRANSACTION after USER/PASS."""
    server = server_after_greeting(**kwargs)
    server.receive_data(b"USER alice\r\nPASS secret\r\n")
    assert server.next_event() == User("alice")
    server.send(Ok())
    assert server.next_event() == Pass("secret")
    server.send(Ok())
    assert server.our_state is State.TRANSACTION
    return server


class Link:
    """A client and a server joined back to back, with a transcript of both directions."""

    def __init__(
        self,
        greeting: Greeting | None = None,
        *,
        client: ClientConnection | None = None,
        server: ServerConnection | None = None,
    ) -> None:
        self.client = client or ClientConnection()
        self.server = server or ServerConnection()
        self.to_server = bytearray()  # everything the client wrote
        self.to_client = bytearray()  # everything the server wrote
        if greeting is not None:
            self.server_send(greeting)
            events = self.client_events()
            assert len(events) == 1 and isinstance(events[0], Greeting)
            self.greeting = events[0]

    def client_send(self, *commands: Event) -> bytes:
        """Send commands in one write (pipelined) and deliver them to the server."""
        data = b"".join(self.client.send(c) for c in commands)  # type: ignore[arg-type]
        assert type(data) is bytes
        self.to_server += data
        self.server.receive_data(data)
        return data

    def server_send(self, *responses: Response) -> bytes:
        """Send responses in one write and deliver them to the client."""
        data = b"".join(self.server.send(r) for r in responses)
        assert type(data) is bytes
        self.to_client += data
        if data:
            self.client.receive_data(data)
        return data

    def server_events(self) -> list[Event]:
        return drain(self.server)

    def server_event(self) -> Event:
        """The one event the server has next (a command, not a sentinel)."""
        event = self.server.next_event()
        assert event is not NEED_DATA and event is not PAUSED
        check_event_types(event)
        return event

    def client_events(self) -> list[Event]:
        return merge_data(drain(self.client))

    def exchange(self, command: Event, *responses: Response) -> list[Event]:
        """Client sends ``command``; the server reads it (it must arrive unchanged) and
        answers with ``responses``; return what the client made of the answer."""
        self.client_send(command)
        assert self.server_event() == command
        self.server_send(*responses)
        return self.client_events()


def crlf(message: bytes) -> bytes:
    """What RETR must hand back for ``message``: CRLF line ends, a final line end."""
    out = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") else out + b"\r\n"


# --- the one fake backend ----------------------------------------------------------------


MESSAGES = [
    b"Subject: one\n\nfirst\n",
    b"Subject: two\nX: y\n\nline 1\n.dot line\nline 3\nline 4\n",
    b"Subject: three\r\n\r\nno final newline",
]


@dataclass
class FakeBackend:
    """Users, tokens and one in-memory maildrop, with knobs to make storage fail.

    It is a ``BackendProtocol`` (``check_password``, ``secret``, ``check_token``,
    ``open``) for ``SessionDriver`` and the servers; ``serve()`` answers a bare
    ``ServerSession``'s requests through the same methods. Every user sees
    ``messages``; unique ids are ``uid0``, ``uid1``... The knobs:

    - ``locked``: ``open`` raises ``MaildropLockedError`` (``-ERR [IN-USE]``);
    - ``open_fails``: ``open`` raises ``error``;
    - ``commit_fails``: ``commit`` reports these messages as not removed;
      ``commit_raises``: ``commit`` raises ``error``;
    - ``read_fails_after``: a read raises ``error`` after that many chunks (empty ones too);
    - ``chunk``: a read yields pieces of this size whatever size is asked
      (``None``: the size asked);
    - ``empty_chunks``: a read yields that many ``b""`` first (a storage may).

    ``error`` is what failing storage raises: ``MaildropError``, or an
    ``OSError`` such as ``PermissionError``. ``opened``/``closed`` count
    maildrops opened and released; ``committed`` lists each commit's messages
    (whether or not it failed); ``requests`` what ``serve()`` was asked.
    """

    messages: list[bytes] = field(default_factory=lambda: list(MESSAGES))
    users: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    tokens: dict[str, str] = field(default_factory=lambda: {"tok-1": "alice"})
    locked: bool = False
    open_fails: bool = False
    commit_fails: tuple[int, ...] = ()
    commit_raises: bool = False
    read_fails_after: int | None = None
    chunk: int | None = None
    empty_chunks: int = 0
    error: type[Exception] = MaildropError
    opened: int = 0
    closed: int = 0
    committed: list[tuple[int, ...]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    # pop3_sansio.server.BackendProtocol and its maildrop.

    def check_password(self, username: str, password: str) -> bool:
        known = self.users.get(username)
        return known is not None and hmac.compare_digest(known, password)

    def secret(self, username: str) -> str | None:
        return self.users.get(username)

    def check_token(self, username: str, token: str) -> bool:
        return self.tokens.get(token) == username

    def open(self, username: str) -> FakeMaildrop:
        if self.locked:
            raise MaildropLockedError(username)
        if self.open_fails:
            raise self.error(username)
        self.opened += 1
        return FakeMaildrop(self)

    # A bare ServerSession, answered through the methods above.

    def serve(self, session: ServerSession) -> Request | None:
        """Answer requests until NEED_DATA, StartTls or CloseConnection; return the last."""
        while True:
            request = session.next_request()
            if request is NEED_DATA:
                return None
            assert request is not PAUSED
            self.requests.append(request)
            if isinstance(request, StartTls | CloseConnection):
                return request
            self._answer(session, request)

    def _answer(self, session: ServerSession, request: Request) -> None:
        if isinstance(request, CheckPassword):
            session.password_checked(self.check_password(request.username, request.password))
        elif isinstance(request, LookupSecret):
            session.secret_found(self.secret(request.username))
        elif isinstance(request, CheckToken):
            session.token_checked(self.check_token(request.username, request.token))
        elif isinstance(request, OpenMaildrop):
            try:
                maildrop = self.open(request.username)
            except MaildropLockedError:
                session.maildrop_locked()
            except (MaildropError, OSError):
                session.maildrop_failed()
            else:
                session.maildrop_opened(maildrop.messages)
        elif isinstance(request, ReadMessage):
            try:
                for piece in FakeMaildrop(self).read(request.msg, 7):
                    if not session.message_data(piece):
                        break  # TOP has what it needs
            except (MaildropError, OSError):
                session.message_failed()
            else:
                session.message_end()
        else:
            assert isinstance(request, CommitDeletions)
            try:
                failed: Sequence[int] = FakeMaildrop(self).commit(request.messages)
            except (MaildropError, OSError):
                failed = request.messages
            session.deletions_committed(failed)


class FakeMaildrop:
    """What ``FakeBackend.open`` returns: a snapshot of its messages, read and committed
    as the backend's knobs say."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.messages = [
            MessageInfo(message_size(m), f"uid{i}") for i, m in enumerate(backend.messages)
        ]

    def read(self, msg: int, chunk_size: int) -> Iterator[bytes]:
        backend = self.backend
        data = backend.messages[msg - 1]
        size = backend.chunk or chunk_size
        pieces = [b""] * backend.empty_chunks + [
            data[i : i + size] for i in range(0, len(data), size)
        ]
        for n, piece in enumerate(pieces):
            if backend.read_fails_after is not None and n >= backend.read_fails_after:
                raise backend.error(f"message {msg} unreadable")
            yield piece

    def commit(self, msgs: Sequence[int]) -> list[int]:
        backend = self.backend
        backend.committed.append(tuple(msgs))
        if backend.commit_raises:
            raise backend.error("read-only")
        return [m for m in msgs if m in backend.commit_fails]

    def close(self) -> None:
        self.backend.closed += 1


# --- waiting on other threads, bounded ----------------------------------------------------


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, explain: Callable[[], str] = str
) -> None:
    """Return once ``predicate()`` is true; fail the test if it is not within ``timeout`` s.

    For what another thread or task does in its own time (a log line written
    after a session ends): the timeout only bounds a hang, it is never the
    thing a test asserts. ``explain()`` adds to the failure message.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not true within {timeout} s: {explain()}"
        time.sleep(0.01)


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 10.0) -> str:
    """The first captured log message containing ``text``, once there is one."""

    def found() -> str | None:
        return next((m for r in list(caplog.records) if text in (m := r.getMessage())), None)

    wait_for(found, timeout, lambda: f"{text!r} not logged: {caplog.text}")
    message = found()
    assert message is not None
    return message


_LOG_FIELD = re.compile(r"(\w+)=(<(?:[^>\\]|\\.)*>|\S*)(?: |$)")


def log_fields(message: str) -> tuple[str, dict[str, str]]:
    """A server log line (docs/logging.md) as its event and its ``key=value`` fields.

    ``user=<...>`` keeps its brackets; ``reason`` takes the rest of the line. Raises
    ``AssertionError`` for a line that does not have the documented shape.
    """
    event, sep, rest = message.partition(": ")
    assert sep, message
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        if rest.startswith("reason=", pos):
            fields["reason"] = rest[pos + len("reason=") :]
            break
        match = _LOG_FIELD.match(rest, pos)
        assert match is not None, (message, rest[pos:])
        assert match.group(1) not in fields, message
        fields[match.group(1)] = match.group(2)
        pos = match.end()
    return event, fields


def server_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages the servers logged (``pop3.server``), in order."""
    return [r.getMessage() for r in list(caplog.records) if r.name == "pop3.server"]


def fake_server(
    answers: list[bytes], tail: list[bytes] | None = None
) -> tuple[socket.socket, threading.Thread]:
    """A listener on 127.0.0.1 that greets, then sends the next of ``answers`` per command read.

    After the last answer it reads once more (until the client closes); what that read
    returns is appended to ``tail`` when given (``b""``: the client sent nothing more).
    """
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(b"+OK hi\r\n")
            for answer in answers:
                conn.recv(1024)
                conn.sendall(answer)
            last = conn.recv(1024)  # until the client closes
            if tail is not None:
                tail.append(last)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread
