"""Every binding's client against every binding's server, over loopback, with real TLS.

The behaviours a client and a server share are written once here and run for each
(client, server) pair of asyncio, trio and sync: ids read ``asyncio-client-trio-server``.
The server runs in a thread of its own (``bindings.serving``), so it never shares the
test's event loop; the test runs on its client's loop (the sync client in worker
threads, under asyncio). What only one binding has (cancellation, trio's task_status,
the sync timeouts, the poplib facade, logging) stays in test_asyncio.py,
test_trio.py and test_sync.py.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import ssl
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

import bindings
import pop3_sansio as p
from bindings import ANYIO_BACKEND, NAMES, Client
from helpers import crlf
from pop3_maildrop import Backend, MaildropLocked, MemoryStorage, UserDB

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nHello.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n.\n..two\nno final newline",
    b"Subject: crlf\r\n\r\nalready CRLF\r\n",
]
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]
TOKEN_MECHANISMS = ["XOAUTH2", "OAUTHBEARER"]
PAIRS = [(client, server) for client in NAMES for server in NAMES]

pytestmark = pytest.mark.anyio


# --- the pair under test ---------------------------------------------------------------


@dataclass
class Peers:
    """One (client, server) pair: start servers of the one, connect clients of the other."""

    client: str
    server: str
    stack: contextlib.ExitStack

    def serve(self, backend: Backend, **options: Any) -> int:
        """A server of this pair's binding until the test ends; its port."""
        return self.stack.enter_context(bindings.serving(self.server, backend, **options))

    def connect(
        self, port: int, host: str = "127.0.0.1", *, tls: str | None = None, **kwargs: Any
    ) -> Client:
        """A client of this pair's binding (plaintext unless ``tls`` says otherwise)."""
        return bindings.connect(self.client, host, port, tls=tls, timeout=10, **kwargs)

    @property
    def errors(self) -> Any:
        """The client binding's module, for its exception classes."""
        return bindings.MODULES[self.client]


@pytest.fixture(params=PAIRS, ids=[f"{c}-client-{s}-server" for c, s in PAIRS])
def peers(request: pytest.FixtureRequest) -> Iterator[Peers]:
    client, server = request.param
    with contextlib.ExitStack() as stack:
        yield Peers(client, server, stack)
    # By now the test's event loop is closed: a connection a client left open is
    # garbage, and its ResourceWarning is reported here, against this test.
    gc.collect()


@pytest.fixture
def anyio_backend(peers: Peers) -> str:
    return ANYIO_BACKEND[peers.client]


@dataclass
class Mailbox:
    port: int
    storage: MemoryStorage
    uids: list[str]


def make_backend(messages: list[bytes], **kwargs: Any) -> tuple[Backend, MemoryStorage, list[str]]:
    storage = MemoryStorage()
    uids = [storage.add("alice", message) for message in messages]
    return Backend(UserDB.from_pairs({"alice": "secret"}), storage, **kwargs), storage, uids


@pytest.fixture
def mailbox(peers: Peers) -> Mailbox:
    """alice's three MESSAGES behind a server offering APOP and every SASL mechanism."""
    backend, storage, uids = make_backend(MESSAGES)
    port = peers.serve(backend, failed_login_delay=0, apop=True, mechanisms=MECHANISMS)
    return Mailbox(port, storage, uids)


def is_unlocked(storage: MemoryStorage, user: str) -> bool:
    try:
        storage.open(user).close()
    except MaildropLocked:
        return False
    return True


async def unlocked(storage: MemoryStorage, user: str = "alice") -> None:
    """Wait until no session holds ``user``'s maildrop (the server ends sessions on its own)."""
    with anyio.fail_after(5):
        while not is_unlocked(storage, user):
            await anyio.sleep(0.01)


async def admitted(peers: Peers, port: int) -> None:
    """Wait until the server (``max_sessions=1``) lets a new session in: the last one ended."""
    with anyio.move_on_after(3):
        while True:
            with contextlib.suppress(peers.errors.TemporaryError):
                async with peers.connect(port) as client:
                    await client.login("alice", "secret")
                    return
            await anyio.sleep(0.02)
    pytest.fail("still refused after 3 s: the last session never ended (its connection is open)")


# --- commands ----------------------------------------------------------------------------


async def test_every_command(peers: Peers, mailbox: Mailbox) -> None:
    sizes = {n: len(crlf(m)) for n, m in enumerate(MESSAGES, 1)}
    async with peers.connect(mailbox.port) as client:
        caps = await client.capa()
        assert caps is not None and caps.pipelining and caps.uidl and caps.top
        assert set(MECHANISMS) <= set(caps.sasl)
        assert "maildrop has 3" in await client.login("alice", "secret")
        assert await client.stat() == (3, sum(sizes.values()))
        assert await client.list() == sizes
        assert await client.list(2) == {2: sizes[2]}
        assert await client.uidl() == dict(enumerate(mailbox.uids, 1))
        assert await client.uidl(3) == {3: mailbox.uids[2]}
        for n, message in enumerate(MESSAGES, 1):
            assert await client.retr(n) == crlf(message)
        assert await client.top(1, 0) == b"From: a@example.org\r\nSubject: one\r\n\r\n"
        # The body's first two lines: a leading dot, and a line that is only a dot.
        top = b"From: b@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n.\r\n"
        assert await client.top(2, 2) == top
        chunks = [chunk async for chunk in client.iter_retr(2)]
        assert chunks and all(type(c) is bytes for c in chunks)
        assert b"".join(chunks) == crlf(MESSAGES[1])
        out = io.BytesIO()
        assert await client.retr_to(3, out) == len(crlf(MESSAGES[2]))
        assert out.getvalue() == crlf(MESSAGES[2])
        assert await client.noop() == ""
        await client.dele(1)
        assert await client.stat() == (2, sizes[2] + sizes[3])
        await client.rset()
        assert await client.stat() == (3, sum(sizes.values()))
        await client.dele(2)
        with pytest.raises(peers.errors.Pop3Error):
            await client.retr(2)
        with pytest.raises(peers.errors.Pop3Error):
            await client.list(4)
        assert mailbox.storage.contents("alice") == MESSAGES  # nothing removed before QUIT
    # QUIT committed the one deletion still marked.
    assert mailbox.storage.contents("alice") == [MESSAGES[0], MESSAGES[2]]


async def test_retr_many_pipelined_and_deleting(peers: Peers, mailbox: Mailbox) -> None:
    async with peers.connect(mailbox.port) as client:
        await client.login("alice", "secret")
        got = [(n, m) async for n, m in client.retr_many([3, 1, 2], delete=True)]
        assert got == [(3, crlf(MESSAGES[2])), (1, crlf(MESSAGES[0])), (2, crlf(MESSAGES[1]))]
        assert await client.stat() == (0, 0)
        assert len(mailbox.storage.contents("alice")) == 3  # marked, not yet removed
    assert mailbox.storage.contents("alice") == []


async def test_retr_many_without_delete_keeps_everything(peers: Peers, mailbox: Mailbox) -> None:
    async with peers.connect(mailbox.port) as client:
        await client.login("alice", "secret")
        got = [n async for n, _ in client.retr_many([2, 3])]
        assert got == [2, 3]
    assert mailbox.storage.contents("alice") == MESSAGES


async def test_failed_message_in_a_pipeline_never_desynchronises(
    peers: Peers, mailbox: Mailbox
) -> None:
    async with peers.connect(mailbox.port) as client:
        await client.login("alice", "secret")
        got = []
        with pytest.raises(peers.errors.Pop3Error):
            async for n, _ in client.retr_many([1, 9, 2], delete=True):
                got.append(n)
        assert got == [1]
        # The answers already in flight were read: the next answer is NOOP's own.
        assert await client.noop() == ""
        assert await client.stat() == (2, len(crlf(MESSAGES[1])) + len(crlf(MESSAGES[2])))
    # Message 1 was taken whole before the failure, so QUIT removed it; 2 never was.
    assert mailbox.storage.contents("alice") == MESSAGES[1:]


# --- sessions and locks ------------------------------------------------------------------


async def test_leaving_with_an_exception_deletes_nothing(peers: Peers, mailbox: Mailbox) -> None:
    with pytest.raises(RuntimeError, match="mid-way"):
        async with peers.connect(mailbox.port) as client:
            await client.login("alice", "secret")
            await client.dele(1)
            await client.dele(2)
            raise RuntimeError("the application failed mid-way")
    await unlocked(mailbox.storage)  # the server noticed, and the lock went with the session
    assert mailbox.storage.contents("alice") == MESSAGES
    async with peers.connect(mailbox.port) as client:
        await client.login("alice", "secret")
        assert (await client.stat())[0] == 3


async def test_leaving_an_unusable_connection_says_marks_were_not_deleted(
    peers: Peers, mailbox: Mailbox
) -> None:
    # A RETR loop left early makes the connection unusable, so no QUIT can go
    # out: leaving the block normally must not let the user believe the DELE
    # was committed.
    with pytest.raises(ConnectionError, match=r"1 message.* marked for deletion were not deleted"):
        async with peers.connect(mailbox.port) as client:
            await client.login("alice", "secret")
            await client.dele(1)
            assert client.session.marked == {1}
            async for _ in client.iter_retr(2):
                break
    await unlocked(mailbox.storage)
    assert mailbox.storage.contents("alice") == MESSAGES


async def test_leaving_an_unusable_connection_without_marks_is_quiet(
    peers: Peers, mailbox: Mailbox
) -> None:
    async with peers.connect(mailbox.port) as client:
        await client.login("alice", "secret")
        await client.dele(1)
        await client.rset()
        assert client.session.marked == set()
        async for _ in client.iter_retr(2):
            break
    await unlocked(mailbox.storage)
    assert mailbox.storage.contents("alice") == MESSAGES


async def test_explicit_quit_commits(peers: Peers, mailbox: Mailbox) -> None:
    async with peers.connect(mailbox.port) as client:
        await client.login("alice", "secret")
        await client.dele(2)
        await client.quit()
        assert mailbox.storage.contents("alice") == [MESSAGES[0], MESSAGES[2]]
    # Leaving the block after QUIT neither fails nor undoes anything.
    assert mailbox.storage.contents("alice") == [MESSAGES[0], MESSAGES[2]]


async def test_autologout_drops_the_session_and_deletes_nothing(peers: Peers) -> None:
    backend, storage, _ = make_backend(MESSAGES)
    port = peers.serve(backend, autologout=0.2)
    with pytest.raises((p.RemoteProtocolError, ConnectionError)):
        async with peers.connect(port) as client:
            await client.login("alice", "secret")
            await client.dele(1)
            await unlocked(storage)  # idle until the server ends the session on its own
            await client.noop()
    assert storage.contents("alice") == MESSAGES


async def test_server_shutdown_drops_the_session_and_deletes_nothing(peers: Peers) -> None:
    backend, storage, _ = make_backend(MESSAGES)
    with contextlib.ExitStack() as server:
        port = server.enter_context(bindings.serving(peers.server, backend))
        with pytest.raises((p.RemoteProtocolError, ConnectionError)):
            async with peers.connect(port) as client:
                await client.login("alice", "secret")
                await client.dele(1)
                server.close()  # blocks until every session has ended
                await client.noop()
    storage.open("alice").close()  # the lock went with the session, at once
    assert storage.contents("alice") == MESSAGES


async def test_second_session_is_in_use(peers: Peers, mailbox: Mailbox) -> None:
    async with peers.connect(mailbox.port) as first:
        await first.login("alice", "secret")
        async with peers.connect(mailbox.port) as second:
            with pytest.raises(peers.errors.InUseError) as info:
                await second.login("alice", "secret")
            assert info.value.code == p.IN_USE
        assert (await first.stat())[0] == 3  # the first session is unharmed


async def test_refused_when_over_the_session_cap(peers: Peers) -> None:
    backend, _, _ = make_backend(MESSAGES)
    port = peers.serve(backend, max_sessions=1)
    async with peers.connect(port) as first:
        with pytest.raises(peers.errors.TemporaryError):
            async with peers.connect(port):
                pass
        assert "maildrop has 3" in await first.login("alice", "secret")
    await admitted(peers, port)


# --- authentication ----------------------------------------------------------------------


async def test_wrong_password_is_auth_error(peers: Peers, mailbox: Mailbox) -> None:
    async with peers.connect(mailbox.port) as client:
        with pytest.raises(peers.errors.AuthError) as info:
            await client.login("alice", "wrong")
        assert info.value.code == p.AUTH
        # The session stays in AUTHORIZATION and takes the right password next.
        await client.login("alice", "secret")
        assert (await client.stat())[0] == 3


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_every_sasl_mechanism(peers: Peers, mailbox: Mailbox, mechanism: str) -> None:
    async with peers.connect(mailbox.port) as client:
        with pytest.raises(peers.errors.AuthError):
            await client.auth(mechanism, "alice", password="wrong")
        await client.auth(mechanism, "alice", password="secret")
        assert await client.stat() == (3, sum(len(crlf(m)) for m in MESSAGES))


async def test_apop(peers: Peers, mailbox: Mailbox) -> None:
    async with peers.connect(mailbox.port) as client:
        greeting = client.session.greeting
        assert greeting is not None and greeting.timestamp
        with pytest.raises(peers.errors.AuthError):
            await client.apop("alice", "wrong")
        await client.apop("alice", "secret")
        assert (await client.stat())[0] == 3


@pytest.mark.parametrize("mechanism", TOKEN_MECHANISMS)
async def test_oauth_token(peers: Peers, mechanism: str) -> None:
    backend, _, _ = make_backend(
        MESSAGES, check_token=lambda user, token: (user, token) == ("alice", "tok")
    )
    port = peers.serve(backend, mechanisms=TOKEN_MECHANISMS, failed_login_delay=0)
    async with peers.connect(port) as client:
        with pytest.raises(peers.errors.AuthError):
            await client.login("alice", token="forged", mechanism=mechanism)
        await client.login("alice", token="tok", mechanism=mechanism)
        assert (await client.stat())[0] == 3


# --- TLS ---------------------------------------------------------------------------------


async def test_starttls(
    peers: Peers, client_ssl: ssl.SSLContext, server_ssl: ssl.SSLContext
) -> None:
    backend, _, _ = make_backend(MESSAGES)
    port = peers.serve(backend, starttls_context=server_ssl, allow_plaintext=False)
    async with peers.connect(port, "localhost", tls="starttls", ssl_context=client_ssl) as client:
        assert client.session.connection.tls_active
        caps = await client.capa()
        assert caps is not None and not caps.stls and caps.user
        await client.login("alice", "secret")
        assert await client.retr(2) == crlf(MESSAGES[1])


async def test_plaintext_offers_stls_and_no_login(peers: Peers, server_ssl: ssl.SSLContext) -> None:
    backend, _, _ = make_backend(MESSAGES)
    port = peers.serve(backend, starttls_context=server_ssl, allow_plaintext=False)
    async with peers.connect(port) as client:
        assert not client.session.connection.tls_active
        caps = await client.capa()
        assert caps is not None and caps.stls and not caps.user
        with pytest.raises(peers.errors.Pop3Error):
            await client.login("alice", "secret")


async def test_implicit_tls(
    peers: Peers, client_ssl: ssl.SSLContext, server_ssl: ssl.SSLContext
) -> None:
    backend, _, _ = make_backend(MESSAGES)
    port = peers.serve(backend, ssl_context=server_ssl, allow_plaintext=False)
    async with peers.connect(port, tls="implicit", ssl_context=client_ssl) as client:
        assert client.session.connection.tls_active
        await client.login("alice", "secret")
        assert await client.retr(3) == crlf(MESSAGES[2])


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_certificates_are_verified_by_default(
    peers: Peers, server_ssl: ssl.SSLContext, tls: str
) -> None:
    backend, _, _ = make_backend(MESSAGES)
    key = "ssl_context" if tls == "implicit" else "starttls_context"
    port = peers.serve(backend, **{key: server_ssl})
    with pytest.raises(ssl.SSLCertVerificationError):
        async with peers.connect(port, "localhost", tls=tls):
            pass


async def test_starttls_refused_when_server_lacks_it(peers: Peers) -> None:
    backend, _, _ = make_backend(MESSAGES)
    port = peers.serve(backend, max_sessions=1)
    with pytest.raises(peers.errors.Pop3Error, match="STLS"):
        async with peers.connect(port, tls="starttls"):
            pass
    # The client hung up, so its session ended and the one session slot is free again.
    await admitted(peers, port)


# --- a large message ---------------------------------------------------------------------


BIG = b"Subject: big\n\n" + ((b"x" * 76 + b"\n") * 99 + b".starts with a dot\n") * 1_300
BIG_CRLF = crlf(BIG)
BIG_SHA256 = hashlib.sha256(BIG_CRLF).digest()
MEMORY_BOUND = 2 << 20  # a fifth of the message; about 0.5-0.9 MB is seen


async def test_large_message_is_streamed_in_bounded_memory(peers: Peers) -> None:
    assert len(BIG_CRLF) > 10_000_000
    backend, _, _ = make_backend([BIG])
    port = peers.serve(backend)
    async with peers.connect(port) as client:
        await client.login("alice", "secret")
        digest = hashlib.sha256()
        total = 0
        tracemalloc.start()
        try:
            async for chunk in client.iter_retr(1):
                digest.update(chunk)
                total += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == len(BIG_CRLF)
    assert digest.digest() == BIG_SHA256
    # Everything the process allocated meanwhile (the server's thread too), never the message.
    assert peak < MEMORY_BOUND, peak


async def test_a_bad_argument_leaves_the_connection_usable(peers: Peers, mailbox: Mailbox) -> None:
    async with peers.connect(mailbox.port) as client:
        await client.login("alice", "secret")
        with pytest.raises(p.LocalProtocolError):
            await client.dele(0)  # refused before anything is sent
        assert await client.noop() == ""
        assert (await client.stat())[0] == 3


async def test_a_failing_backend_ends_one_session_not_the_server(peers: Peers) -> None:
    def broken_token_check(user: str, token: str) -> bool:
        raise RuntimeError("the token service is down")

    backend, _, _ = make_backend(MESSAGES, check_token=broken_token_check)
    port = peers.serve(backend, failed_login_delay=0, mechanisms=["XOAUTH2", "PLAIN"])
    with pytest.raises((ConnectionError, p.ProtocolError)):
        async with peers.connect(port) as client:
            await client.login("alice", token="tok", mechanism="XOAUTH2")
    async with peers.connect(port) as client:  # the server still serves
        await client.login("alice", "secret", mechanism="PLAIN")
        assert (await client.stat())[0] == 3
