"""The asyncio POP3 client: pop3_sansio's ClientSession bound to an asyncio stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Generator, Iterable
from types import TracebackType
from typing import BinaryIO, TypeVar

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

from ._stream import Stream, with_timeout

__all__ = ["Client", "connect"]

T = TypeVar("T")


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
    ``ssl.create_default_context()``. ``timeout`` bounds every network wait.
    Passwords are never sent in the clear to a non-loopback host unless
    ``allow_plaintext_login`` is true.

    Leaving the ``async with`` block normally sends QUIT, which commits
    deletions; leaving it with an exception closes the connection without
    QUIT, so nothing is deleted (RFC 1939 section 6).
    """
    return Client(
        host,
        default_port(tls) if port is None else port,
        tls=tls,
        ssl_context=ssl_context,
        timeout=timeout,
        allow_plaintext_login=allow_plaintext_login,
    )


class Client:
    """An asyncio POP3 client; see ``connect``."""

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
        self._stream: Stream | None = None
        self._session: ClientSession | None = None
        self._busy = False
        self._broken: BaseException | None = None

    # --- connecting ------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    async def open(self) -> p.Greeting:
        """Connect, read the greeting, and do STLS if asked; return the greeting."""
        loop = asyncio.get_running_loop()
        implicit = self._tls == "implicit"
        _, stream = await self._wait(
            loop.create_connection(
                Stream,
                self.host,
                self.port,
                ssl=self._ssl() if implicit else None,
                server_hostname=self.host if implicit else None,
            )
        )
        self._stream = stream
        secure = self._allow_plaintext or stream.peer_is_loopback()
        self._session = ClientSession(tls=implicit, secure=secure, random_bytes=os.urandom)
        return await self._run(self._session.start(starttls=self._tls == "starttls"))

    async def __aenter__(self) -> Client:
        try:
            await self.open()
        except BaseException:
            # ``async with`` calls no __aexit__ when __aenter__ fails.
            await self.aclose()
            raise
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
                await self.quit()
            except ConnectionError:
                if commits:
                    raise  # whether the deletions were made is unknown
            finally:
                await self.aclose()
        else:
            await self.aclose()  # no QUIT: nothing marked is deleted

    def close(self) -> None:
        """Close the connection without QUIT (deletions are not committed)."""
        if self._stream is not None:
            self._stream.close()

    async def aclose(self) -> None:
        """``close()``, then wait until the transport is gone (TLS close alert included)."""
        self.close()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await with_timeout(self._stream.wait_closed(), self.timeout)

    @property
    def session(self) -> ClientSession:
        """The sans-IO session (greeting, connection state, capabilities cache)."""
        if self._session is None:
            raise RuntimeError("not connected: use 'async with connect(...)' or 'await open()'")
        return self._session

    # --- the driver -------------------------------------------------------------------

    async def _wait(self, awaitable: Awaitable[T]) -> T:
        return await with_timeout(awaitable, self.timeout)

    async def _do(self, instruction: Instruction) -> None:
        """Carry out one I/O instruction of the sans-IO session."""
        stream = self._stream
        assert stream is not None
        if instruction is READ:
            self.session.receive_data(await self._wait(stream.read()))
        elif isinstance(instruction, Write):
            await self._wait(stream.write(instruction.data))
        elif isinstance(instruction, StartTls):
            await self._wait(
                stream.start_tls(self._ssl(), server_side=False, server_hostname=self.host)
            )
        else:  # pragma: no cover - chunks are consumed by the callers
            raise AssertionError(instruction)

    async def _run(self, op: Generator[Instruction, None, T]) -> T:
        """Run an operation that yields no message data to completion."""
        result: list[T] = []
        async for _ in self._stream_op(op, result):  # pragma: no cover - no chunks
            raise AssertionError("unexpected message data")
        return result[0]

    async def _stream_op(
        self, op: Generator[Instruction, None, T], result: list[T] | None = None
    ) -> AsyncIterator[bytes]:
        """Run an operation, yielding the message chunks it produces."""
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
        try:
            instruction = next(op)
            while True:
                if isinstance(instruction, Chunk):
                    yield instruction.data
                else:
                    await self._do(instruction)
                instruction = op.send(None)
        except StopIteration as stop:
            if result is not None:
                result.append(stop.value)
        except p.Pop3Error:
            raise  # a complete -ERR answer: the session is still in step
        except BaseException as exc:
            # Cancelled, timed out or broken in the middle of an answer: the
            # connection is out of step and must not be reused (nor QUIT sent).
            self._broken = exc
            self.close()
            raise
        finally:
            self._busy = False

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
        """Stream message ``msg``: ``async for chunk in client.iter_retr(1)``."""
        return self._stream_op(self.session.retr(msg))

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
        return b"".join([chunk async for chunk in self._stream_op(self.session.top(msg, lines))])

    async def retr_many(
        self, msgs: Iterable[int], *, delete: bool = False
    ) -> AsyncIterator[tuple[int, bytes]]:
        """``(msgno, message)`` for each of ``msgs``, pipelined when the server allows.

        With ``delete``, each message is also marked for deletion (committed at QUIT).
        """
        order = list(msgs)
        await self.capa()
        index = 0
        parts: list[bytes] = []
        async for chunk in self._stream_op(self.session.retr_many(order, delete=delete)):
            if chunk:
                parts.append(chunk)
            else:
                yield order[index], b"".join(parts)
                index += 1
                parts = []

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
        """``UTF8`` (RFC 6856): allow UTF-8 in user names and passwords."""
        return await self._run(self.session.utf8())

    async def quit(self) -> str:
        """``QUIT``: commits deletions in TRANSACTION state, then closes."""
        if self._session is None:
            return ""
        try:
            return await self._run(self.session.quit())
        finally:
            self.close()
