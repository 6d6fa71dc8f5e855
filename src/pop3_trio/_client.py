"""The trio POP3 client: pop3_sansio's ClientSession bound to a ``trio.abc.Stream``."""

from __future__ import annotations

import math
import os
import ssl
from contextlib import AbstractContextManager
from typing import NoReturn

import trio

import pop3_sansio as p
from pop3_sansio.client import (
    READ,
    AsyncClient,
    Instruction,
    Pop3TimeoutError,
    StartTls,
    TlsMode,
    Write,
    default_port,
)

__all__ = ["BrokenConnectionError", "Client", "OperationTimeoutError", "connect"]

_RECEIVE_SIZE = 1 << 16
_CLOSE_TIMEOUT = 5.0  # how long a graceful close (TLS close_notify) may take


class OperationTimeoutError(Pop3TimeoutError, trio.TooSlowError):
    """A network wait took longer than the client's ``timeout``.

    Both a ``Pop3TimeoutError`` (a ``TimeoutError``, as the other bindings
    raise) and a ``trio.TooSlowError`` (as ``trio.fail_after`` raises).
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
    max_message_size: int | None = None,
) -> Client:
    """A client for ``host``; use it as ``async with connect(...) as client:``.

    ``tls`` is ``"implicit"`` (port 995), ``"starttls"`` (STLS on port 110;
    refuses to continue if the server does not offer it) or ``None``.
    Certificates and host names are verified with ``ssl_context``, by default
    ``ssl.create_default_context()``. ``timeout`` bounds every network wait
    (``OperationTimeoutError``, a ``TimeoutError`` and a ``trio.TooSlowError``).
    Passwords are never sent in the clear to a non-loopback host unless
    ``allow_plaintext_login`` is true.

    A RETR or TOP body longer than twice the size the server announced plus
    64 KiB, or than ``max_message_size`` octets when set, raises
    ``MessageTooLargeError`` and leaves the connection unusable.

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
        max_message_size=max_message_size,
    )


def _raise_mapped(exc: trio.BrokenResourceError) -> NoReturn:
    """Raise what ``exc`` means: the ``ssl`` error behind it, else ``BrokenConnectionError``."""
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        # trio wraps TLS failures (a certificate that does not verify, say);
        # the ssl exception is what callers of every binding catch.
        raise cause.with_traceback(cause.__traceback__) from None
    raise BrokenConnectionError(str(exc) or "connection broken") from exc


class Client(AsyncClient):
    """A trio POP3 client; see ``connect`` and ``pop3_sansio.AsyncClient``."""

    _timeouts = (TimeoutError, trio.TooSlowError)
    _timeout_error = OperationTimeoutError

    _tcp: trio.SocketStream | None = None
    _stream: trio.abc.Stream | None = None

    def _ssl(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    def _deadline(self) -> AbstractContextManager[trio.CancelScope]:
        return trio.fail_after(math.inf if self.timeout is None else self.timeout)

    async def _wrap_tls(self) -> None:
        assert self._stream is not None
        stream = trio.SSLStream(self._stream, self._ssl(), server_hostname=self.host)
        self._stream = stream
        await stream.do_handshake()

    async def open(self) -> p.Greeting:
        """Connect, read the greeting, and do STLS if asked; return the greeting."""
        try:
            with self._deadline():
                self._tcp = self._stream = await trio.open_tcp_stream(self.host, self.port)
                if self.tls == "implicit":
                    await self._wrap_tls()
        except trio.BrokenResourceError as exc:
            _raise_mapped(exc)
        except Exception as exc:
            error = self._network_error(exc, "connect")
            if error is exc:
                raise
            raise error from exc
        try:
            peer: object = self._tcp.socket.getpeername()
        except OSError:
            peer = None
        return await self._greet(peer=peer, random_bytes=os.urandom)

    async def _do(self, instruction: Instruction) -> None:
        stream = self._stream
        assert stream is not None
        try:
            with self._deadline():
                if instruction is READ:
                    data = await stream.receive_some(_RECEIVE_SIZE)
                    self.session.receive_data(data if type(data) is bytes else bytes(data))
                elif isinstance(instruction, Write):
                    await stream.send_all(instruction.data)
                else:
                    assert isinstance(instruction, StartTls)
                    await self._wrap_tls()
        except trio.BrokenResourceError as exc:
            _raise_mapped(exc)
        # A trio.TooSlowError goes on to the operation, which raises OperationTimeoutError.

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
