"""pop3_asyncio: what only this binding has, over real loopback sockets.

What every client and server share (every command, locks, SASL, TLS, streaming...)
is tested once for every pair of bindings in tests/test_conformance.py.
"""

from __future__ import annotations

import asyncio
import poplib
import socket
import ssl
from collections.abc import AsyncIterator

import pytest

import pop3_asyncio as pa
from helpers import FakeBackend, crlf, fake_server

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nHello.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n.\n..two\nno final newline",
    b"Subject: crlf\r\n\r\nalready CRLF\r\n",
]


class Running:
    def __init__(self, server: pa.Server, backend: FakeBackend) -> None:
        self.server = server
        self.backend = backend
        self.port = server.port


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    backend = FakeBackend(MESSAGES)
    async with await pa.serve(
        backend,
        "127.0.0.1",
        0,
        failed_login_delay=0,
        apop=True,
        mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"],
    ) as server:
        yield Running(server, backend)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


async def test_stls_injection_is_dropped(server_ssl: ssl.SSLContext) -> None:
    # CVE-2011-0411: plaintext pipelined behind STLS must never run inside TLS.
    backend = FakeBackend(MESSAGES)
    async with await pa.serve(backend, "127.0.0.1", 0, starttls_context=server_ssl) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        writer.write(b"STLS\r\nCAPA\r\n")
        assert await reader.readline() == b"+OK begin TLS negotiation\r\n"
        assert await reader.read() == b""  # closed, CAPA never answered
        writer.close()


async def test_poplib_fetches_byte_exact(running: Running) -> None:
    def fetch() -> list[bytes]:
        client = poplib.POP3("127.0.0.1", running.port, timeout=10)
        client.user("alice")
        client.pass_("secret")
        count, _ = client.stat()
        bodies = [b"\r\n".join(client.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
        client.quit()
        return bodies

    assert await asyncio.to_thread(fetch) == [crlf(m) for m in MESSAGES]


async def test_cancelled_retr_leaves_the_client_unusable(running: Running) -> None:
    async with pa.connect("127.0.0.1", running.port, tls=None) as client:
        await client.login("alice", "secret")
        with pytest.raises(RuntimeError):
            async for _ in client.iter_retr(1):
                raise RuntimeError("stop reading half-way")
        with pytest.raises(ConnectionError, match="unusable"):
            await client.noop()
        with pytest.raises(ConnectionError, match="unusable"):
            await client.noop()


def test_bad_tls_mode() -> None:
    with pytest.raises(ValueError, match="tls must be"):
        pa.connect("localhost", tls="sometimes")  # type: ignore[arg-type]


def test_default_ports() -> None:
    assert pa.connect("h").port == 995
    assert pa.connect("h", tls="starttls").port == 110
    assert pa.connect("h", tls=None).port == 110


async def test_catching_in_use_then_leaving_normally_is_quiet() -> None:
    # Like Dovecot: -ERR [IN-USE] to PASS, then the server hangs up.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ready\r\n")
        await reader.readline()  # CAPA
        writer.write(b"+OK\r\nUSER\r\n.\r\n")
        await reader.readline()  # USER
        writer.write(b"+OK\r\n")
        await reader.readline()  # PASS
        writer.write(b"-ERR [IN-USE] locked\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        async with pa.connect("127.0.0.1", port, tls=None) as client:
            with pytest.raises(pa.InUseError):
                await client.login("alice", "secret", mechanism="USER")


async def test_stls_injection_in_a_later_segment_is_dropped() -> None:
    # The plaintext comes in its own segment, after STLS was read but before
    # the handshake: the binding must not hand it to the TLS session.
    import trustme as _trustme

    ca = _trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    backend = FakeBackend(MESSAGES)
    async with await pa.serve(backend, "127.0.0.1", 0, starttls_context=context) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        writer.write(b"STLS\r\n")
        await writer.drain()
        writer.write(b"USER mallory\r\n")
        await writer.drain()
        assert await reader.readline() == b"+OK begin TLS negotiation\r\n"
        rest = await reader.read()
        assert b"+OK" not in rest  # USER was never answered
        writer.close()


async def test_shutdown_during_a_slow_open_still_releases_the_lock() -> None:
    import threading

    backend = FakeBackend(MESSAGES)
    opening = threading.Event()
    proceed = threading.Event()
    real_open = backend.open

    def slow_open(username: str) -> object:
        opening.set()
        proceed.wait(5)
        return real_open(username)

    backend.open = slow_open  # type: ignore[method-assign]
    server = await pa.serve(backend, "127.0.0.1", 0, failed_login_delay=0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await reader.readline()
    writer.write(b"USER alice\r\nPASS secret\r\n")
    await asyncio.to_thread(opening.wait, 5)
    server.close()  # cancels the session while the worker thread is opening
    proceed.set()
    await server.wait_closed()
    writer.close()
    assert backend.closed == backend.opened == 1  # the maildrop was released


async def test_client_timeout_when_the_server_says_nothing() -> None:
    # A listener that never accepts: the kernel completes the handshake, and
    # no greeting ever comes.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with pa.connect("127.0.0.1", listener.getsockname()[1], tls=None, timeout=0.2):
                pass
        assert 0.15 < loop.time() - started < 5


async def test_client_timeout_in_the_middle_of_a_session_leaves_it_unusable() -> None:
    tail: list[bytes] = []
    listener, thread = fake_server([b""], tail)  # greets, reads CAPA, never answers
    with listener:
        client = pa.connect("127.0.0.1", listener.getsockname()[1], tls=None, timeout=0.2)
        await client.open()
        with pytest.raises(TimeoutError):
            await client.capa()
        with pytest.raises(ConnectionError):
            await client.capa()  # out of step: never reused
        client.close()
        await asyncio.to_thread(thread.join, 10)
    assert tail == [b""]  # after the timeout nothing more was sent (no QUIT)


def test_wait_closed_returns_while_a_finished_session_is_still_listed() -> None:
    """``wait_closed`` does not spin on a session that ended a moment ago.

    A finished session task leaves the server's set only when its done callback
    runs, on the loop's next turn. Since Python 3.12, ``gather()`` of finished
    tasks completes without yielding to the loop, so a wait that looped on the
    set spun for ever (seen on 3.12 in the version tier). The wait runs in a
    thread of its own, so that a spin fails this test instead of hanging it.
    """
    import threading

    async def main() -> None:
        server = await pa.serve(FakeBackend(MESSAGES), "127.0.0.1", 0)
        finished = asyncio.ensure_future(asyncio.sleep(0))
        await finished
        server._tasks.add(finished)  # as the server keeps a session's task
        finished.add_done_callback(server._tasks.discard)  # runs on the next turn
        server.close()
        await server.wait_closed()

    returned = threading.Event()

    def run() -> None:
        asyncio.run(main())
        returned.set()

    threading.Thread(target=run, daemon=True).start()
    assert returned.wait(10), "wait_closed did not return"


async def test_storage_calls_run_in_the_context_of_the_server() -> None:
    # As asyncio.to_thread: a storage that logs or traces with contextvars sees the
    # values set where the server was started, in its worker threads.
    import contextvars

    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")
    tenant.set("acme")
    backend = FakeBackend(MESSAGES)
    seen: list[str] = []
    real_open = backend.open

    def open_(username: str) -> object:
        seen.append(tenant.get())
        return real_open(username)

    backend.open = open_  # type: ignore[method-assign]
    async with await pa.serve(backend, "127.0.0.1", 0, quick_read_size=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        writer.write(b"USER alice\r\nPASS secret\r\nQUIT\r\n")
        await writer.drain()
        assert (await reader.read()).count(b"+OK") == 3  # USER, PASS, QUIT
        writer.close()
    assert seen == ["acme"]
