"""The blocking POP3 client: pop3_sansio's ClientSession bound to a socket."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Generator, Iterable, Iterator, Sequence
from types import TracebackType

from pop3_sansio.client import (
    READ,
    Chunk,
    ClientGuard,
    ClientSession,
    Pop3TimeoutError,
    StartTls,
    Write,
    default_port,
)

__all__ = ["Client", "Timeout", "connect"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    # Types only: a client's import does not load ``typing`` (docs/architecture.md, section 8).
    from typing import BinaryIO, TypeVar

    from pop3_sansio import Greeting
    from pop3_sansio.client import Capabilities, Instruction, TlsMode

    T = TypeVar("T")

_RECV_SIZE = 1 << 16


Timeout = Pop3TimeoutError
"""A network wait took longer than the client's ``timeout`` (the name of earlier versions)."""


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
    """A client for ``host``; use it as ``with connect(...) as client:``.

    ``tls`` is ``"implicit"`` (port 995), ``"starttls"`` (STLS on port 110;
    refuses to continue if the server does not offer it) or ``None``.
    Certificates and host names are verified with ``ssl_context``, by default
    ``ssl.create_default_context()``. ``timeout`` bounds every network wait
    (``Timeout``, a ``TimeoutError``, when it passes). Passwords are never
    sent in the clear to a non-loopback host unless ``allow_plaintext_login``
    is true.

    A RETR or TOP body longer than twice the size the server announced plus
    64 KiB, or than ``max_message_size`` octets when set, raises
    ``MessageTooLargeError`` and leaves the connection unusable.

    Leaving the ``with`` block normally sends QUIT, which commits deletions;
    leaving it with an exception closes the connection without QUIT, so
    nothing is deleted (RFC 1939 section 6).
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


class Client:
    """A blocking POP3 client; see ``connect``.

    The same methods, parameters and rules as ``pop3_sansio.AsyncClient`` (the
    asyncio and trio clients), without ``await``; the rules are
    ``ClientGuard``'s. After ``quit()`` the socket is closed at once: there is
    no graceful TLS close here.
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
        self._sock: socket.socket | None = None
        self._session: ClientSession | None = None
        self._guard = ClientGuard(self.close)

    def _network_error(self, exc: BaseException, operation: str) -> BaseException:
        """``exc`` as the client raises it (see ``ClientGuard.network_error``)."""
        return self._guard.network_error(
            exc, operation=operation, host=self.host, port=self.port, timeout=self.timeout
        )

    # --- connecting ------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    def open(self) -> Greeting:
        """Connect, read the greeting, and do STLS if asked; return the greeting."""
        implicit = self.tls == "implicit"
        try:
            sock = socket.create_connection((self.host, self.port), self.timeout)
            # Commands are small writes; do not let Nagle hold them back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            if implicit:
                self._sock = self._ssl().wrap_socket(sock, server_hostname=self.host)
        except Exception as exc:
            self.close()
            error = self._network_error(exc, "connect")
            if error is exc:
                raise
            raise error from exc
        try:
            peer: object = sock.getpeername()
        except OSError:
            peer = None
        self._session = self._guard.new_session(
            tls=self.tls,
            allow_plaintext_login=self.allow_plaintext_login,
            peer=peer,
            random_bytes=os.urandom,
            max_message_size=self.max_message_size,
        )
        return self._run(self._session.start(starttls=self.tls == "starttls"))

    def __enter__(self) -> Client:
        try:
            self.open()
        except BaseException:
            # ``with`` calls no __exit__ when __enter__ fails.
            self._guard.open_failed()
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        plan = self._guard.exit_plan(exc_type, self._session)
        if plan == "close":
            self.close()  # no QUIT: nothing marked is deleted
            self._guard.closed_without_quit(exc_type, self._session)
            return
        try:
            self.quit()  # closes, however it ends
        except ConnectionError:
            if plan == "commit":
                raise  # whether the deletions were made is unknown

    def close(self) -> None:
        """Close the connection at once, without QUIT (deletions are not committed)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def session(self) -> ClientSession:
        """The sans-IO session (greeting, connection state, capabilities cache)."""
        if self._session is None:
            raise RuntimeError("not connected: use 'with connect(...)' or 'open()'")
        return self._session

    # --- the driver -------------------------------------------------------------------

    def _do(self, instruction: Instruction) -> None:
        """Carry out one I/O instruction of the sans-IO session."""
        sock = self._sock
        if sock is None:
            raise ConnectionError("connection closed")
        # A socket timeout goes on to the operation, which raises Timeout.
        if instruction is READ:
            self.session.receive_data(sock.recv(_RECV_SIZE))
        elif isinstance(instruction, Write):
            sock.sendall(instruction.data)
        elif isinstance(instruction, StartTls):
            self._sock = self._ssl().wrap_socket(sock, server_hostname=self.host)
        else:  # pragma: no cover - chunks are consumed by the callers
            raise AssertionError(instruction)

    def _run(self, op: Generator[Instruction, None, T]) -> T:
        """Run an operation that yields no message data to completion."""
        result: list[T] = []
        for _ in self._stream_op(op, result):  # pragma: no cover - no chunks
            raise AssertionError("unexpected message data")
        return result[0]

    def _stream_op(
        self, op: Generator[Instruction, None, T], result: list[T] | None = None
    ) -> Iterator[bytes]:
        """Run an operation, yielding the message chunks it produces."""
        guard = self._guard
        guard.begin()
        wrote = False  # something went out: a failure now leaves it out of step
        try:
            instruction = next(op)
            while True:
                if isinstance(instruction, Chunk):
                    yield instruction.data
                else:
                    wrote = True
                    self._do(instruction)
                instruction = op.send(None)
        except StopIteration as stop:
            guard.finished()
            if result is not None:
                result.append(stop.value)
        except GeneratorExit:
            # Abandoned half-way and closed (or collected): the guard stays
            # busy, so the next call finds it out of step, as in AsyncClient,
            # whenever the garbage collector runs.
            raise
        except BaseException as exc:
            error = self._network_error(exc, getattr(op, "__name__", "operation"))
            guard.failed(error, wrote=wrote, session=self.session)
            if error is exc:
                raise
            raise error from exc

    # --- the POP3 API ---------------------------------------------------------------------

    def capa(self, *, refresh: bool = False) -> Capabilities | None:
        """The server's capabilities, or ``None`` if it does not support CAPA."""
        return self._run(self.session.capa(refresh=refresh))

    def login(
        self,
        username: str,
        password: str | None = None,
        *,
        token: str | None = None,
        mechanism: str | None = None,
    ) -> str:
        """Authenticate with the strongest safe method; see ``ClientSession.login``."""
        return self._run(self.session.login(username, password, token=token, mechanism=mechanism))

    def apop(self, username: str, password: str) -> str:
        """Authenticate with APOP (RFC 1939 section 7)."""
        return self.login(username, password, mechanism="APOP")

    def auth(
        self,
        mechanism: str,
        username: str = "",
        *,
        password: str | None = None,
        token: str | None = None,
    ) -> str:
        """Authenticate with one SASL mechanism (RFC 5034)."""
        return self._run(self.session.auth(mechanism, username, password=password, token=token))

    def stat(self) -> tuple[int, int]:
        """``(message count, total size in octets)``."""
        return self._run(self.session.stat())

    def list(self, msg: int | None = None) -> dict[int, int]:
        """``{msgno: size}``."""
        return self._run(self.session.list(msg))

    def uidl(self, msg: int | None = None) -> dict[int, str]:
        """``{msgno: unique id}``."""
        return self._run(self.session.uidl(msg))

    def iter_retr(self, msg: int) -> Iterator[bytes]:
        """Stream message ``msg``: ``for chunk in client.iter_retr(1)``.

        Read it to the end: leaving the loop early makes the connection
        unusable (the rest of the message is still on its way), and it is
        closed without QUIT at the next call or at the end of the block. A
        body over ``session.body_limit`` of its LIST size (``LIST msg`` goes
        out with the RETR unless ``list()`` was called) raises
        ``MessageTooLargeError``; so do ``retr``, ``retr_to``, ``top`` and ``retr_many``.
        """
        return self._stream_op(self.session.retr(msg))

    def retr(self, msg: int) -> bytes:
        """Message ``msg`` as bytes: CRLF line ends, stuffing removed."""
        return b"".join(list(self.iter_retr(msg)))

    def retr_to(self, msg: int, file: BinaryIO) -> int:
        """Write message ``msg`` to ``file`` as it arrives; return the octets written."""
        total = 0
        for chunk in self.iter_retr(msg):
            file.write(chunk)
            total += len(chunk)
        return total

    def top(self, msg: int, lines: int) -> bytes:
        """The headers and first ``lines`` body lines of ``msg``."""
        return b"".join(list(self._stream_op(self.session.top(msg, lines))))

    def retr_many(
        self, msgs: Iterable[int], *, delete: bool = False
    ) -> Iterator[tuple[int, bytes]]:
        """``(msgno, message)`` for each of ``msgs``, pipelined when the server allows.

        With ``delete``, each message is marked for deletion once it has been
        taken (committed at QUIT). CAPA (whether the server pipelines) and
        LIST (the sizes) go out first when not known, at the first step of
        the loop, not at this call. Read it to the end: leaving the loop early
        makes the connection unusable.
        """
        return self._retr_many(list(msgs), delete)

    def _retr_many(self, order: Sequence[int], delete: bool) -> Iterator[tuple[int, bytes]]:
        index = 0
        parts: list[bytes] = []
        for chunk in self._stream_op(self.session.retr_many(order, delete=delete)):
            if chunk:
                parts.append(chunk)
            else:
                yield order[index], b"".join(parts)
                index += 1
                parts = []

    def dele(self, msg: int) -> str:
        """Mark ``msg`` for deletion; it is removed only by QUIT."""
        return self._run(self.session.dele(msg))

    def rset(self) -> str:
        """Unmark every message marked for deletion."""
        return self._run(self.session.rset())

    def noop(self) -> str:
        """``NOOP``."""
        return self._run(self.session.noop())

    def utf8(self) -> str:
        """``UTF8`` (RFC 6856): user names, passwords and messages may then be UTF-8."""
        return self._run(self.session.utf8())

    def quit(self) -> str:
        """``QUIT``: commits deletions in TRANSACTION state, then closes."""
        if self._session is None:
            return ""
        try:
            return self._run(self.session.quit())
        finally:
            self.close()
