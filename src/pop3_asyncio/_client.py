"""The asyncio POP3 client: the core's AsyncClient over an asyncio Protocol stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Awaitable
from typing import TypeVar

import pop3_sansio as p
from pop3_sansio.client import (
    READ,
    AsyncClient,
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
    max_message_size: int | None = None,
) -> Client:
    """A client for ``host``; use it as ``async with connect(...) as client:``.

    ``tls`` is ``"implicit"`` (port 995), ``"starttls"`` (STLS on port 110;
    refuses to continue if the server does not offer it) or ``None``.
    Certificates and host names are verified with ``ssl_context``, by default
    ``ssl.create_default_context()``. ``timeout`` bounds every network wait.
    Passwords are never sent in the clear to a non-loopback host unless
    ``allow_plaintext_login`` is true.

    A RETR or TOP body longer than twice the size the server announced plus
    64 KiB, or than ``max_message_size`` octets when set, raises
    ``MessageTooLargeError`` and leaves the connection unusable.

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
        max_message_size=max_message_size,
    )


class Client(AsyncClient):
    """An asyncio POP3 client; see ``connect`` and ``pop3_sansio.AsyncClient``."""

    _stream: Stream | None = None

    def _ssl(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    async def _wait(self, awaitable: Awaitable[T]) -> T:
        return await with_timeout(awaitable, self.timeout)

    async def open(self) -> p.Greeting:
        """Connect, read the greeting, and do STLS if asked; return the greeting."""
        loop = asyncio.get_running_loop()
        implicit = self.tls == "implicit"
        try:
            _, stream = await self._wait(
                loop.create_connection(
                    Stream,
                    self.host,
                    self.port,
                    ssl=self._ssl() if implicit else None,
                    server_hostname=self.host if implicit else None,
                )
            )
        except Exception as exc:
            error = self._network_error(exc, "connect")
            if error is exc:
                raise
            raise error from exc
        self._stream = stream
        assert stream.transport is not None
        peer = stream.transport.get_extra_info("peername")
        return await self._greet(peer=peer, random_bytes=os.urandom)

    async def _do(self, instruction: Instruction) -> None:
        stream = self._stream
        assert stream is not None
        if instruction is READ:
            self.session.receive_data(await stream.read(self.timeout))
        elif isinstance(instruction, Write):
            await stream.write(instruction.data, self.timeout)
        else:
            assert isinstance(instruction, StartTls)
            await self._wait(
                stream.start_tls(self._ssl(), server_side=False, server_hostname=self.host)
            )

    def close(self) -> None:
        """Close the connection without QUIT (deletions are not committed)."""
        if self._stream is not None:
            self._stream.close()

    async def aclose(self) -> None:
        """``close()``, then wait until the transport is gone (TLS close alert included)."""
        self.close()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._wait(self._stream.wait_closed())
