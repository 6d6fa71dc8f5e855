"""pop3_trio: what only this binding has (cancellation, nursery.start), over loopback.

What every client and server share (every command, locks, SASL, TLS, streaming...)
is tested once for every pair of bindings in tests/test_conformance.py. The
binding-specific helpers sit in the "binding" section below.
"""

from __future__ import annotations

import logging
import poplib
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import pytest
import trio

import pop3_trio as pt
from helpers import FakeBackend, crlf, log_fields, server_lines

T = TypeVar("T")

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nHello.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n.\n..two\nno final newline",
    b"Subject: crlf\r\n\r\nalready CRLF\r\n",
]
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]


# --- the binding: the only trio-specific part --------------------------------------------

binding = pt
connect = pt.connect


@asynccontextmanager
async def serving(backend: FakeBackend, **options: Any) -> AsyncIterator[pt.Server]:
    """A server on 127.0.0.1 (any free port) for the duration of the block."""
    async with trio.open_nursery() as nursery:
        server: pt.Server = await nursery.start(
            partial(pt.serve, backend, "127.0.0.1", 0, **options)
        )
        yield server
        nursery.cancel_scope.cancel()


async def in_thread(function: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(function)


async def sleep(seconds: float) -> None:
    await trio.sleep(seconds)


class RawPeer:
    """A bare TCP connection, to speak POP3 by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    @asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[RawPeer]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            yield cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def readline(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = await self.stream.receive_some(4096)
            if not data:
                break
            self.buffer += data
        line, sep, self.buffer = self.buffer.partition(b"\r\n")
        return line + sep

    async def read_to_end(self) -> bytes:
        while data := await self.stream.receive_some(4096):
            self.buffer += data
        out, self.buffer = self.buffer, b""
        return out


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never says a word; yields its port."""

    async def handler(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


pytestmark = pytest.mark.anyio


# --- shared helpers and fixtures ------------------------------------------------------


class Running:
    def __init__(self, server: pt.Server, backend: FakeBackend) -> None:
        self.server = server
        self.backend = backend
        self.port = server.port


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    backend = FakeBackend(MESSAGES)
    async with serving(backend, failed_login_delay=0, apop=True, mechanisms=MECHANISMS) as server:
        yield Running(server, backend)


# --- the tests --------------------------------------------------------------------------


async def test_abandoned_retr_many_leaves_the_client_unusable(running: Running) -> None:
    async with connect("127.0.0.1", running.port, tls=None) as client:
        await client.login("alice", "secret")
        async for _ in client.retr_many([1, 2, 3], delete=True):
            break
        with pytest.raises(ConnectionError, match="unusable"):
            await client.stat()
    await sleep(0.05)
    assert running.backend.committed == []  # nothing deleted


async def test_failed_login_is_answered_late() -> None:
    backend = FakeBackend(MESSAGES)
    async with serving(backend, failed_login_delay=0.2) as server:
        async with connect("127.0.0.1", server.port, tls=None) as client:
            start = trio.current_time()
            with pytest.raises(binding.AuthError):
                await client.login("alice", "wrong")
            assert trio.current_time() - start >= 0.2


async def test_utf8(running: Running) -> None:
    async with connect("127.0.0.1", running.port, tls=None) as client:
        caps = await client.capa()
        assert caps is not None and caps.utf8
        await client.utf8()  # RFC 6856: in AUTHORIZATION state
        await client.login("alice", "secret")
        assert (await client.stat())[0] == 3


async def test_connection_refused() -> None:
    async with silent_server() as port:
        pass  # the port is free again
    with pytest.raises(OSError):
        async with connect("127.0.0.1", port, tls=None):
            pass


async def test_stls_injection_is_dropped(server_ssl: ssl.SSLContext) -> None:
    # CVE-2011-0411: plaintext pipelined behind STLS must never run inside TLS.
    backend = FakeBackend(MESSAGES)
    async with serving(backend, starttls_context=server_ssl) as server:
        async with RawPeer.open(server.port) as peer:
            await peer.readline()
            await peer.send(b"STLS\r\nCAPA\r\n")
            assert await peer.readline() == b"+OK begin TLS negotiation\r\n"
            assert await peer.read_to_end() == b""  # closed, CAPA never answered


async def test_poplib_fetches_byte_exact(running: Running) -> None:
    def fetch() -> list[bytes]:
        client = poplib.POP3("127.0.0.1", running.port, timeout=10)
        client.user("alice")
        client.pass_("secret")
        count, _ = client.stat()
        bodies = [b"\r\n".join(client.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
        client.quit()
        return bodies

    assert await in_thread(fetch) == [crlf(m) for m in MESSAGES]


async def test_abandoned_retr_leaves_the_client_unusable(running: Running) -> None:
    async with connect("127.0.0.1", running.port, tls=None) as client:
        await client.login("alice", "secret")
        with pytest.raises(RuntimeError):
            async for _ in client.iter_retr(1):
                raise RuntimeError("stop reading half-way")
        with pytest.raises(ConnectionError, match="unusable"):
            await client.noop()
        with pytest.raises(ConnectionError, match="unusable"):
            await client.noop()


async def test_cancelled_retr_leaves_the_client_unusable() -> None:
    big = b"Subject: big\n\n" + (b"y" * 76 + b"\n") * 20_000  # about 1.5 MB
    backend = FakeBackend([big, MESSAGES[0]])
    async with serving(backend) as server:
        # Leaving the block after the interruption sends no QUIT, so nothing is
        # deleted, and says so since message 2 was marked.
        with pytest.raises(ConnectionError, match="marked for deletion were not deleted"):
            async with connect("127.0.0.1", server.port, tls=None) as client:
                await client.login("alice", "secret")
                await client.dele(2)
                with trio.CancelScope() as scope:
                    async for _ in client.iter_retr(1):
                        scope.cancel()  # cancelled at the next network wait, mid-answer
                assert scope.cancelled_caught
                with pytest.raises(ConnectionError, match="unusable"):
                    await client.noop()
        await sleep(0.05)
        assert backend.committed == []


async def test_cancelled_block_sends_no_quit(running: Running) -> None:
    with trio.CancelScope() as scope:
        async with connect("127.0.0.1", running.port, tls=None) as client:
            await client.login("alice", "secret")
            await client.dele(1)
            scope.cancel()
            await sleep(1)  # cancelled here
    assert scope.cancelled_caught
    await sleep(0.05)
    assert running.backend.committed == []  # nothing deleted


async def test_client_timeout() -> None:
    async with silent_server() as port:
        with pytest.raises(TimeoutError):
            async with connect("127.0.0.1", port, tls=None, timeout=0.2):
                pass


def test_bad_tls_mode() -> None:
    with pytest.raises(ValueError, match="tls must be"):
        connect("localhost", tls="sometimes")  # type: ignore[arg-type]


def test_default_ports() -> None:
    assert connect("h").port == 995
    assert connect("h", tls="starttls").port == 110
    assert connect("h", tls=None).port == 110


async def test_a_line_per_login_attempt_and_one_per_session(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pop3.server")
    async with connect("127.0.0.1", running.port, tls=None) as client:
        await client.login("alice", "secret")
    with pytest.raises(binding.AuthError):
        async with connect("127.0.0.1", running.port, tls=None) as client:
            await client.login("alice", "wrong")
    await sleep(0.05)
    lines = server_lines(caplog)
    logged = [log_fields(line) for line in lines]
    assert [(event, fields["user"]) for event, fields in logged] == [
        ("login", "<alice>"),
        ("session ended", "<alice>"),
        ("auth failed", "<alice>"),
        ("session ended", "<>"),
    ], lines
    assert logged[2][1]["attempts"] == logged[3][1]["failed"] == "1"
    assert all("secret" not in line and "wrong" not in line for line in lines)
