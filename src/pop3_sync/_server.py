"""The threaded POP3 server: pop3_sansio's SessionDriver on blocking sockets.

One thread accepts connections; each session runs in a thread of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import ssl
import threading
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
    refusal,
)

__all__ = ["Server", "ServerOptions", "serve"]

log = logging.getLogger("pop3.server")

# The listen queue: asyncio's default (100) and Python's (128) drop the SYNs of
# a burst of connections past that, and each dropped client waits 1, 3, 7...
# seconds to retry. The kernel caps this at net.core.somaxconn.
_BACKLOG = 4096

_RECV_SIZE = 1 << 16


class _Session:
    """One connection: its socket (replaced when TLS starts) and its thread."""

    __slots__ = ("dropped", "fd", "sock", "thread")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # The descriptor stays the same when TLS wraps the socket (even while
        # the handshake runs), so shutting it down always reaches the session.
        self.fd = sock.fileno()
        self.thread: threading.Thread | None = None
        self.dropped = False  # by close(): the session ends for the server's shutdown

    def drop(self) -> None:
        """Shut the connection down, waking the session's thread; only under the lock.

        Only the descriptor is touched, never an SSLSocket's TLS state.
        """
        self.dropped = True
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=self.fd)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.detach()


class Server:
    """A listening server: ``serve_forever()`` or ``start()``, ``close()``, ``port``, ``with``."""

    def __init__(self, backend: BackendProtocol, options: ServerOptions) -> None:
        self.backend = backend
        self.options = options
        self._listeners: list[socket.socket] = []
        self._sessions: set[_Session] = set()
        self._lock = threading.Lock()
        self._lifecycle = SessionLifecycle(
            options,
            backend,
            log=log,
            timeouts=(TimeoutError,),
            connection_errors=(ConnectionError, ssl.SSLError, OSError),
            lock=self._lock,  # the address counter is shared by the session threads
            monotonic=time.monotonic,
        )
        self._closing = threading.Event()
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._loop_ident: int | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._pause = AcceptPause()  # the accept thread's
        self._refused = 0  # connections in a row no thread could be started for

    # --- listening ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (useful with ``port=0``)."""
        return int(self._listeners[0].getsockname()[1])

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._listeners)

    def listen(self, host: str | Sequence[str] | None, port: int) -> None:
        """Listen on ``host``:``port`` (``None``: every interface; a sequence: each host)."""
        hosts: Sequence[str | None] = [host] if host is None or isinstance(host, str) else host
        reuse_port = self.options.reuse_port
        for name in hosts:
            if name is None or name == "":
                if socket.has_dualstack_ipv6():
                    sock = socket.create_server(
                        ("", port),
                        family=socket.AF_INET6,
                        dualstack_ipv6=True,
                        reuse_port=reuse_port,
                        backlog=_BACKLOG,
                    )
                else:
                    sock = socket.create_server(("", port), reuse_port=reuse_port, backlog=_BACKLOG)
                self._listeners.append(sock)
                continue
            seen = set()
            for family, _, _, _, address in socket.getaddrinfo(
                name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            ):
                if (family, address[0]) in seen:
                    continue
                seen.add((family, address[0]))
                sock = socket.create_server(
                    (address[0], port), family=family, reuse_port=reuse_port, backlog=_BACKLOG
                )
                self._listeners.append(sock)
                port = sock.getsockname()[1]  # with port 0: every address on the same port

    def serve_forever(self) -> None:
        """Accept connections until ``close()`` (from another thread or a signal handler)."""
        self._loop_done.clear()
        self._loop_ident = threading.get_ident()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._wake_r, selectors.EVENT_READ)
                for sock in self._listeners:
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ)
                while not self._closing.is_set():  # set before the wake-up byte
                    for key, _ in selector.select():
                        if key.fileobj is not self._wake_r:
                            assert isinstance(key.fileobj, socket.socket)
                            self._accept(key.fileobj)
        finally:
            self._loop_ident = None
            self._loop_done.set()
            self.close()

    def start(self) -> Server:
        """Run ``serve_forever()`` in a background (daemon) thread; return the server."""
        thread = threading.Thread(target=self.serve_forever, name="pop3-accept", daemon=True)
        self._thread = thread
        self._loop_done.clear()  # close() from now on waits for the loop
        thread.start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:
            # Out of descriptors and the like: the connection stays queued, so
            # pause (the others keep being served) and say so once per pause.
            pause = self._pause.failed()
            log.warning("cannot accept a connection (%s): pausing %.2f s", exc, pause)
            self._closing.wait(pause)
            return
        self._pause.accepted()
        conn.setblocking(True)
        # A short answer and the ".\r\n" that ends it go out in separate
        # writes: without TCP_NODELAY, Nagle holds the second until the
        # client's delayed ACK (~40 ms a message). asyncio and trio set it too.
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session(conn)
        with self._lock:
            if self._closing.is_set():
                conn.close()
                return
            self._sessions.add(session)
            active = len(self._sessions)
        thread = threading.Thread(
            target=self._session, args=(session, active), name="pop3-session", daemon=True
        )
        session.thread = thread
        try:
            thread.start()
        except RuntimeError as exc:
            # No thread to be had (RLIMIT_NPROC, a pids cgroup such as systemd's
            # TasksMax): turn this client away and keep accepting.
            with self._lock:
                self._sessions.discard(session)
            self._refuse(conn, exc)
            return
        if self._refused:
            log.warning("session threads start again (%d connections refused)", self._refused)
            self._refused = 0

    def _refuse(self, conn: socket.socket, exc: RuntimeError) -> None:
        """Greet ``conn`` with ``-ERR [SYS/TEMP]`` and close it; log the first of a run."""
        if not self._refused:
            log.warning("cannot start a session thread (%s): refusing connections", exc)
        self._refused += 1
        with contextlib.suppress(OSError):
            # Never blocks the accept loop: a new connection's send buffer is empty.
            conn.setblocking(False)
            conn.send(refusal("cannot start a session now"))
        conn.close()

    # --- one session --------------------------------------------------------------------

    def _session(self, holder: _Session, active: int) -> None:
        options = self.options
        lifecycle = self._lifecycle
        peer: Any = None
        local: Any = None
        proxy: Any = None
        with contextlib.suppress(OSError):
            peer = holder.sock.getpeername()
            local = holder.sock.getsockname()
        try:
            if options.proxy_protocol:
                try:
                    proxy, peer = peer, _proxy_header(holder.sock, peer, options.proxy_timeout)
                except Exception as exc:
                    lifecycle.proxy_failed(peer, exc, local=local)  # closed without a greeting
                    return
            run = lifecycle.start(
                peer,
                sessions=active,
                hostname=socket.gethostname(),
                random_bytes=os.urandom,
                clock=time.time_ns() // 1000,
                local=local,
                proxy=proxy,
            )
            try:
                if options.ssl_context is not None:
                    # Part of the time the client has to log in.
                    _start_tls(run, holder, options.ssl_context)
                self._drive(run, holder)
                if holder.dropped and run.driver.close_reason == "client-closed":
                    run.shut_down()  # the end of input close() made, not the client
                else:
                    run.ended()
            except Exception as exc:
                if holder.dropped and isinstance(exc, OSError):
                    run.shut_down()  # it failed because close() shut the socket down
                else:
                    run.failed(exc)
            finally:
                run.end()
        finally:
            with self._lock:  # out of the set first: close() drops by descriptor
                self._sessions.discard(holder)
            with contextlib.suppress(OSError):
                holder.sock.close()

    def _drive(self, run: SessionRun, holder: _Session) -> None:
        """Carry out the driver's instructions until the session ends."""
        driver = run.driver
        instruction = driver.step()
        while instruction is not None:
            value: Any = None
            error: BaseException | None = None
            if instruction is READ:
                # The autologout timer (RFC 1939 section 3) is reset by a command, not a byte.
                timeout = driver.read_timeout(time.monotonic())
                if timeout <= 0:
                    raise TimeoutError
                holder.sock.settimeout(timeout)
                value = holder.sock.recv(_RECV_SIZE)
            elif isinstance(instruction, Write):
                timeout = driver.wait_timeout(time.monotonic())
                if timeout <= 0:
                    raise TimeoutError
                holder.sock.settimeout(timeout)
                holder.sock.sendall(instruction.data)
            elif isinstance(instruction, Call):
                try:
                    value = instruction.function(*instruction.args)
                except Exception as exc:  # handed to the driver, which decides
                    error = exc
            elif isinstance(instruction, Sleep):
                # Like time.sleep, but a shutdown does not wait for it.
                self._closing.wait(instruction.seconds)
            else:
                assert isinstance(instruction, StartTls)
                context = self.options.starttls_context
                assert context is not None
                _start_tls(run, holder, context)
            instruction = driver.step(value, error)

    # --- stopping -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening, drop every session (without QUIT nothing is deleted), wait for them.

        Safe to call more than once, from any thread.
        """
        with self._lock:
            first = not self._closing.is_set()
            self._closing.set()
        if first:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._loop_ident != threading.get_ident():
            self._loop_done.wait()
        if first:
            for sock in self._listeners:
                sock.close()
            self._wake_r.close()
            self._wake_w.close()
        with self._lock:
            sessions = list(self._sessions)
            for holder in sessions:
                holder.drop()
        current = threading.current_thread()
        for holder in sessions:
            if holder.thread is not None and holder.thread is not current:
                holder.thread.join()
        thread = self._thread
        if thread is not None and thread is not current:
            thread.join()

    shutdown = close
    """Another name for ``close()`` (``socketserver``'s)."""

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _proxy_header(sock: socket.socket, peer: Any, timeout: float) -> Any:
    """The client's address from the PROXY header, read without reading past it."""
    parser = ProxyParser()
    deadline = time.monotonic() + timeout
    with contextlib.suppress(TimeoutError):
        while parser.wanted and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            parser.feed(sock.recv(parser.wanted))
    return parser.result().client_address(peer)


def _start_tls(run: SessionRun, holder: _Session, context: ssl.SSLContext) -> None:
    """Replace the session's socket with a TLS one and run the handshake.

    The TLS socket is the session's before the handshake starts, so the
    session closes it however the handshake ends. A handshake that takes
    longer than ``run.handshake_timeout`` raises ``HandshakeTimeoutError``.
    """
    timeout = run.handshake_timeout(time.monotonic())
    if timeout <= 0:  # the login time is up (and a 0 timeout would make the socket non-blocking)
        raise HandshakeTimeoutError
    holder.sock.settimeout(timeout)
    holder.sock = context.wrap_socket(holder.sock, server_side=True, do_handshake_on_connect=False)
    try:
        holder.sock.do_handshake()
    except TimeoutError:
        raise HandshakeTimeoutError from None
    run.tls_started(holder.sock)


def serve(
    backend: BackendProtocol,
    host: str | Sequence[str] | None = "127.0.0.1",
    port: int = 1110,
    **options: Unpack[ServerKeywords],
) -> Server:
    """Create a POP3 server for ``backend``, listening; return it.

    Call ``serve_forever()`` (blocks) or ``start()`` (a background thread).
    Keywords are the fields of ``ServerOptions``, typed by ``ServerKeywords``
    (``ssl_context`` for implicit TLS, ``starttls_context`` for STLS,
    ``mechanisms``, ``apop``, ``allow_plaintext``, ``failed_login_delay``,
    ``autologout``, ``max_sessions``...), the same for every binding.
    """
    server = Server(backend, ServerOptions(**options))
    try:
        server.listen(host, port)
    except BaseException:
        server.close()
        raise
    return server
