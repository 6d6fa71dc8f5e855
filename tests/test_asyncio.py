"""pop3_asyncio: client against server over real loopback sockets, with real TLS."""

from __future__ import annotations

import asyncio
import io
import poplib
import ssl
import tracemalloc
from collections.abc import AsyncIterator

import pytest
import trustme

import pop3_asyncio as pa
import pop3_sansio as p
from pop3_maildrop import Backend, MemoryStorage, UserDB

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nHello.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n.\n..two\nno final newline",
    b"Subject: crlf\r\n\r\nalready CRLF\r\n",
]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def make_backend(messages: list[bytes] | None = None) -> tuple[Backend, MemoryStorage]:
    storage = MemoryStorage()
    for message in MESSAGES if messages is None else messages:
        storage.add("alice", message)
    return Backend(UserDB.from_pairs({"alice": "secret"}), storage), storage


def crlf(message: bytes) -> bytes:
    out = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") else out + b"\r\n"


class Running:
    def __init__(self, server: pa.Server, storage: MemoryStorage) -> None:
        self.server = server
        self.storage = storage
        self.port = server.port


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    backend, storage = make_backend()
    async with await pa.serve(
        backend,
        "127.0.0.1",
        0,
        failed_login_delay=0,
        apop=True,
        mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"],
    ) as server:
        yield Running(server, storage)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


async def test_every_command(running: Running) -> None:
    async with pa.connect("127.0.0.1", running.port, tls=None) as client:
        caps = await client.capa()
        assert caps is not None and caps.pipelining and caps.uidl and caps.top
        assert "maildrop has 3" in await client.login("alice", "secret")
        sizes = {i: p.message_size(m) for i, m in enumerate(MESSAGES, 1)}
        assert await client.stat() == (3, sum(sizes.values()))
        assert await client.list() == sizes
        assert await client.list(2) == {2: sizes[2]}
        uids = await client.uidl()
        assert sorted(uids) == [1, 2, 3] and len(set(uids.values())) == 3
        assert await client.uidl(1) == {1: uids[1]}
        for n, message in enumerate(MESSAGES, 1):
            assert await client.retr(n) == crlf(message)
        assert await client.top(1, 0) == b"From: a@example.org\r\nSubject: one\r\n\r\n"
        chunks = [chunk async for chunk in client.iter_retr(2)]
        assert all(type(c) is bytes for c in chunks)
        assert b"".join(chunks) == crlf(MESSAGES[1])
        out = io.BytesIO()
        assert await client.retr_to(3, out) == len(crlf(MESSAGES[2]))
        assert await client.noop() == ""
        await client.dele(1)
        await client.rset()
        await client.dele(2)
        with pytest.raises(pa.Pop3Error):
            await client.retr(2)
    # QUIT committed the one deletion still marked.
    assert running.storage.contents("alice") == [MESSAGES[0], MESSAGES[2]]


async def test_retr_many_pipelined_and_deleting(running: Running) -> None:
    async with pa.connect("127.0.0.1", running.port, tls=None) as client:
        await client.login("alice", "secret")
        got = [(n, m) async for n, m in client.retr_many([3, 1, 2], delete=True)]
    assert got == [(3, crlf(MESSAGES[2])), (1, crlf(MESSAGES[0])), (2, crlf(MESSAGES[1]))]
    assert running.storage.contents("alice") == []


async def test_dropped_connection_deletes_nothing(running: Running) -> None:
    with pytest.raises(RuntimeError):
        async with pa.connect("127.0.0.1", running.port, tls=None) as client:
            await client.login("alice", "secret")
            await client.dele(1)
            raise RuntimeError("the application failed mid-way")
    await asyncio.sleep(0.05)
    assert len(running.storage.contents("alice")) == 3
    # And the lock was released: a new session gets in.
    async with pa.connect("127.0.0.1", running.port, tls=None) as client:
        await client.login("alice", "secret")


async def test_second_session_is_in_use(running: Running) -> None:
    async with pa.connect("127.0.0.1", running.port, tls=None) as first:
        await first.login("alice", "secret")
        async with pa.connect("127.0.0.1", running.port, tls=None) as second:
            with pytest.raises(pa.InUseError) as info:
                await second.login("alice", "secret")
            assert info.value.code == p.IN_USE


async def test_wrong_password_is_auth_error(running: Running) -> None:
    async with pa.connect("127.0.0.1", running.port, tls=None) as client:
        with pytest.raises(pa.AuthError) as info:
            await client.login("alice", "wrong")
        assert info.value.code == p.AUTH


@pytest.mark.parametrize(
    "mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]
)
async def test_every_sasl_mechanism(running: Running, mechanism: str) -> None:
    async with pa.connect("127.0.0.1", running.port, tls=None) as client:
        await client.auth(mechanism, "alice", password="secret")
        assert await client.stat() == (3, sum(map(p.message_size, MESSAGES)))


async def test_apop(running: Running) -> None:
    async with pa.connect("127.0.0.1", running.port, tls=None) as client:
        assert client.session.greeting is not None and client.session.greeting.timestamp
        await client.apop("alice", "secret")
        assert (await client.stat())[0] == 3


async def test_starttls(client_ssl: ssl.SSLContext, server_ssl: ssl.SSLContext) -> None:
    backend, _ = make_backend()
    async with (
        await pa.serve(
            backend, "127.0.0.1", 0, starttls_context=server_ssl, allow_plaintext=False
        ) as server,
        pa.connect("localhost", server.port, tls="starttls", ssl_context=client_ssl) as client,
    ):
        assert client.session.connection.tls_active
        caps = await client.capa()
        assert caps is not None and not caps.stls and caps.user
        await client.login("alice", "secret")
        assert await client.retr(1) == crlf(MESSAGES[0])


async def test_implicit_tls(client_ssl: ssl.SSLContext, server_ssl: ssl.SSLContext) -> None:
    backend, _ = make_backend()
    async with (
        await pa.serve(
            backend, "127.0.0.1", 0, ssl_context=server_ssl, allow_plaintext=False
        ) as server,
        pa.connect("localhost", server.port, ssl_context=client_ssl) as client,
    ):
        await client.login("alice", "secret")
        assert await client.retr(3) == crlf(MESSAGES[2])


async def test_certificates_are_verified_by_default(server_ssl: ssl.SSLContext) -> None:
    backend, _ = make_backend()
    async with await pa.serve(backend, "127.0.0.1", 0, ssl_context=server_ssl) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with pa.connect("localhost", server.port):
                pass


async def test_starttls_refused_when_server_lacks_it(running: Running) -> None:
    with pytest.raises(pa.Pop3Error, match="STLS"):
        async with pa.connect("127.0.0.1", running.port, tls="starttls"):
            pass


async def test_stls_injection_is_dropped(server_ssl: ssl.SSLContext) -> None:
    # CVE-2011-0411: plaintext pipelined behind STLS must never run inside TLS.
    backend, _ = make_backend()
    async with await pa.serve(backend, "127.0.0.1", 0, starttls_context=server_ssl) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        writer.write(b"STLS\r\nCAPA\r\n")
        assert await reader.readline() == b"+OK begin TLS negotiation\r\n"
        assert await reader.read() == b""  # closed, CAPA never answered
        writer.close()


async def test_large_message_is_streamed_in_bounded_memory() -> None:
    big = b"Subject: big\n\n" + (b"x" * 76 + b"\n") * 200_000  # about 15 MB
    backend, _ = make_backend([big])
    async with await pa.serve(backend, "127.0.0.1", 0) as server:
        async with pa.connect("127.0.0.1", server.port, tls=None) as client:
            await client.login("alice", "secret")
            tracemalloc.start()
            total = 0
            async for chunk in client.iter_retr(1):
                total += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert total == p.message_size(big)
    assert peak < 8 << 20, peak  # the server and client together, never the whole message


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


async def test_refused_when_over_the_session_cap() -> None:
    backend, _ = make_backend()
    async with await pa.serve(backend, "127.0.0.1", 0, max_sessions=1) as server:
        async with pa.connect("127.0.0.1", server.port, tls=None):
            with pytest.raises(pa.TemporaryError):
                async with pa.connect("127.0.0.1", server.port, tls=None):
                    pass


async def test_oauth_token_mechanisms() -> None:
    storage = MemoryStorage({"alice": list(MESSAGES)})
    backend = Backend(
        UserDB.from_pairs({"alice": "secret"}),
        storage,
        check_token=lambda user, token: (user, token) == ("alice", "tok"),
    )
    async with await pa.serve(
        backend, "127.0.0.1", 0, mechanisms=["OAUTHBEARER", "XOAUTH2"], failed_login_delay=0
    ) as server:
        for mechanism in ("OAUTHBEARER", "XOAUTH2"):
            async with pa.connect("127.0.0.1", server.port, tls=None) as client:
                await client.login("alice", token="tok", mechanism=mechanism)
                assert (await client.stat())[0] == 3
        async with pa.connect("127.0.0.1", server.port, tls=None) as client:
            with pytest.raises(pa.AuthError):
                await client.login("alice", token="forged")


async def test_autologout_closes_and_deletes_nothing() -> None:
    backend, storage = make_backend()
    async with await pa.serve(backend, "127.0.0.1", 0, autologout=0.3) as server:
        async with pa.connect("127.0.0.1", server.port, tls=None, timeout=5) as client:
            await client.login("alice", "secret")
            await client.dele(1)
            await asyncio.sleep(0.6)  # idle past the autologout
            with pytest.raises((p.RemoteProtocolError, ConnectionError)):
                await client.noop()
    assert len(storage.contents("alice")) == 3


async def test_server_shutdown_commits_nothing_without_quit() -> None:
    backend, storage = make_backend()
    server = await pa.serve(backend, "127.0.0.1", 0)
    client = pa.connect("127.0.0.1", server.port, tls=None, timeout=5)
    await client.open()
    await client.login("alice", "secret")
    await client.dele(1)
    server.close()
    await server.wait_closed()
    with pytest.raises((p.RemoteProtocolError, ConnectionError)):
        await client.noop()
    client.close()
    assert len(storage.contents("alice")) == 3
    # The lock went with the session.
    storage.open("alice").close()
