"""``Pop3TestServer``: pop3_sync's threaded server in the background of any test."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType

from pop3_sync import Server

from ._base import HOST, ServerBase

__all__ = ["Pop3TestServer"]


class Pop3TestServer(ServerBase):
    """A POP3 server on a free port of 127.0.0.1, in background threads, for tests.

    Use it with ``with`` (or ``start()`` and ``close()``); from asyncio or trio
    code ``async with`` works too and stops it without blocking the event loop.
    The sessions run in threads of their own (``pop3_sync``), so any client can
    talk to it: blocking, asyncio or trio, in the test or in a subprocess.

    Keywords: ``user`` and ``password`` of the default user (``"user"``,
    ``"password"``), ``tls`` (``"implicit"`` or ``"starttls"``, with a
    certificate from a throwaway CA; needs the ``testing`` extra, trustme) and
    ``options`` (a ``pop3_sansio.server.ServerOptions``; by default every login
    method is offered and wrong passwords are answered at once).
    """

    _server: Server | None = None

    def start(self) -> Pop3TestServer:
        """Listen on a free port and serve in background threads; return the server."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        server = Server(self.backend, self.options)
        try:
            server.listen(HOST, 0)
            server.start()
        except BaseException:
            server.close()
            raise
        self._server = server
        self._port = server.port
        return self

    def close(self) -> None:
        """Stop listening and drop every session (nothing deleted without QUIT); wait for them.

        The messages and what was deleted can still be read afterwards.
        Safe to call more than once.
        """
        server, self._server = self._server, None
        try:
            if server is not None:
                server.close()
        finally:
            self._cleanup()

    def __enter__(self) -> Pop3TestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Pop3TestServer:
        # Binding a socket and starting a thread take well under a millisecond.
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Stopping waits for the session threads: done in a worker thread, so
        # that the event loop keeps running the test's own tasks meanwhile.
        await _in_a_thread(self.close)


async def _in_a_thread(function: Callable[[], None]) -> None:
    """Run ``function`` in a worker thread of the running trio or asyncio loop."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        await trio.to_thread.run_sync(function)
        return
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        function()  # some other event loop: stopping takes milliseconds, so just stop
        return
    await asyncio.to_thread(function)
