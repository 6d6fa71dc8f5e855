"""pop3_asyncio's client against a real Dovecot on 127.0.0.1 (see peers.py).

Needs the Debian packages dovecot-core and dovecot-pop3d (``make peers``); without
them the tests skip, or fail when ``POP3_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import asyncio
import re

import anyio
import pytest

import pop3_asyncio as pa
from peers import USERS, Dovecot, DovecotFactory, as_received, crlf_size
from pop3_asyncio._stream import Stream

pytest_plugins = ["peers"]
pytestmark = pytest.mark.anyio

PASSWORD = USERS["alice"]
BIG_LINES = [b"x" * (i % 997) if i % 7 else b"." * (i % 5 + 1) for i in range(3000)]
MESSAGES = [
    b"From: a@example.org\nTo: alice@example.org\nSubject: one\n\nHello.\nSecond line.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n..two dots\n.\nend\n",
    b"Subject: stored with CRLF\r\nX-Test: 3\r\n\r\nalready CRLF\r\n",
    b"From: big@example.org\nSubject: big\n\n" + b"\n".join(BIG_LINES) + b"\n",
]
BOB_MESSAGES = [b"Subject: for bob\n\nonly bob sees this\n"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(dovecot: DovecotFactory) -> Dovecot:
    return dovecot({"alice": MESSAGES, "bob": BOB_MESSAGES})


def plain(server: Dovecot) -> pa.Client:
    return pa.connect(server.host, server.port, tls=None, timeout=10)


def head(message: bytes, body_lines: int) -> bytes:
    """What TOP n body_lines should give for a stored message."""
    received = as_received(message)
    header, _, body = received.partition(b"\r\n\r\n")
    lines = body.split(b"\r\n")[:-1]
    return header + b"\r\n\r\n" + b"".join(line + b"\r\n" for line in lines[:body_lines])


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every chunk of bytes pop3_asyncio's clients write, recorded."""
    chunks: list[bytes] = []
    write = Stream.write

    async def spy(self: Stream, data: bytes) -> None:
        chunks.append(data)
        await write(self, data)

    monkeypatch.setattr(Stream, "write", spy)
    return chunks


def raw_socket(client: pa.Client) -> asyncio.trsock.TransportSocket:
    """The client's TCP socket (for ``closed``); pop3_asyncio has no public way yet."""
    stream = client._stream
    assert stream is not None and stream.transport is not None
    sock: asyncio.trsock.TransportSocket = stream.transport.get_extra_info("socket")
    return sock


async def closed(sock: asyncio.trsock.TransportSocket) -> None:
    """Wait until the client has really closed its socket.

    With TLS, leaving ``async with`` only starts the close_notify exchange; if the
    event loop ends first (as the test's does, right after), the socket leaks and a
    ResourceWarning fails whichever test runs when it is garbage-collected.
    """
    with anyio.fail_after(5):
        while sock.fileno() != -1:
            await anyio.sleep(0.005)


def logins(server: Dovecot) -> list[str]:
    return re.findall(r"Login: user=<[^>]*>, method=([A-Z0-9-]+).*", server.log())


# --- logging in ---------------------------------------------------------------------------

# Dovecot logs USER/PASS as method=PLAIN.
LOGIN_CELLS = [
    ("USER", "PLAIN"),
    ("APOP", "APOP"),
    ("PLAIN", "PLAIN"),
    ("LOGIN", "LOGIN"),
    ("CRAM-MD5", "CRAM-MD5"),
    ("SCRAM-SHA-1", "SCRAM-SHA-1"),
    ("SCRAM-SHA-256", "SCRAM-SHA-256"),
]


@pytest.mark.parametrize(("mechanism", "logged"), LOGIN_CELLS)
async def test_login(server: Dovecot, sent: list[bytes], mechanism: str, logged: str) -> None:
    if mechanism not in ("USER", "APOP") and mechanism not in server.sasl:
        pytest.skip(f"Dovecot {server.version} does not offer {mechanism}")
    async with plain(server) as client:
        await client.login("alice", PASSWORD, mechanism=mechanism)
        assert await client.stat() == (len(MESSAGES), sum(map(crlf_size, MESSAGES)))
    wire = b"".join(sent)
    command = {"USER": b"USER alice\r\n", "APOP": b"APOP alice "}
    assert command.get(mechanism, b"AUTH " + mechanism.encode()) in wire
    assert (b"AUTH " in wire) == (mechanism not in command)
    await server.await_log(r"Disconnected: Logged out")
    line = await server.await_log(rf"Login: user=<alice>, method={logged}\b.*")
    assert "secured" in line  # loopback: Dovecot counts it as secure


async def test_login_picks_scram_on_its_own(server: Dovecot) -> None:
    async with plain(server) as client:
        await client.login("bob", USERS["bob"])
        assert await client.stat() == (1, crlf_size(BOB_MESSAGES[0]))
    expected = "SCRAM-SHA-256" if "SCRAM-SHA-256" in server.sasl else "PLAIN"
    await server.await_log(rf"Login: user=<bob>, method={expected}\b")


@pytest.mark.parametrize("mechanism", ["USER", "PLAIN", "APOP", "CRAM-MD5"])
async def test_wrong_password(server: Dovecot, sent: list[bytes], mechanism: str) -> None:
    async with plain(server) as client:
        with pytest.raises(pa.AuthError) as caught:
            await client.login("alice", "not-the-password", mechanism=mechanism)
        assert caught.value.code is not None and str(caught.value.code) == "AUTH"
        command = {"USER": b"USER alice\r\n", "APOP": b"APOP alice "}
        assert command.get(mechanism, b"AUTH " + mechanism.encode()) in b"".join(sent)
        # The session goes on. (A second login would wait for Dovecot's auth
        # penalty: 4 s after one failure from the same address.)
        caps = await client.capa(refresh=True)
        assert caps is not None and caps.sasl
    line = await server.await_log(r"Disconnected: .*auth failed.*")
    assert "auth failed, 1 attempts" in line and "user=<alice>" in line, line
    assert logins(server) == []


async def test_stls(server: Dovecot, sent: list[bytes]) -> None:
    assert "STLS" in server.capabilities
    async with pa.connect(
        server.host, server.port, tls="starttls", ssl_context=server.client_context(), timeout=10
    ) as client:
        assert client.session.connection.tls_active
        assert b"".join(sent).startswith(b"CAPA\r\nSTLS\r\n")
        caps = await client.capa()
        assert caps is not None and not caps.stls  # RFC 2595: not offered again after TLS
        await client.login("alice", PASSWORD, mechanism="PLAIN")
        assert await client.retr(1) == as_received(MESSAGES[0])
        sock = raw_socket(client)
    await closed(sock)
    assert "TLS" in await server.await_log(r"Login: user=<alice>.*")


async def test_implicit_tls(server: Dovecot) -> None:
    async with pa.connect(
        server.host, server.pop3s_port, ssl_context=server.client_context(), timeout=10
    ) as client:
        assert client.session.connection.tls_active
        caps = await client.capa()
        assert caps is not None and not caps.stls
        await client.login("alice", PASSWORD)
        assert await client.retr(3) == as_received(MESSAGES[2])
        sock = raw_socket(client)
    await closed(sock)
    assert "TLS" in await server.await_log(r"Login: user=<alice>.*")


async def test_implicit_tls_refuses_an_untrusted_certificate(server: Dovecot) -> None:
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        async with pa.connect(server.host, server.pop3s_port, timeout=10):
            pass  # pragma: no cover - the handshake fails


# --- reading ------------------------------------------------------------------------------


async def test_retr_is_byte_exact_and_sizes_match(server: Dovecot) -> None:
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        sizes = await client.list()
        assert sizes == {n: crlf_size(m) for n, m in enumerate(MESSAGES, 1)}
        assert await client.list(2) == {2: sizes[2]}
        for n, message in enumerate(MESSAGES, 1):
            raw = await client.retr(n)
            assert raw == as_received(message)
            assert len(raw) == sizes[n]
        chunks = [chunk async for chunk in client.iter_retr(4)]
        assert len(chunks) > 1 and b"".join(chunks) == as_received(MESSAGES[3])


async def test_message_without_final_newline(dovecot: DovecotFactory) -> None:
    # Dovecot's LIST size counts the stored octets; RETR then adds the CRLF the
    # message lacks before the terminating dot, so the client gets two more octets.
    message = b"Subject: no final newline\n\nlast line"
    server = dovecot({"alice": [message]})
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        assert await client.list() == {1: crlf_size(message)}
        assert await client.retr(1) == as_received(message)
        assert len(as_received(message)) == crlf_size(message) + 2


async def test_uidl(server: Dovecot) -> None:
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        uids = await client.uidl()
        assert sorted(uids) == list(range(1, len(MESSAGES) + 1))
        assert len(set(uids.values())) == len(MESSAGES)
        assert await client.uidl(2) == {2: uids[2]}
    async with plain(server) as client:  # stable across sessions (RFC 1939 section 7)
        await client.login("alice", PASSWORD)
        assert await client.uidl() == uids


async def test_top(server: Dovecot) -> None:
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        assert await client.top(1, 0) == head(MESSAGES[0], 0)
        assert await client.top(1, 1) == head(MESSAGES[0], 1)
        assert await client.top(2, 3) == head(MESSAGES[1], 3)  # stuffed lines unstuffed
        assert await client.top(3, 100) == as_received(MESSAGES[2])


async def test_retr_many_pipelined(server: Dovecot) -> None:
    async with plain(server) as client:
        caps = await client.capa()
        assert caps is not None and caps.pipelining
        await client.login("alice", PASSWORD)
        got = [(n, raw) async for n, raw in client.retr_many([4, 2, 1, 3])]
    assert got == [(n, as_received(MESSAGES[n - 1])) for n in (4, 2, 1, 3)]
    assert "retr=4/" in await server.await_log(r"Disconnected: Logged out.*")


async def test_retr_many_deleting(server: Dovecot) -> None:
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        got = [n async for n, _ in client.retr_many([1, 3], delete=True)]
    assert got == [1, 3]
    assert sorted(server.stored("alice").values()) == sorted([MESSAGES[1], MESSAGES[3]])


# --- locking and deleting -----------------------------------------------------------------


async def test_second_session_gets_in_use(server: Dovecot) -> None:
    async with plain(server) as first:
        await first.login("alice", PASSWORD)
        # Dovecot waits 10 s (a fixed dotlock timeout) before it gives up, and
        # then closes the connection: leave without QUIT.
        with pytest.raises(pa.InUseError) as caught:
            async with pa.connect(server.host, server.port, tls=None, timeout=30) as second:
                await second.login("alice", PASSWORD)
        assert caught.value.code is not None and str(caught.value.code) == "IN-USE"
        async with plain(server) as other_user:  # the lock is per maildrop
            await other_user.login("bob", USERS["bob"])
        assert (await first.stat())[0] == len(MESSAGES)
    async with plain(server) as again:  # QUIT released it
        await again.login("alice", PASSWORD)
    assert "Couldn't lock POP3 session" in server.log()


async def test_dele_and_quit_deletes_exactly_that_message(server: Dovecot) -> None:
    names = sorted(server.stored("alice"))  # delivery order
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        await client.dele(2)
        with pytest.raises(pa.Pop3Error):
            await client.retr(2)
        assert (await client.stat())[0] == len(MESSAGES) - 1
    stored = server.stored("alice")
    assert sorted(stored) == [names[0], names[2], names[3]]
    assert sorted(stored.values()) == sorted([MESSAGES[0], MESSAGES[2], MESSAGES[3]])
    assert len(server.stored("bob")) == 1


class AbandonedError(Exception):
    pass


async def test_dele_then_dropped_connection_deletes_nothing(server: Dovecot) -> None:
    before = server.stored("alice")
    with pytest.raises(AbandonedError):
        async with plain(server) as client:
            await client.login("alice", PASSWORD)
            for n in range(1, len(MESSAGES) + 1):
                await client.dele(n)
            raise AbandonedError
    await server.await_log(r"Disconnected: Connection closed")
    assert server.stored("alice") == before
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        assert (await client.stat())[0] == len(MESSAGES)


async def test_rset_undoes_dele(server: Dovecot) -> None:
    async with plain(server) as client:
        await client.login("alice", PASSWORD)
        await client.dele(1)
        await client.rset()
    assert len(server.stored("alice")) == len(MESSAGES)


# --- every binding's client against Dovecot ---------------------------------------------


def _fetch_with_sync_client(server: Dovecot, ca_context: object) -> list[object]:
    import pop3_sync

    with pop3_sync.connect(server.host, server.port, tls=None, timeout=10) as client:
        client.login("alice", PASSWORD, mechanism="USER")
        sizes = client.list()
        uids = client.uidl()
        messages = [client.retr(n) for n in sorted(sizes)]
        many = [m for _, m in client.retr_many(sorted(sizes))]
    with pop3_sync.connect(
        "localhost",
        server.pop3s_port,
        ssl_context=ca_context,
        timeout=10,  # type: ignore[arg-type]
    ) as client:
        client.login("alice", PASSWORD, mechanism="CRAM-MD5")
        tls_first = client.retr(1)
    return [sizes, uids, messages, many, tls_first]


def _fetch_with_trio_client(server: Dovecot, ca_context: object) -> list[object]:
    import trio

    import pop3_trio

    async def main() -> list[object]:
        async with pop3_trio.connect(server.host, server.port, tls=None, timeout=10) as client:
            await client.login("alice", PASSWORD, mechanism="USER")
            sizes = await client.list()
            uids = await client.uidl()
            messages = [await client.retr(n) for n in sorted(sizes)]
            many = [m async for _, m in client.retr_many(sorted(sizes))]
        async with pop3_trio.connect(
            "localhost",
            server.pop3s_port,
            ssl_context=ca_context,
            timeout=10,  # type: ignore[arg-type]
        ) as client:
            await client.login("alice", PASSWORD, mechanism="CRAM-MD5")
            tls_first = await client.retr(1)
        return [sizes, uids, messages, many, tls_first]

    return trio.run(main)


@pytest.mark.parametrize("binding", ["sync", "trio"])
async def test_every_binding_fetches_byte_exact_from_dovecot(server: Dovecot, binding: str) -> None:
    fetch = _fetch_with_sync_client if binding == "sync" else _fetch_with_trio_client
    sizes, uids, messages, many, tls_first = await anyio.to_thread.run_sync(
        fetch, server, server.client_context()
    )
    expected = [as_received(m) for m in MESSAGES]
    assert sizes == {n: crlf_size(m) for n, m in enumerate(MESSAGES, 1)}
    assert sorted(uids) == [1, 2, 3, 4] and len(set(uids.values())) == 4  # type: ignore[union-attr]
    assert messages == expected
    assert many == expected
    assert tls_first == expected[0]
    assert len(server.stored("alice")) == len(MESSAGES)  # fetching deleted nothing
