"""A byte stream over asyncio's Protocol API, for both clients and servers.

``asyncio.Protocol`` receives several times faster than ``StreamReader`` on
this kind of machine, and hands over each received ``bytes`` object as it is,
which the core can pass on without copying.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pop3_sansio import RemoteProtocolError

__all__ = ["PrefixReader", "Stream", "StreamClosedError", "with_timeout"]

T = TypeVar("T")


async def with_timeout(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``await awaitable``, raising ``TimeoutError`` after ``seconds`` (``None``: never).

    On Python 3.11+ this is ``asyncio.timeout``: unlike ``wait_for`` before
    3.12, it never swallows a cancellation that races with completion.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        # asyncio's class: the builtin TimeoutError on 3.11+, and on 3.10
        # the one asyncio.wait_for raises, as the other timeouts here do.
        waiter.set_exception(asyncio.TimeoutError())


async def _wait_until(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None], deadline: float | None
) -> None:
    """``await waiter``, raising ``TimeoutError`` at loop time ``deadline`` (``None``: never).

    A timer that fails the waiter itself: cheaper than ``asyncio.timeout``,
    which cancels the task and then undoes the cancellation, on every read
    of every round trip.
    """
    if deadline is None:
        await waiter
        return
    timer = loop.call_at(deadline, _expire, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


_HIGH_WATER = 1 << 20  # pause reading when this much is received and unread


class StreamClosedError(ConnectionError):
    """The connection was closed while writing."""


class Stream(asyncio.Protocol):
    """Buffers received chunks and offers ``await read()`` / ``await write()``."""

    def __init__(self, on_connect: Callable[[Stream], object] | None = None) -> None:
        self._on_connect = on_connect
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._paused_writing = False
        self._lost: asyncio.Future[None] = self._loop.create_future()

    # --- Protocol callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        first = self.transport is None
        self.transport = transport
        if first and self._on_connect is not None:
            # For implicit TLS this runs once the handshake is done.
            self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._paused_reading:
            assert self.transport is not None
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self._eof = True
        self._error = exc
        self._wake_reader()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(StreamClosedError("connection lost"))

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the stream API ------------------------------------------------------------

    async def read(self, timeout: float | None = None) -> bytes:
        """The next received bytes, or ``b""`` once the peer closed.

        ``TimeoutError`` if nothing came within ``timeout`` seconds (``None``:
        wait for ever). A timer is set only when there is something to wait
        for: on a busy connection most reads find data already received.
        """
        deadline = None
        while not self._chunks:
            if self._error is not None:
                # A reset or a TLS failure is not a clean end of stream.
                raise ConnectionResetError(f"connection lost: {self._error}")
            if self._eof:
                return b""
            if timeout is not None and deadline is None:
                deadline = self._loop.time() + timeout
            self._read_waiter = self._loop.create_future()
            await _wait_until(self._loop, self._read_waiter, deadline)
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused_reading and self._buffered <= _HIGH_WATER // 2:
            assert self.transport is not None
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes, timeout: float | None = None) -> None:
        """Write ``data``, waiting while the transport's buffer is full.

        ``TimeoutError`` if the buffer did not drain within ``timeout``
        seconds (``None``: wait for ever); as with ``read()``, a timer is set
        only when the write has to wait.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            raise StreamClosedError("connection closed")
        transport.write(data)
        if self._paused_writing:
            self._drain_waiter = self._loop.create_future()
            deadline = None if timeout is None else self._loop.time() + timeout
            await _wait_until(self._loop, self._drain_waiter, deadline)

    async def start_tls(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        """Wrap the connection in TLS now (after ``+OK`` to STLS).

        Raises ``RemoteProtocolError`` (``stls-injection``) if plaintext that
        came after the STLS exchange is waiting unread: it must never be read
        as if it had come through TLS (CVE-2011-0411, RFC 2595 section 4).
        """
        assert self.transport is not None
        if self._chunks:
            raise RemoteProtocolError(
                "plaintext received after STLS, before the TLS handshake",
                reason="stls-injection",
            )
        new = await self._loop.start_tls(
            self.transport,
            self,
            context,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        assert new is not None
        self.transport = new

    def close(self) -> None:
        """Close the connection (a TLS close alert goes first, RFC 8314 section 3.4)."""
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Wait until the connection is gone (``connection_lost`` was called)."""
        await asyncio.shield(self._lost)

    def abort(self) -> None:
        """Drop the connection at once."""
        if self.transport is not None:
            self.transport.abort()


class PrefixReader(asyncio.BufferedProtocol):
    """A connection's first bytes, read in pieces of a size the caller picks; then a ``Stream``.

    ``read(size)`` takes at most ``size`` bytes from the socket, never more:
    asyncio reads into the buffer this protocol hands out. That is how a
    PROXY header is read when TLS, which needs the bytes after it, follows.
    ``hand_over()`` gives the connection to a new ``Stream``.
    """

    def __init__(self, on_connect: Callable[[PrefixReader], object]) -> None:
        self._on_connect = on_connect
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray(1)
        self._waiter: asyncio.Future[bytes] | None = None
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()  # nothing is read until read() asks
        self._on_connect(self)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        self.transport.pause_reading()
        self._wake(bytes(self._buffer[:nbytes]))

    def eof_received(self) -> bool:
        self._eof = True
        self._wake(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake(b"")

    def _wake(self, data: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(data)

    async def read(self, size: int) -> bytes:
        """At most ``size`` (> 0) bytes; ``b""`` once the peer closed."""
        if self._eof:
            return b""
        assert self.transport is not None
        self._buffer = bytearray(size)
        self._waiter = self._loop.create_future()
        self.transport.resume_reading()
        return await self._waiter

    def hand_over(self) -> Stream:
        """A ``Stream`` that reads and writes this connection from here on."""
        transport = self.transport
        assert transport is not None
        stream = Stream()
        transport.set_protocol(stream)
        stream.connection_made(transport)
        # Safe before Stream.start_tls too: nothing is read before the loop
        # runs again, and start_tls pauses reading before that.
        transport.resume_reading()
        return stream

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()
