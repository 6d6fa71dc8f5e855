"""Every binding's server in the background, every binding's client behind one async face.

``serving(name, backend, **options)`` runs that binding's server on 127.0.0.1 (a free
port) in a thread of its own, with its own event loop where it has one, so it is
independent of the loop the test itself runs in; it yields the port and stops the
server (every session dropped, the thread joined) when the block ends. Starting and
stopping block the calling thread only briefly and need no event loop, so they may be
called from a test's loop or from a fixture.

``connect(name, host, port, **kwargs)`` is that binding's client as an async context
manager with the async client interface (``Client`` below). The asyncio and trio
clients already have it and are returned as they are: a test using them must run on
that library's loop (``ANYIO_BACKEND``). The blocking ``pop3_sync`` client is wrapped
in ``SyncClient``, which runs each call in a worker thread (``anyio.to_thread``).

No POP3 is spoken here: the adapters only move calls between threads and loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import Any, BinaryIO, Protocol, TypeVar

import anyio.to_thread
import trio

import pop3_asyncio
import pop3_sansio as p
import pop3_sync
import pop3_trio
from pop3_sansio.server import BackendProtocol

T = TypeVar("T")

NAMES = ("asyncio", "trio", "sync")
"""The bindings, each with a client and a server."""

ANYIO_BACKEND = {"asyncio": "asyncio", "trio": "trio", "sync": "asyncio"}
"""The anyio backend a test using that binding's client runs on."""

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


# --- servers ------------------------------------------------------------------------------


class _Background:
    """A thread running ``target(started)``; ``started`` is a future it resolves."""

    def __init__(self, name: str, target: Callable[[concurrent.futures.Future[Any]], None]):
        self.started: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target,), name=name, daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[concurrent.futures.Future[Any]], None]) -> None:
        try:
            target(self.started)
        except BaseException as exc:
            self.error = exc
            if not self.started.done():
                self.started.set_exception(exc)

    def result(self) -> Any:
        return self.started.result(_START_TIMEOUT)

    def join(self) -> None:
        self.thread.join(_STOP_TIMEOUT)
        assert not self.thread.is_alive(), f"{self.thread.name} did not stop"
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def _serve_asyncio(backend: BackendProtocol, **options: Any) -> Iterator[int]:
    async def main(started: concurrent.futures.Future[Any]) -> None:
        server = await pop3_asyncio.serve(backend, "127.0.0.1", 0, **options)
        stop = asyncio.Event()
        try:
            started.set_result((server.port, asyncio.get_running_loop(), stop))
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()

    background = _Background("asyncio-server", lambda started: asyncio.run(main(started)))
    port, loop, stop = background.result()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        background.join()


@contextlib.contextmanager
def _serve_trio(backend: BackendProtocol, **options: Any) -> Iterator[int]:
    async def main(started: concurrent.futures.Future[Any]) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(pop3_trio.serve, backend, "127.0.0.1", 0, **options)
            )
            token = trio.lowlevel.current_trio_token()
            started.set_result((server.port, token, nursery.cancel_scope))

    background = _Background("trio-server", lambda started: trio.run(main, started))
    port, token, scope = background.result()
    try:
        yield port
    finally:
        # Thread-safe and non-blocking, so it works from inside any event loop too.
        token.run_sync_soon(scope.cancel)
        background.join()


@contextlib.contextmanager
def _serve_sync(backend: BackendProtocol, **options: Any) -> Iterator[int]:
    server = pop3_sync.serve(backend, "127.0.0.1", 0, **options).start()
    try:
        yield server.port
    finally:
        server.close()


_SERVERS = {"asyncio": _serve_asyncio, "trio": _serve_trio, "sync": _serve_sync}


def serving(
    name: str, backend: BackendProtocol, **options: Any
) -> contextlib.AbstractContextManager[int]:
    """Binding ``name``'s server for ``backend`` (``ServerOptions`` keywords); yields its port."""
    return _SERVERS[name](backend, **options)


# --- clients ------------------------------------------------------------------------------


class Client(Protocol):
    """The async client interface every test uses (that of pop3_asyncio and pop3_trio)."""

    @property
    def session(self) -> p.ClientSession: ...
    async def __aenter__(self) -> Client: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def capa(self, *, refresh: bool = False) -> p.Capabilities | None: ...
    async def login(
        self,
        username: str,
        password: str | None = None,
        *,
        token: str | None = None,
        mechanism: str | None = None,
    ) -> str: ...
    async def apop(self, username: str, password: str) -> str: ...
    async def auth(
        self,
        mechanism: str,
        username: str = "",
        *,
        password: str | None = None,
        token: str | None = None,
    ) -> str: ...
    async def stat(self) -> tuple[int, int]: ...
    async def list(self, msg: int | None = None) -> dict[int, int]: ...
    async def uidl(self, msg: int | None = None) -> dict[int, str]: ...
    def iter_retr(self, msg: int) -> AsyncIterator[bytes]: ...
    async def retr(self, msg: int) -> bytes: ...
    async def retr_to(self, msg: int, file: BinaryIO) -> int: ...
    async def top(self, msg: int, lines: int) -> bytes: ...
    def retr_many(
        self, msgs: Iterable[int], *, delete: bool = False
    ) -> AsyncIterator[tuple[int, bytes]]: ...
    async def dele(self, msg: int) -> str: ...
    async def rset(self) -> str: ...
    async def noop(self) -> str: ...
    async def utf8(self) -> str: ...
    async def quit(self) -> str: ...


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(partial(function, *args))


async def _iterate(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """A blocking iterator, stepped in worker threads (one step at a time)."""
    iterator = await _in_thread(make)
    done = object()
    try:
        while (item := await _in_thread(next, iterator, done)) is not done:
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await _in_thread(close)


class SyncClient:
    """A ``pop3_sync.Client`` with the async interface: each call runs in a worker thread."""

    def __init__(self, client: pop3_sync.Client) -> None:
        self.client = client

    @property
    def session(self) -> p.ClientSession:
        return self.client.session

    async def __aenter__(self) -> SyncClient:
        await _in_thread(self.client.__enter__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _in_thread(self.client.__exit__, exc_type, exc, tb)

    async def capa(self, *, refresh: bool = False) -> p.Capabilities | None:
        return await _in_thread(partial(self.client.capa, refresh=refresh))

    async def login(
        self,
        username: str,
        password: str | None = None,
        *,
        token: str | None = None,
        mechanism: str | None = None,
    ) -> str:
        return await _in_thread(
            partial(self.client.login, username, password, token=token, mechanism=mechanism)
        )

    async def apop(self, username: str, password: str) -> str:
        return await _in_thread(self.client.apop, username, password)

    async def auth(
        self,
        mechanism: str,
        username: str = "",
        *,
        password: str | None = None,
        token: str | None = None,
    ) -> str:
        return await _in_thread(
            partial(self.client.auth, mechanism, username, password=password, token=token)
        )

    async def stat(self) -> tuple[int, int]:
        return await _in_thread(self.client.stat)

    async def list(self, msg: int | None = None) -> dict[int, int]:
        return await _in_thread(self.client.list, msg)

    async def uidl(self, msg: int | None = None) -> dict[int, str]:
        return await _in_thread(self.client.uidl, msg)

    def iter_retr(self, msg: int) -> AsyncIterator[bytes]:
        return _iterate(partial(self.client.iter_retr, msg))

    async def retr(self, msg: int) -> bytes:
        return await _in_thread(self.client.retr, msg)

    async def retr_to(self, msg: int, file: BinaryIO) -> int:
        return await _in_thread(self.client.retr_to, msg, file)

    async def top(self, msg: int, lines: int) -> bytes:
        return await _in_thread(self.client.top, msg, lines)

    def retr_many(
        self, msgs: Iterable[int], *, delete: bool = False
    ) -> AsyncIterator[tuple[int, bytes]]:
        return _iterate(partial(self.client.retr_many, msgs, delete=delete))

    async def dele(self, msg: int) -> str:
        return await _in_thread(self.client.dele, msg)

    async def rset(self) -> str:
        return await _in_thread(self.client.rset)

    async def noop(self) -> str:
        return await _in_thread(self.client.noop)

    async def utf8(self) -> str:
        return await _in_thread(self.client.utf8)

    async def quit(self) -> str:
        return await _in_thread(self.client.quit)


def connect(name: str, host: str, port: int, **kwargs: Any) -> Client:
    """Binding ``name``'s client (``connect`` keywords), to use as ``async with``."""
    if name == "sync":
        return SyncClient(pop3_sync.connect(host, port, **kwargs))
    module = pop3_asyncio if name == "asyncio" else pop3_trio
    client: Client = module.connect(host, port, **kwargs)
    return client


MODULES: dict[str, Any] = {"asyncio": pop3_asyncio, "trio": pop3_trio, "sync": pop3_sync}
"""Each binding's module (for its exception classes: ``Pop3Error``, ``AuthError``...)."""
