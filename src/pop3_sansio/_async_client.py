"""The POP3 client API for async bindings, written once over ``ClientSession``.

``AsyncClient`` holds every method a user calls (``login``, ``stat``,
``retr``...) and the rules for using one connection safely; an async binding
(asyncio, trio) subclasses it and supplies only the I/O: ``open()``, ``_do()``
(carry out one ``Write``/``READ``/``StartTls`` instruction), ``close()`` and
``aclose()``. No event loop is imported here.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Generic, TypeVar

from ._capabilities import Capabilities
from ._client_guard import ClientGuard
from ._client_session import Chunk, ClientSession, Instruction
from ._errors import Pop3TimeoutError
from ._events import Greeting
from ._net import TlsMode

if TYPE_CHECKING:  # pragma: no cover
    from ssl import SSLContext

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(abc.ABC):
    """An async POP3 client; a binding's ``connect()`` returns a subclass.

    Use it as ``async with connect(...) as client:``. Leaving the block
    normally sends QUIT, which commits deletions; leaving it with an exception
    closes the connection without QUIT, so nothing is deleted (RFC 1939
    section 6). One operation at a time: an operation that is cancelled,
    times out, breaks, or whose message is not read to the end leaves the
    connection unusable, and every later call raises ``ConnectionError``
    (the rules are ``ClientGuard``'s, shared with ``pop3_sync.Client``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: TlsMode,
        ssl_context: SSLContext | None,
        timeout: float | None,
        allow_plaintext_login: bool,
        max_message_size: int | None = None,
    ) -> None:
        if tls not in ("implicit", "starttls", None):
            raise ValueError(f"tls must be 'implicit', 'starttls' or None, not {tls!r}")
        self.host = host
        self.port = port
        self.tls: TlsMode = tls
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.allow_plaintext_login = allow_plaintext_login
        self.max_message_size = max_message_size
        self._session: ClientSession | None = None
        self._guard = ClientGuard(
            self.close, timeouts=self._timeouts, timeout_error=self._timeout_error
        )

    _timeouts: tuple[type[BaseException], ...] = (TimeoutError,)
    """What the binding's waits raise when they run out (``network_error`` maps them)."""
    _timeout_error: type[Pop3TimeoutError] = Pop3TimeoutError
    """What a timeout is raised as."""

    def _network_error(self, exc: BaseException, operation: str) -> BaseException:
        """``exc`` as the client raises it (see ``ClientGuard.network_error``)."""
        return self._guard.network_error(
            exc, operation=operation, host=self.host, port=self.port, timeout=self.timeout
        )

    # --- what a binding supplies -------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> Greeting:
        """Connect, read the greeting, and do STLS if asked; return the greeting."""

    @abc.abstractmethod
    async def _do(self, instruction: Instruction) -> None:
        """Carry out one ``Write``, ``READ`` or ``StartTls`` instruction."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection at once, without QUIT (deletions are not committed)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the connection gracefully (TLS close alert first), without QUIT."""

    # --- the session and its rules -------------------------------------------------------

    async def _greet(self, *, peer: object, random_bytes: Callable[[int], bytes]) -> Greeting:
        """Start the session on a fresh connection to ``peer`` (its socket address).

        Reads the greeting and does STLS if asked; see ``ClientGuard.new_session``
        for when a password may go in the clear.
        """
        self._session = self._guard.new_session(
            tls=self.tls,
            allow_plaintext_login=self.allow_plaintext_login,
            peer=peer,
            random_bytes=random_bytes,
            max_message_size=self.max_message_size,
        )
        return await self._run(self._session.start(starttls=self.tls == "starttls"))

    @property
    def session(self) -> ClientSession:
        """The sans-IO session (greeting, connection state, capabilities cache)."""
        if self._session is None:
            raise RuntimeError("not connected: use 'async with connect(...)' or 'await open()'")
        return self._session

    async def __aenter__(self) -> AsyncClient:
        try:
            await self.open()
        except BaseException:
            # ``async with`` calls no __aexit__ when __aenter__ fails.
            self._guard.open_failed()
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        plan = self._guard.exit_plan(exc_type, self._session)
        if plan == "close":
            await self.aclose()  # no QUIT: nothing marked is deleted
            self._guard.closed_without_quit(exc_type, self._session)
            return
        try:
            await self.quit()  # closes, however it ends
        except ConnectionError:
            if plan == "commit":
                raise  # whether the deletions were made is unknown

    async def _run(self, op: Generator[Instruction, None, T]) -> T:
        """Run an operation that yields no message data to completion."""
        operation = _Operation(self, op)
        async for _ in operation:  # pragma: no cover - these operations yield no chunks
            raise AssertionError("unexpected message data")
        return operation.result()

    # --- the POP3 API ------------------------------------------------------------------

    async def capa(self, *, refresh: bool = False) -> Capabilities | None:
        """The server's capabilities, or ``None`` if it does not support CAPA."""
        return await self._run(self.session.capa(refresh=refresh))

    async def login(
        self,
        username: str,
        password: str | None = None,
        *,
        token: str | None = None,
        mechanism: str | None = None,
    ) -> str:
        """Authenticate with the strongest safe method; see ``ClientSession.login``."""
        return await self._run(
            self.session.login(username, password, token=token, mechanism=mechanism)
        )

    async def apop(self, username: str, password: str) -> str:
        """Authenticate with APOP (RFC 1939 section 7)."""
        return await self.login(username, password, mechanism="APOP")

    async def auth(
        self,
        mechanism: str,
        username: str = "",
        *,
        password: str | None = None,
        token: str | None = None,
    ) -> str:
        """Authenticate with one SASL mechanism (RFC 5034)."""
        return await self._run(
            self.session.auth(mechanism, username, password=password, token=token)
        )

    async def stat(self) -> tuple[int, int]:
        """``(message count, total size in octets)``."""
        return await self._run(self.session.stat())

    async def list(self, msg: int | None = None) -> dict[int, int]:
        """``{msgno: size}``."""
        return await self._run(self.session.list(msg))

    async def uidl(self, msg: int | None = None) -> dict[int, str]:
        """``{msgno: unique id}``."""
        return await self._run(self.session.uidl(msg))

    def iter_retr(self, msg: int) -> AsyncIterator[bytes]:
        """Stream message ``msg``: ``async for chunk in client.iter_retr(1)``.

        Read it to the end: leaving the loop early makes the connection
        unusable (the rest of the message is still on its way), and it is
        closed without QUIT at the next call or at the end of the block. A
        body over ``session.body_limit`` of its LIST size (``LIST msg`` goes
        out with the RETR unless ``list()`` was called) raises
        ``MessageTooLargeError``; so do ``retr``, ``retr_to``, ``top`` and ``retr_many``.
        """
        return _Operation(self, self.session.retr(msg))

    async def retr(self, msg: int) -> bytes:
        """Message ``msg`` as bytes: CRLF line ends, stuffing removed."""
        return b"".join([chunk async for chunk in self.iter_retr(msg)])

    async def retr_to(self, msg: int, file: BinaryIO) -> int:
        """Write message ``msg`` to ``file`` as it arrives; return the octets written."""
        total = 0
        async for chunk in self.iter_retr(msg):
            file.write(chunk)
            total += len(chunk)
        return total

    async def top(self, msg: int, lines: int) -> bytes:
        """The headers and first ``lines`` body lines of ``msg``."""
        return b"".join([chunk async for chunk in _Operation(self, self.session.top(msg, lines))])

    def retr_many(
        self, msgs: Iterable[int], *, delete: bool = False
    ) -> AsyncIterator[tuple[int, bytes]]:
        """``(msgno, message)`` for each of ``msgs``, pipelined when the server allows.

        With ``delete``, each message is marked for deletion once it has been
        taken (committed at QUIT). CAPA (whether the server pipelines) and
        LIST (the sizes) go out first when not known, at the first step of
        the loop, not at this call. Read it to the end: leaving the loop early
        makes the connection unusable.
        """
        return _RetrMany(self, list(msgs), delete)

    async def dele(self, msg: int) -> str:
        """Mark ``msg`` for deletion; it is removed only by QUIT."""
        return await self._run(self.session.dele(msg))

    async def rset(self) -> str:
        """Unmark every message marked for deletion."""
        return await self._run(self.session.rset())

    async def noop(self) -> str:
        """``NOOP``."""
        return await self._run(self.session.noop())

    async def utf8(self) -> str:
        """``UTF8`` (RFC 6856): user names, passwords and messages may then be UTF-8."""
        return await self._run(self.session.utf8())

    async def quit(self) -> str:
        """``QUIT``: commits deletions in TRANSACTION state, then closes."""
        if self._session is None:
            return ""
        try:
            return await self._run(self.session.quit())
        finally:
            # A graceful close (TLS close alert) only on a connection in step.
            if self._guard.broken is None:
                await self.aclose()
            else:
                self.close()


# Operations are iterator classes rather than async generators: an async
# generator abandoned half-way would be finalised later, in another task
# (trio warns about it); these need no finalising. An abandoned operation
# leaves the guard busy, so the next call fails (ClientGuard.begin).


class _Operation(AsyncIterator[bytes], Generic[T]):
    """Runs one sans-IO operation, handing out the message chunks it produces."""

    def __init__(self, client: AsyncClient, op: Generator[Instruction, None, T]) -> None:
        self._client = client
        self._op = op
        self._started = False
        self._wrote = False  # something went out: a failure now leaves it out of step
        self._done = False
        self._result: list[T] = []

    def result(self) -> T:
        """The operation's return value, once the iteration has ended."""
        return self._result[0]

    async def __anext__(self) -> bytes:
        return await self.advance(None)

    async def advance(self, parts: list[bytes] | None) -> bytes:
        """The next chunk; with ``parts``, collect chunks there up to an empty one.

        Raises ``StopAsyncIteration`` once the operation is over. ``retr_many``
        collects a whole message in one call: one coroutine a message, not
        one a chunk.
        """
        if self._done:
            raise StopAsyncIteration
        client = self._client
        try:
            if not self._started:
                client._guard.begin()
                self._started = True
                instruction = next(self._op)
            else:
                instruction = self._op.send(None)
            while True:
                if isinstance(instruction, Chunk):
                    data = instruction.data
                    if parts is None or not data:
                        return data
                    parts.append(data)
                else:
                    self._wrote = True
                    await client._do(instruction)
                instruction = self._op.send(None)
        except StopIteration as stop:
            self._done = True
            client._guard.finished()
            self._result.append(stop.value)
            raise StopAsyncIteration from None
        except BaseException as exc:
            self._done = True
            error = client._network_error(exc, getattr(self._op, "__name__", "operation"))
            if self._started:  # else refused by begin()
                client._guard.failed(error, wrote=self._wrote, session=client.session)
            if error is exc:
                raise
            raise error from exc


class _RetrMany(AsyncIterator[tuple[int, bytes]]):
    """``retr_many``: whole messages from the chunks of one pipelined operation."""

    def __init__(self, client: AsyncClient, order: list[int], delete: bool) -> None:
        self._client = client
        self._order = order
        self._delete = delete
        self._chunks: _Operation[None] | None = None
        self._index = 0

    async def __anext__(self) -> tuple[int, bytes]:
        if self._chunks is None:
            client = self._client
            self._chunks = _Operation(
                client, client.session.retr_many(self._order, delete=self._delete)
            )
        parts: list[bytes] = []
        await self._chunks.advance(parts)  # up to the end of one message
        n = self._order[self._index]
        self._index += 1
        return n, b"".join(parts)
