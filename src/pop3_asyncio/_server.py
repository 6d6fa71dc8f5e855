"""The asyncio POP3 server: pop3_sansio's SessionDriver bound to asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import pop3_sansio as p
from pop3_sansio import ServerOptions

from ._stream import PrefixReader, Stream, StreamClosedError, with_timeout

__all__ = ["Server", "ServerOptions", "serve"]

log = logging.getLogger("pop3.server")

# The listen queue: asyncio's default (100) and Python's (128) drop the SYNs of
# a burst of connections past that, and each dropped client waits 1, 3, 7...
# seconds to retry. The kernel caps this at net.core.somaxconn.
_BACKLOG = 4096


class Server:
    """A running server: ``async with``, ``serve_forever()``, ``close()``, ``port``."""

    def __init__(self, backend: p.Backend, options: ServerOptions) -> None:
        self.backend = backend
        self.options = options
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._addresses = p.AddressCounter()

    @property
    def port(self) -> int:
        """The port listened on (useful with ``port=0``)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        assert self._server is not None
        return tuple(self._server.sockets)

    async def start(self, host: str | Sequence[str] | None, port: int) -> None:
        """Listen on ``host``:``port``."""
        loop = asyncio.get_running_loop()
        options = self.options
        self._server = await loop.create_server(
            self._protocol,
            host,
            port,
            # Implicit TLS starts in _session (after the PROXY header if any), so a
            # handshake that fails or stalls is timed out and logged like a session.
            ssl=None,
            reuse_address=True,
            reuse_port=options.reuse_port or None,
            backlog=_BACKLOG,
        )

    def _protocol(self) -> asyncio.BaseProtocol:
        if self.options.proxy_protocol:
            return PrefixReader(on_connect=self._connected)
        return Stream(on_connect=self._connected)

    def _connected(self, stream: Stream | PrefixReader) -> None:
        task = asyncio.get_running_loop().create_task(self._session(stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, connection: Stream | PrefixReader) -> None:
        options = self.options
        assert connection.transport is not None
        peer = connection.transport.get_extra_info("peername")
        if isinstance(connection, PrefixReader):
            try:
                peer = await _proxy_header(connection, peer, options.proxy_timeout)
            except (p.ProxyHeaderError, OSError) as exc:
                reason = f"no valid PROXY header: {exc!r}"  # closed without a greeting
                log.info("session from %s ended: %s (user -)", p.peer_host(peer), reason)
                connection.close()
                return
            except BaseException:  # cancelled: the server is shutting down
                connection.close()
                raise
            stream = connection.hand_over()
        else:
            stream = connection
        driver = options.start_session(
            self.backend,
            peer_is_loopback=p.is_loopback_address(peer),
            sessions=len(self._tasks),
            same_address=self._addresses.add(peer),
            hostname=socket.gethostname(),
            random_bytes=os.urandom,
            clock=time.time_ns() // 1000,
        )
        session = driver.session
        reason = "error"
        loop = asyncio.get_running_loop()
        try:
            if options.ssl_context is not None:  # implicit TLS (RFC 8314)
                # Part of the time the client has to log in.
                timeout = driver.wait_timeout(loop.time())
                await _handshake(stream, options.ssl_context, timeout)
            await self._drive(driver, stream)
            reason = driver.close_reason or "closed"
        except _HandshakeTimeoutError:
            reason = "TLS handshake timed out"
        except (TimeoutError, asyncio.TimeoutError):
            # The autologout (RFC 1939 section 3) or the login timeout: close, delete nothing.
            reason = driver.timed_out()
        except (ConnectionError, StreamClosedError, ssl.SSLError, OSError) as exc:
            reason = f"connection error: {type(exc).__name__}"
        except Exception as exc:
            # A backend failing in a way it should not (or a bug): end this
            # session and say so in the log, but keep serving the others.
            reason = f"internal error: {type(exc).__name__}"
            log.exception("session failed")
        finally:
            driver.release()
            self._addresses.remove(peer)
            stream.close()
            log.info(
                "session from %s ended: %s (user %s)",
                peer[0] if peer else "?",
                reason,
                session.username or "-",
            )

    async def _drive(self, driver: p.SessionDriver, stream: Stream) -> None:
        """Carry out the driver's instructions until the session ends."""
        clock = asyncio.get_running_loop().time
        instruction = driver.step()
        while instruction is not None:
            value: Any = None
            error: BaseException | None = None
            if instruction is p.READ:
                # The autologout timer (RFC 1939 section 3) is reset by a command, not a byte.
                timeout = driver.read_timeout(clock())
                if timeout <= 0:  # even with input waiting: commands do not extend the login
                    raise TimeoutError
                value = await stream.read(timeout)
            elif isinstance(instruction, p.Write):
                # A client that stops reading must not hold the maildrop lock
                # forever: writes are bounded by the autologout timer too.
                await stream.write(instruction.data, driver.wait_timeout(clock()))
            elif isinstance(instruction, p.Call) and instruction.quick:
                # A small read from storage: cheaper here than a worker-thread hop.
                try:
                    value = instruction.function(*instruction.args)
                except Exception as exc:  # handed to the driver, which decides
                    error = exc
            elif isinstance(instruction, p.Call):
                call = asyncio.ensure_future(
                    asyncio.to_thread(instruction.function, *instruction.args)
                )
                try:
                    value = await asyncio.shield(call)
                except asyncio.CancelledError:
                    # The worker thread runs on regardless: let it finish, so
                    # that a maildrop it opens (or a commit it makes) is not
                    # left behind holding the lock, then give up.
                    with contextlib.suppress(Exception):
                        driver.abandoned(instruction, await call)
                    raise
                except Exception as exc:  # handed to the driver, which decides
                    error = exc
            elif isinstance(instruction, p.Sleep):
                await asyncio.sleep(instruction.seconds)
            else:
                assert isinstance(instruction, p.StartTls)
                assert self.options.starttls_context is not None
                timeout = driver.wait_timeout(clock())
                await _handshake(stream, self.options.starttls_context, timeout)
            instruction = driver.step(value, error)

    def close(self) -> None:
        """Stop listening and drop every session (without QUIT nothing is deleted)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listener and every session have ended."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            self.close()
            await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


async def _proxy_header(reader: PrefixReader, peer: Any, timeout: float) -> Any:
    """The client's address from the PROXY header, read without reading past it."""
    parser = p.ProxyParser()

    async def read() -> None:
        while parser.wanted:
            parser.feed(await reader.read(parser.wanted))

    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        await with_timeout(read(), timeout)
    return parser.result().client_address(peer)


async def serve(
    backend: p.Backend,
    host: str | Sequence[str] | None = "127.0.0.1",
    port: int = 1110,
    **options: Any,
) -> Server:
    """Start a POP3 server for ``backend``; return it listening.

    Keywords are the fields of ``ServerOptions`` (``ssl_context`` for implicit
    TLS, ``starttls_context`` for STLS, ``mechanisms``, ``apop``,
    ``allow_plaintext``, ``failed_login_delay``, ``autologout``...).
    """
    server = Server(backend, ServerOptions(**options))
    await server.start(host, port)
    return server


_HANDSHAKE_TIMEOUT = 60.0  # asyncio's own default ssl_handshake_timeout


class _HandshakeTimeoutError(Exception):
    """The TLS handshake did not finish in time."""


async def _handshake(stream: Stream, context: ssl.SSLContext, timeout: float) -> None:
    """Start TLS on ``stream``; ``_HandshakeTimeoutError`` after 60 s (less if ``timeout`` is).

    ``timeout`` is the driver's ``wait_timeout()``: before login, what is
    left of the login time.
    """
    try:
        await with_timeout(
            stream.start_tls(context, server_side=True), min(_HANDSHAKE_TIMEOUT, timeout)
        )
    except (TimeoutError, asyncio.TimeoutError):
        raise _HandshakeTimeoutError from None
