"""The trio POP3 client: pop3_sansio's ClientSession bound to a ``trio.abc.Stream``."""

from __future__ import annotations

import ipaddress
import math
import os
import ssl
from collections.abc import AsyncIterator, Generator, Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import BinaryIO, Generic, NoReturn, TypeVar

import trio

import pop3_sansio as p
from pop3_sansio import (
    READ,
    Capabilities,
    Chunk,
    ClientSession,
    Instruction,
    StartTls,
    TlsMode,
    Write,
    default_port,
)

__all__ = ["BrokenConnectionError", "Client", "OperationTimeoutError", "connect"]

T = TypeVar("T")

_RECEIVE_SIZE = 1 << 16
_CLOSE_TIMEOUT = 5.0  # how long a graceful close (TLS close_notify) may take


class OperationTimeoutError(TimeoutError, trio.TooSlowError):
    """A network wait took longer than the client's ``timeout``.

    Both the built-in ``TimeoutError`` (as the other bindings raise) and
    ``trio.TooSlowError`` (as ``trio.fail_after`` raises).
    """


class BrokenConnectionError(ConnectionError, trio.BrokenResourceError):
    """The connection broke (reset, closed under us, or a TLS failure mid-stream).

    Both ``ConnectionError`` (as the other bindings raise) and
    ``trio.BrokenResourceError`` (as trio streams raise).
    """


def connect(
    host: str,
    port: int | None = None,
    *,
    tls: TlsMode = "implicit",
    ssl_context: ssl.SSLContext | None = None,
    timeout: float | None = 60.0,
    allow_plaintext_login: bool = False,
) -> Client:
    """A client for ``host``; use it as ``async with connect(...) as client:``.

    ``tls`` is ``"implicit"`` (port 995), ``"starttls"`` (STLS on port 110;
    refuses to continue if the server does not offer it) or ``None``.
    Certificates and host names are verified with ``ssl_context``, by default
    ``ssl.create_default_context()``. ``timeout`` bounds every network wait
    (``OperationTimeoutError``, a ``TimeoutError`` and a ``trio.TooSlowError``).
    Passwords are never sent in the clear to a non-loopback host unless
    ``allow_plaintext_login`` is true.

    Leaving the ``async with`` block normally sends QUIT, which commits
    deletions; leaving it with an exception (cancellation included) closes
    the connection without QUIT, so nothing is deleted (RFC 1939 section 6).
    """
    return Client(
        host,
        default_port(tls) if port is None else port,
        tls=tls,
        ssl_context=ssl_context,
        timeout=timeout,
        allow_plaintext_login=allow_plaintext_login,
    )


def _raise_mapped(exc: trio.BrokenResourceError) -> NoReturn:
    """Raise what ``exc`` means: the ``ssl`` error behind it, else ``BrokenConnectionError``."""
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        # trio wraps TLS failures (a certificate that does not verify, say);
        # the ssl exception is what callers of every binding catch.
        raise cause.with_traceback(cause.__traceback__) from None
    raise BrokenConnectionError(str(exc) or "connection broken") from exc


class Client:
    """A trio POP3 client; see ``connect``.

    One operation at a time: a client is not meant to be shared by tasks.
    An operation that is cancelled, times out or breaks half-way leaves the
    connection unusable; every later call raises ``ConnectionError``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: TlsMode,
        ssl_context: ssl.SSLContext | None,
        timeout: float | None,
        allow_plaintext_login: bool,
    ) -> None:
        if tls not in ("implicit", "starttls", None):
            raise ValueError(f"tls must be 'implicit', 'starttls' or None, not {tls!r}")
        self.host = host
        self.port = port
        self._tls = tls
        self._context = ssl_context
        self.timeout = timeout
        self._allow_plaintext = allow_plaintext_login
        self._tcp: trio.SocketStream | None = None
        self._stream: trio.abc.Stream | None = None
        self._session: ClientSession | None = None
        self._busy = False
        self._broken: BaseException | None = None

    # --- connecting ------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def _deadline(self) -> AbstractContextManager[trio.CancelScope]:
        return trio.fail_after(math.inf if self.timeout is None else self.timeout)

    async def _wrap_tls(self) -> None:
        assert self._stream is not None
        stream = trio.SSLStream(self._stream, self._ssl(), server_hostname=self.host)
        self._stream = stream
        await stream.do_handshake()

    async def open(self) -> p.Greeting:
        """Connect, read the greeting, and do STLS if asked; return the greeting."""
        implicit = self._tls == "implicit"
        try:
            with self._deadline():
                self._tcp = self._stream = await trio.open_tcp_stream(self.host, self.port)
                if implicit:
                    await self._wrap_tls()
        except BaseException as exc:
            self._broken = exc
            self.close()
            if isinstance(exc, trio.TooSlowError):
                raise OperationTimeoutError("connecting took too long") from exc
            if isinstance(exc, trio.BrokenResourceError):
                _raise_mapped(exc)
            raise
        secure = self._allow_plaintext or self._peer_is_loopback()
        self._session = ClientSession(tls=implicit, secure=secure, random_bytes=os.urandom)
        try:
            return await self._run(self._session.start(starttls=self._tls == "starttls"))
        except BaseException as exc:
            # No session to go on with (a -ERR greeting, STLS not offered...):
            # ``async with`` will not call ``__aexit__``, so close here.
            if self._broken is None:
                self._broken = exc
            self.close()
            raise

    def _peer_is_loopback(self) -> bool:
        assert self._tcp is not None
        try:
            peer = self._tcp.socket.getpeername()
            return ipaddress.ip_address(peer[0]).is_loopback
        except (OSError, TypeError, ValueError, IndexError):
            return False

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._broken is None:
            commits = self._session is not None and self._session.quit_commits
            try:
                await self.quit()  # closes, however it ends
            except ConnectionError:
                if commits:
                    raise  # whether the deletions were made is unknown
        else:
            self.close()  # no QUIT: nothing marked is deleted

    def close(self) -> None:
        """Close the connection at once, without QUIT (deletions are not committed).

        No TLS ``close_notify`` is sent; ``aclose()`` sends one.
        """
        if self._tcp is not None:
            # Closing the socket wakes any task blocked on it (trio raises
            # ClosedResourceError there) and makes the TLS layer unusable.
            self._tcp.socket.close()

    async def aclose(self) -> None:
        """Close the connection gracefully (TLS ``close_notify`` first), without QUIT."""
        stream = self._stream
        if stream is None:
            return
        try:
            with trio.move_on_after(_CLOSE_TIMEOUT):
                await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went first: it is closed either way
        finally:
            self.close()

    @property
    def session(self) -> ClientSession:
        """The sans-IO session (greeting, connection state, capabilities cache)."""
        if self._session is None:
            raise RuntimeError("not connected: use 'async with connect(...)' or 'await open()'")
        return self._session

    # --- the driver -------------------------------------------------------------------

    async def _do(self, instruction: Instruction) -> None:
        """Carry out one I/O instruction of the sans-IO session, within the timeout."""
        stream = self._stream
        assert stream is not None
        try:
            with self._deadline():
                if instruction is READ:
                    data = await stream.receive_some(_RECEIVE_SIZE)
                    self.session.receive_data(data if type(data) is bytes else bytes(data))
                elif isinstance(instruction, Write):
                    await stream.send_all(instruction.data)
                elif isinstance(instruction, StartTls):
                    await self._wrap_tls()
                else:  # pragma: no cover - chunks are consumed by the callers
                    raise AssertionError(instruction)
        except trio.TooSlowError as exc:
            raise OperationTimeoutError(f"no progress within {self.timeout} s") from exc
        except trio.BrokenResourceError as exc:
            _raise_mapped(exc)

    async def _run(self, op: Generator[Instruction, None, T]) -> T:
        """Run an operation that yields no message data to completion."""
        operation = _Operation(self, op)
        async for _ in operation:  # pragma: no cover - no chunks
            raise AssertionError("unexpected message data")
        return operation.result()

    def _begin(self) -> None:
        """Claim the connection for one operation, or raise if it cannot be used."""
        if self._broken is not None:
            raise ConnectionError(
                f"connection unusable after an interrupted operation: {self._broken!r}"
            )
        if self._busy:
            # An earlier operation stopped half-way (e.g. a RETR loop left
            # early) or runs in another task: either way the answers are out
            # of step with the commands, so the connection cannot go on.
            self._broken = RuntimeError("an earlier operation was not finished")
            self.close()
            raise ConnectionError(
                "connection unusable: an earlier operation was not finished "
                "(read every chunk of iter_retr, or use one connection per task)"
            )
        self._busy = True

    def _interrupted(self, exc: BaseException) -> None:
        """An operation stopped half-way: out of step for good, so close (no QUIT)."""
        if self._broken is None:
            self._broken = exc
        self.close()

    # --- the POP3 API ---------------------------------------------------------------------

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

        Read it to the end: leaving the loop early makes the connection unusable.
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

        With ``delete``, each message is also marked for deletion (committed at QUIT).
        Read it to the end: leaving the loop early makes the connection unusable.
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
        """``UTF8`` (RFC 6856)."""
        return await self._run(self.session.utf8())

    async def quit(self) -> str:
        """``QUIT``: commits deletions in TRANSACTION state, then closes."""
        if self._session is None:
            return ""
        try:
            return await self._run(self.session.quit())
        finally:
            if self._broken is None:
                await self.aclose()
            else:
                self.close()


# Operations are iterator classes rather than async generators: an async
# generator abandoned half-way would be finalised later, in another task
# (trio warns about it); these hold no cancel scope and need no finalising.
# An abandoned operation leaves the client busy, so the next call fails.


class _Operation(AsyncIterator[bytes], Generic[T]):
    """Runs one sans-IO operation, handing out the message chunks it produces.

    No cancel scope is open between chunks: each network wait has its own
    deadline inside ``Client._do``.
    """

    def __init__(self, client: Client, op: Generator[Instruction, None, T]) -> None:
        self._client = client
        self._op = op
        self._started = False
        self._done = False
        self._result: list[T] = []

    def result(self) -> T:
        """The operation's return value, once the iteration has ended."""
        return self._result[0]

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        client = self._client
        try:
            if not self._started:
                client._begin()
                self._started = True
                instruction = next(self._op)
            else:
                instruction = self._op.send(None)
            while not isinstance(instruction, Chunk):
                await client._do(instruction)
                instruction = self._op.send(None)
            return instruction.data
        except StopIteration as stop:
            self._finish()
            self._result.append(stop.value)
            raise StopAsyncIteration from None
        except p.Pop3Error as exc:
            self._finish()
            if client.session.connection.in_flight:
                # A -ERR in the middle of a pipeline (retr_many) with answers
                # to later commands still to come: the next operation would
                # read those as its own, so the connection cannot go on.
                client._interrupted(exc)
            raise  # otherwise a complete -ERR answer: the session is in step
        except BaseException as exc:
            # Cancelled, timed out or broken in the middle of an answer: the
            # connection is out of step and must not be reused (nor QUIT sent).
            if self._started:
                self._finish()
                client._interrupted(exc)
            else:
                self._done = True  # refused by _begin: another operation owns it
            raise

    def _finish(self) -> None:
        self._done = True
        self._client._busy = False


class _RetrMany(AsyncIterator[tuple[int, bytes]]):
    """``Client.retr_many``: whole messages from the chunks of one pipelined operation."""

    def __init__(self, client: Client, order: list[int], delete: bool) -> None:
        self._client = client
        self._order = order
        self._delete = delete
        self._chunks: _Operation[None] | None = None
        self._index = 0

    async def __anext__(self) -> tuple[int, bytes]:
        if self._chunks is None:
            client = self._client
            await client.capa()  # pipelining depends on it (RFC 2449 section 6.6)
            self._chunks = _Operation(
                client, client.session.retr_many(self._order, delete=self._delete)
            )
        parts: list[bytes] = []
        async for chunk in self._chunks:
            if not chunk:  # the end of one message
                n = self._order[self._index]
                self._index += 1
                return n, b"".join(parts)
            parts.append(chunk)
        raise StopAsyncIteration
