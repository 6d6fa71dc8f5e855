"""``AsyncPop3TestServer``: the asyncio or trio server, in the test's own event loop."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType

from ._base import HOST, ServerBase

__all__ = ["AsyncPop3TestServer"]


class AsyncPop3TestServer(ServerBase):
    """A POP3 server on a free port of 127.0.0.1 that runs in the test's event loop.

    ``async with AsyncPop3TestServer() as server:`` inside a trio run serves with
    ``pop3_trio`` (in a nursery of its own), anywhere else with ``pop3_asyncio``.
    No thread is started: the sessions are tasks of the test's loop, so a
    client must be async too (a blocking client in the same thread would wait
    for ever), and cancelling the test cancels the server. Leaving the block
    drops every session without QUIT, so nothing is deleted by it.

    Same keywords and methods as ``Pop3TestServer``.
    """

    _running: AbstractAsyncContextManager[int] | None = None

    async def __aenter__(self) -> AsyncPop3TestServer:
        if self._running is not None:
            raise RuntimeError("the server is already running")
        trio = sys.modules.get("trio")
        if trio is not None and trio.lowlevel.in_trio_run():
            running = self._serve_trio()
        else:
            running = self._serve_asyncio()
        self._port = await running.__aenter__()
        self._running = running
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        running, self._running = self._running, None
        try:
            if running is not None:
                await running.__aexit__(exc_type, exc, tb)
        finally:
            self._cleanup()

    @asynccontextmanager
    async def _serve_asyncio(self) -> AsyncIterator[int]:
        from pop3_asyncio import Server

        server = Server(self.backend, self.options)
        async with server:  # closes it and waits for its sessions, however this ends
            await server.start(HOST, 0)
            yield server.port

    @asynccontextmanager
    async def _serve_trio(self) -> AsyncIterator[int]:
        import trio

        from pop3_trio import Server

        server = Server(self.backend, self.options)
        failed: Exception | None = None
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, HOST, 0)
            try:
                yield server.port
            except Exception as exc:
                # Raised outside the nursery, so that the test sees its own error,
                # not an ExceptionGroup of one (trio's nurseries group what is
                # raised in them). Cancelled is trio's to handle: it passes.
                failed = exc
            finally:
                nursery.cancel_scope.cancel()
        if failed is not None:
            raise failed
