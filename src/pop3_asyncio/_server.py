"""The asyncio POP3 server: pop3_sansio's SessionDriver bound to asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import ssl
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Unpack

from pop3_sansio.proxy import ProxyParser
from pop3_sansio.server import (
    READ,
    AcceptPause,
    BackendProtocol,
    Call,
    HandshakeTimeoutError,
    ServerKeywords,
    ServerOptions,
    SessionLifecycle,
    SessionRun,
    Sleep,
    StartTls,
    Write,
)

from ._stream import PrefixReader, Stream, StreamClosedError, with_timeout

__all__ = ["Server", "ServerOptions", "serve"]

log = logging.getLogger("pop3.server")

# The listen queue: asyncio's default (100) and Python's (128) drop the SYNs of
# a burst of connections past that, and each dropped client waits 1, 3, 7...
# seconds to retry. The kernel caps this at net.core.somaxconn.
_BACKLOG = 4096
_ACCEPT_BATCH = 100  # connections accepted at most per wake-up (asyncio's default backlog)


class Server:
    """A running server: ``async with``, ``serve_forever()``, ``close()``, ``port``."""

    def __init__(self, backend: BackendProtocol, options: ServerOptions) -> None:
        self.backend = backend
        self.options = options
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()  # sessions
        self._opening: set[asyncio.Task[None]] = set()  # accepted, transport not made yet
        self._lifecycle = SessionLifecycle(
            options,
            backend,
            log=log,
            timeouts=(TimeoutError,),
            connection_errors=(ConnectionError, StreamClosedError, ssl.SSLError, OSError),
            shutdown=(asyncio.CancelledError,),
            monotonic=time.monotonic,
        )
        self._pause = AcceptPause()
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        self._stopped: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        """The port listened on (useful with ``port=0``)."""
        return int(self._listeners[0].getsockname()[1])

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._listeners)

    async def start(self, host: str | Sequence[str] | None, port: int) -> None:
        """Listen on ``host``:``port``."""
        self._loop = loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        self._listeners = await _listen(loop, host, port, reuse_port=self.options.reuse_port)
        self._accepting(True)

    # --- accepting ------------------------------------------------------------------------
    #
    # Our own accept loop, not loop.create_server's: out of descriptors, that
    # one logs and re-arms a retry for every pass of its loop over the listen
    # queue (up to the backlog, 4096, per wake-up), so it spins a core and
    # writes tens of thousands of log lines a second (CPython 3.10 to 3.13).

    def _accepting(self, on: bool) -> None:
        """Watch the listening sockets for connections, or stop watching them."""
        loop = self._loop
        assert loop is not None
        for sock in self._listeners:
            if on:
                loop.add_reader(sock, self._accept, sock)
            else:
                loop.remove_reader(sock)

    def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        # Several at a wake-up (as asyncio does), but few enough that the
        # sessions already running get their turn.
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                # Out of descriptors and the like: the connection stays queued,
                # so stop watching (the sessions go on) and say so once a pause.
                pause = self._pause.failed()
                log.warning("cannot accept a connection (%s): pausing %.2f s", exc, pause)
                self._accepting(False)
                self._resume = loop.call_later(pause, self._accepting, True)
                return
            self._pause.accepted()
            conn.setblocking(False)
            task = loop.create_task(self._open(conn))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open(self, conn: socket.socket) -> None:
        """Make a transport for an accepted socket; its protocol starts the session."""
        try:
            # Implicit TLS starts in _session (after the PROXY header if any), so a
            # handshake that fails or stalls is timed out and logged like a session.
            await asyncio.get_running_loop().connect_accepted_socket(self._protocol, conn)
        except OSError:
            conn.close()  # the client is gone already

    def _protocol(self) -> asyncio.BaseProtocol:
        if self.options.proxy_protocol:
            return PrefixReader(on_connect=self._connected)
        return Stream(on_connect=self._connected)

    def _connected(self, stream: Stream | PrefixReader) -> None:
        if self._closed:
            stream.close()
            return
        task = asyncio.get_running_loop().create_task(self._session(stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, connection: Stream | PrefixReader) -> None:
        options = self.options
        lifecycle = self._lifecycle
        assert connection.transport is not None
        peer = connection.transport.get_extra_info("peername")
        local = connection.transport.get_extra_info("sockname")
        proxy = None
        if isinstance(connection, PrefixReader):
            try:
                proxy, peer = peer, await _proxy_header(connection, peer, options.proxy_timeout)
            except Exception as exc:
                lifecycle.proxy_failed(peer, exc, local=local)  # closed without a greeting
                connection.close()
                return
            except BaseException:  # cancelled: the server is shutting down
                connection.close()
                raise
            stream = connection.hand_over()
        else:
            stream = connection
        try:
            run = lifecycle.start(
                peer,
                sessions=len(self._tasks),
                hostname=socket.gethostname(),
                random_bytes=os.urandom,
                clock=time.time_ns() // 1000,
                local=local,
                proxy=proxy,
            )
        except BaseException:
            stream.close()
            raise
        loop = asyncio.get_running_loop()
        try:
            if options.ssl_context is not None:  # implicit TLS (RFC 8314)
                # Part of the time the client has to log in.
                await _handshake(run, stream, options.ssl_context, loop.time())
            await self._drive(run, stream)
            run.ended()
        except BaseException as exc:
            run.failed(exc)
            if not isinstance(exc, Exception):
                # Cancelled: the server is shutting down. Drop the connection now:
                # close() would wait for the unsent part of a message, after the
                # event loop that sends it is gone.
                stream.abort()
                raise
        finally:
            stream.close()
            run.end()

    async def _drive(self, run: SessionRun, stream: Stream) -> None:
        """Carry out the driver's instructions until the session ends."""
        loop = asyncio.get_running_loop()
        clock = loop.time
        driver = run.driver
        instruction = driver.step()
        while instruction is not None:
            value: Any = None
            error: BaseException | None = None
            if instruction is READ:
                # The autologout timer (RFC 1939 section 3) is reset by a command, not a byte.
                timeout = driver.read_timeout(clock())
                if timeout <= 0:  # even with input waiting: commands do not extend the login
                    raise TimeoutError
                value = await stream.read(timeout)
            elif isinstance(instruction, Write):
                # A client that stops reading must not hold the maildrop lock
                # forever: writes are bounded by the autologout timer too.
                await stream.write(instruction.data, driver.wait_timeout(clock()))
            elif isinstance(instruction, Call) and instruction.quick:
                # A small read from storage: cheaper here than a worker-thread hop.
                try:
                    value = instruction.function(*instruction.args)
                except Exception as exc:  # handed to the driver, which decides
                    error = exc
            elif isinstance(instruction, Call):
                # What asyncio.to_thread does (the context goes along, for a storage
                # that traces or logs with contextvars), without its task and coroutine.
                in_context = contextvars.copy_context().run
                call = loop.run_in_executor(
                    None, in_context, instruction.function, *instruction.args
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
            elif isinstance(instruction, Sleep):
                await asyncio.sleep(instruction.seconds)
            else:
                assert isinstance(instruction, StartTls)
                assert self.options.starttls_context is not None
                await _handshake(run, stream, self.options.starttls_context, clock())
            instruction = driver.step(value, error)

    def close(self) -> None:
        """Stop listening and drop every session (without QUIT nothing is deleted)."""
        if not self._closed:
            self._closed = True
            if self._resume is not None:
                self._resume.cancel()
            if self._listeners:
                self._accepting(False)
            for sock in self._listeners:
                sock.close()
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)
        # The tasks in _opening finish by themselves, soon: _connected closes
        # what they open from now on (cancelled, one could leave its socket open).
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until every session has ended."""
        # Wait on the tasks not yet done, not on the sets: a finished task leaves
        # them only when its done callback runs, and since Python 3.12 gather() of
        # finished tasks completes without yielding to the loop, so a loop on the
        # sets would spin for ever before that callback could run.
        while pending := [t for t in (*self._opening, *self._tasks) if not t.done()]:
            await asyncio.wait(pending)

    async def serve_forever(self) -> None:
        """Serve until cancelled (or ``close()``)."""
        assert self._stopped is not None
        try:
            await asyncio.shield(self._stopped)
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
    parser = ProxyParser()

    async def read() -> None:
        while parser.wanted:
            parser.feed(await reader.read(parser.wanted))

    with contextlib.suppress(TimeoutError):
        await with_timeout(read(), timeout)
    return parser.result().client_address(peer)


async def _listen(
    loop: asyncio.AbstractEventLoop,
    host: str | Sequence[str] | None,
    port: int,
    *,
    reuse_port: bool,
) -> list[socket.socket]:
    """Listening sockets for ``host``:``port``, as ``loop.create_server`` makes them.

    ``None`` or ``""``: every interface; a sequence: each host. One socket per
    address (IPv6 ones only IPv6), ``SO_REUSEADDR`` set, non-blocking.
    """
    hosts: Sequence[str | None] = [host] if host is None or isinstance(host, str) else host
    infos = set()
    for name in hosts:
        infos.update(
            await loop.getaddrinfo(
                name or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"error while attempting to bind on address {address!r}: "
                    f"{(exc.strerror or '').lower()}",
                ) from None
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def serve(
    backend: BackendProtocol,
    host: str | Sequence[str] | None = "127.0.0.1",
    port: int = 1110,
    **options: Unpack[ServerKeywords],
) -> Server:
    """Start a POP3 server for ``backend``; return it listening.

    Keywords are the fields of ``ServerOptions``, typed by ``ServerKeywords``
    (``ssl_context`` for implicit TLS, ``starttls_context`` for STLS,
    ``mechanisms``, ``apop``, ``allow_plaintext``, ``failed_login_delay``,
    ``autologout``...).
    """
    server = Server(backend, ServerOptions(**options))
    await server.start(host, port)
    return server


async def _handshake(run: SessionRun, stream: Stream, context: ssl.SSLContext, now: float) -> None:
    """Start TLS on ``stream``; ``HandshakeTimeoutError`` past ``run.handshake_timeout(now)``."""
    try:
        await with_timeout(stream.start_tls(context, server_side=True), run.handshake_timeout(now))
    except TimeoutError:
        raise HandshakeTimeoutError from None
    assert stream.transport is not None
    run.tls_started(stream.transport.get_extra_info("ssl_object"))
