"""The trio POP3 server: pop3_sansio's SessionDriver bound to trio streams."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any, Unpack

import trio

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

__all__ = ["Server", "ServerOptions", "serve"]

log = logging.getLogger("pop3.server")

_RECEIVE_SIZE = 1 << 16
_CLOSE_TIMEOUT = 5.0


class Server:
    """A server's sockets and sessions; ``serve`` runs it and hands it out via ``task_status``.

    Cancel the scope it runs in (e.g. the nursery) to shut it down: every
    session is dropped without QUIT, so nothing is deleted, and each
    maildrop lock is released.
    """

    def __init__(self, backend: BackendProtocol, options: ServerOptions) -> None:
        self.backend = backend
        self.options = options
        self.listeners: list[trio.SocketListener] = []
        self.sessions = 0
        """How many sessions are open now (refused ones included while they are told so)."""
        self._lifecycle = SessionLifecycle(
            options,
            backend,
            log=log,
            timeouts=(trio.TooSlowError,),
            connection_errors=(
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                ssl.SSLError,
                OSError,
            ),
            shutdown=(trio.Cancelled,),
            monotonic=time.monotonic,
        )
        self._pause = AcceptPause()

    @property
    def port(self) -> int:
        """The port listened on (useful with ``port=0``)."""
        return int(self.sockets[0].getsockname()[1])

    @property
    def sockets(self) -> tuple[trio.socket.SocketType, ...]:
        """The listening sockets."""
        if not self.listeners:
            raise RuntimeError("the server is not listening")
        return tuple(listener.socket for listener in self.listeners)

    async def run(
        self,
        host: str | Sequence[str] | None,
        port: int,
        *,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host``:``port`` and serve until cancelled."""
        hosts: Sequence[str | None] = [host] if host is None or isinstance(host, str) else host
        listeners: list[trio.SocketListener] = []
        try:
            for name in hosts:
                listeners += await _listen(port, name, reuse_port=self.options.reuse_port)
            self.listeners = listeners
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept, listener, nursery)
                task_status.started(self)
        finally:
            for listener in listeners:
                listener.socket.close()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections for ever, each one's session a task of ``nursery``.

        Not ``trio.serve_listeners``: out of descriptors, that one retries every
        0.1 s and logs an error with a traceback each time.
        """
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                # Out of descriptors and the like: the connection stays queued,
                # so pause (the sessions go on) and say so once a pause.
                pause = self._pause.failed()
                log.warning("cannot accept a connection (%s): pausing %.2f s", exc, pause)
                await trio.sleep(pause)
                continue
            self._pause.accepted()
            nursery.start_soon(self._session, stream)

    async def _session(self, stream: trio.SocketStream) -> None:
        self.sessions += 1
        try:
            await self._serve_session(stream)
        finally:
            self.sessions -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_session(self, tcp: trio.SocketStream) -> None:
        options = self.options
        lifecycle = self._lifecycle
        try:
            peer = tcp.socket.getpeername()
            local = tcp.socket.getsockname()
        except OSError:
            peer = local = None
        proxy = None
        if options.proxy_protocol:
            try:
                proxy, peer = peer, await _proxy_header(tcp, peer, options.proxy_timeout)
            except Exception as exc:
                lifecycle.proxy_failed(peer, exc, local=local)  # closed without a greeting
                tcp.socket.close()
                return
            except BaseException:  # cancelled: the server is shutting down
                tcp.socket.close()
                raise
        run = lifecycle.start(
            peer,
            sessions=self.sessions,
            hostname=socket.gethostname(),
            random_bytes=os.urandom,
            clock=time.time_ns() // 1000,
            local=local,
            proxy=proxy,
        )
        conn = _Connection(tcp)
        try:
            if options.ssl_context is not None:
                # Part of the time the client has to log in.
                await conn.start_tls(run, options.ssl_context)
            await self._drive(run, conn)
            run.ended()
        except BaseException as exc:
            run.failed(exc)
            if not isinstance(exc, Exception):
                raise  # cancelled: the server is shutting down
        finally:
            run.end()  # synchronous on purpose: this runs under cancellation too
            await conn.aclose()

    async def _drive(self, run: SessionRun, conn: _Connection) -> None:
        """Carry out the driver's instructions until the session ends."""
        driver = run.driver
        instruction = driver.step()
        while instruction is not None:
            value: Any = None
            error: BaseException | None = None
            if instruction is READ:
                # The autologout timer (RFC 1939 section 3) is reset by a command, not a byte.
                with trio.fail_after(driver.read_timeout(trio.current_time())):
                    value = await conn.receive()
            elif isinstance(instruction, Write):
                # A client that stops reading must not hold its lock forever.
                with trio.fail_after(driver.wait_timeout(trio.current_time())):
                    await conn.stream.send_all(instruction.data)
            elif isinstance(instruction, Call):
                try:
                    if instruction.quick:
                        # A small read from storage: cheaper here than a worker-thread hop.
                        value = instruction.function(*instruction.args)
                    else:
                        value = await trio.to_thread.run_sync(
                            instruction.function, *instruction.args
                        )
                except Exception as exc:  # handed to the driver, which decides
                    error = exc
            elif isinstance(instruction, Sleep):
                await trio.sleep(instruction.seconds)
            else:
                assert isinstance(instruction, StartTls)
                assert self.options.starttls_context is not None
                await conn.start_tls(run, self.options.starttls_context)
            instruction = driver.step(value, error)


class _Connection:
    """One accepted connection: the TCP stream, and on top of it TLS once started."""

    def __init__(self, tcp: trio.SocketStream) -> None:
        self.tcp = tcp
        self.stream: trio.abc.Stream = tcp

    async def start_tls(self, run: SessionRun, context: ssl.SSLContext) -> None:
        """Run the TLS handshake; ``HandshakeTimeoutError`` past ``run.handshake_timeout``."""
        stream = trio.SSLStream(self.stream, context, server_side=True)
        self.stream = stream
        try:
            with trio.fail_after(run.handshake_timeout(trio.current_time())):
                await stream.do_handshake()
        except trio.TooSlowError:
            raise HandshakeTimeoutError from None
        run.tls_started(stream)

    async def receive(self) -> bytes:
        data = await self.stream.receive_some(_RECEIVE_SIZE)
        return data if type(data) is bytes else bytes(data)

    async def aclose(self) -> None:
        """Close, with a TLS ``close_notify`` when possible (RFC 8314 section 3.4)."""
        try:
            with trio.move_on_after(_CLOSE_TIMEOUT):
                await self.stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.tcp.socket.close()


async def _proxy_header(tcp: trio.SocketStream, peer: Any, timeout: float) -> Any:
    """The client's address from the PROXY header, read without reading past it."""
    parser = ProxyParser()
    with trio.move_on_after(timeout):
        while parser.wanted:
            parser.feed(await tcp.receive_some(parser.wanted))
    return parser.result().client_address(peer)


async def _listen(port: int, host: str | None, *, reuse_port: bool) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners``, or the same with ``SO_REUSEPORT`` set before ``bind``."""
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host)
    listeners: list[trio.SocketListener] = []
    for family, kind, proto, _, address in await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        sock = trio.socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock.bind(address)
            sock.listen(4096)  # as open_tcp_listeners (capped by somaxconn); the default is 128
        except BaseException:
            sock.close()
            for listener in listeners:
                listener.socket.close()
            raise
        listeners.append(trio.SocketListener(sock))
    return listeners


async def serve(
    backend: BackendProtocol,
    host: str | Sequence[str] | None = "127.0.0.1",
    port: int = 1110,
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerKeywords],
) -> None:
    """Serve POP3 for ``backend`` until cancelled; for ``nursery.start``.

    ``server = await nursery.start(serve, backend, "127.0.0.1", 0)`` returns
    the listening ``Server`` (``server.port``). Keywords are the fields of
    ``ServerOptions``, typed by ``ServerKeywords`` (``ssl_context`` for
    implicit TLS, ``starttls_context`` for STLS, ``mechanisms``, ``apop``,
    ``allow_plaintext``, ``failed_login_delay``, ``autologout``,
    ``max_sessions``...). Cancelling it drops every session without
    committing deletions.
    """
    server = Server(backend, ServerOptions(**options))
    await server.run(host, port, task_status=task_status)
