"""One client behaviour for the three bindings: AsyncClient (asyncio, trio) and pop3_sync.Client.

The blocking client has every public method of ``AsyncClient`` with the same
parameters and docstring, and the same attributes. The rules for using a
connection (``ClientGuard``) are then run through each binding against a
scripted server: an abandoned ``iter_retr``, ``-ERR``, a bad argument, a timeout
in the middle of an answer, an exception inside the block, a connection lost
with marked messages, a failed open. Each scenario asserts the same exception
types and messages for all three.
"""

from __future__ import annotations

import inspect
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

import pop3_sansio as p
import pop3_sync
from bindings import ANYIO_BACKEND, NAMES, connect

BODY = b"Subject: one\r\n\r\nHello.\r\n"

BUSY = (
    "connection unusable: an earlier operation was not finished "
    "(read every chunk of iter_retr, or use one connection per task or thread)"
)
BROKEN = "connection unusable after an interrupted operation"


# --- the same API ---------------------------------------------------------------------

ASYNC_ONLY = {"aclose"}
"""A graceful TLS close: the blocking client's ``close()`` and ``quit()`` close the socket."""


def _public(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def _plain(text: str | None) -> str:
    """A docstring or annotation with the async spelling taken out."""
    text = text or ""
    for old, new in (("async for", "for"), ("async with", "with"), ("await ", "")):
        text = text.replace(old, new)
    return text.replace("AsyncIterator", "Iterator")


def test_the_blocking_client_has_every_method_of_the_async_one() -> None:
    sync, asynchronous = _public(pop3_sync.Client), _public(p.AsyncClient)
    assert set(sync) == set(asynchronous) - ASYNC_ONLY


@pytest.mark.parametrize("name", sorted(set(_public(p.AsyncClient)) - ASYNC_ONLY))
def test_same_parameters_and_docstring(name: str) -> None:
    sync = getattr(pop3_sync.Client, name)
    asynchronous = getattr(p.AsyncClient, name)
    assert _plain(inspect.getdoc(sync)) == _plain(inspect.getdoc(asynchronous))
    if isinstance(sync, property):
        return
    assert inspect.iscoroutinefunction(sync) is False
    ours, theirs = inspect.signature(sync), inspect.signature(asynchronous)
    assert [
        (q.name, q.kind, q.default, _plain(str(q.annotation))) for q in ours.parameters.values()
    ] == [
        (q.name, q.kind, q.default, _plain(str(q.annotation))) for q in theirs.parameters.values()
    ]
    assert _plain(str(ours.return_annotation)) == _plain(str(theirs.return_annotation))


def test_same_public_attributes() -> None:
    """``tls``, ``ssl_context``, ``allow_plaintext_login``... on both, as given."""
    import pop3_asyncio

    options = {
        "tls": "starttls",
        "ssl_context": None,
        "timeout": 3.0,
        "allow_plaintext_login": True,
        "max_message_size": 7,
    }
    sync = pop3_sync.Client("h", 1, **options)  # type: ignore[arg-type]
    asynchronous = pop3_asyncio.Client("h", 1, **options)  # type: ignore[arg-type]

    def public(client: object) -> dict[str, object]:
        return {k: v for k, v in vars(client).items() if not k.startswith("_")}

    assert public(sync) == public(asynchronous) == {"host": "h", "port": 1, **options}


# --- a scripted server -----------------------------------------------------------------

STALL = b"+OK\r\npart of it\r\n"
"""Sent in place of an answer, and then nothing more: the client times out."""
HANG_UP = b""
"""In place of an answer: the server closes the connection."""


class Scripted:
    """A POP3 server for one connection, in a thread, answering from a fixed script.

    ``answers`` overrides the answer to a command line (``STALL``, ``HANG_UP``
    or bytes); ``received`` lists the command lines that arrived.
    """

    def __init__(
        self,
        answers: dict[bytes, bytes] | None = None,
        *,
        greeting: bytes = b"+OK ready\r\n",
        dual_stack: bool = False,
    ) -> None:
        self.answers = answers or {}
        self.greeting = greeting
        self.received: list[bytes] = []
        if dual_stack:
            self.listener = socket.create_server(
                ("::", 0), family=socket.AF_INET6, dualstack_ipv6=True
            )
        else:
            self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, line: bytes) -> bytes:
        if line in self.answers:
            return self.answers[line]
        word = line.split(b" ")[0]
        if line == b"LIST":
            return b"+OK\r\n1 %d\r\n.\r\n" % len(BODY)
        if line == b"LIST 1":
            return b"+OK 1 %d\r\n" % len(BODY)
        if line == b"RETR 1":
            return b"+OK\r\n" + BODY + b".\r\n"
        if line == b"STAT":
            return b"+OK 1 %d\r\n" % len(BODY)
        if word == b"CAPA":
            return b"-ERR not here\r\n"  # RFC 2449 section 5: no CAPA
        if word == b"QUIT":
            return b"+OK bye\r\n"
        if line == b"DELE 9":
            return b"-ERR no such message\r\n"
        return b"+OK\r\n"  # USER, PASS, AUTH, DELE 1, NOOP

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(self.greeting)
            if self.greeting.startswith(b"-ERR"):
                return
            for raw in lines:
                line = raw.rstrip(b"\r\n")
                self.received.append(line)
                answer = self._answer(line)
                if answer == HANG_UP:
                    return
                conn.sendall(answer)
                if answer == STALL or line == b"QUIT":
                    break
            lines.read()  # until the client closes

    def close(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.listener.close()


@pytest.fixture(params=NAMES)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(client: str) -> str:
    return ANYIO_BACKEND[client]


@pytest.fixture
def serve() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(*args: object, **kwargs: object) -> Scripted:
        servers.append(Scripted(*args, **kwargs))  # type: ignore[arg-type]
        return servers[-1]

    yield start
    for server in servers:
        server.close()


LOGIN = [b"CAPA", b"USER alice", b"PASS secret"]

pytestmark = pytest.mark.anyio


# --- the guard's scenarios, through each binding ------------------------------------------


async def test_an_abandoned_iter_retr_breaks_the_connection(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve()
    async with connect(client, "127.0.0.1", server.port, tls=None) as c:
        await c.login("alice", "secret")
        chunks = c.iter_retr(1)
        assert await chunks.__anext__() == BODY
        with pytest.raises(ConnectionError) as busy:
            await c.noop()
        assert str(busy.value) == BUSY
        with pytest.raises(ConnectionError) as broken:
            await c.stat()
        assert str(broken.value) == BROKEN
        cause = broken.value.__cause__
        assert repr(cause) == "RuntimeError('an earlier operation was not finished')"
        aclose = getattr(chunks, "aclose", None)  # the blocking client's adapter
        if aclose is not None:
            await aclose()
    assert server.received == [*LOGIN, b"LIST 1", b"RETR 1"]  # no NOOP, STAT nor QUIT


async def test_leaving_the_block_with_an_unfinished_operation_closes_without_quit(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve()
    async with connect(client, "127.0.0.1", server.port, tls=None) as c:
        await c.login("alice", "secret")
        chunks = c.iter_retr(1)
        assert await chunks.__anext__() == BODY
    with pytest.raises(ConnectionError) as broken:
        await c.noop()
    assert str(broken.value) == BROKEN
    assert repr(broken.value.__cause__) == "RuntimeError('an operation was not finished')"
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
    assert server.received == [*LOGIN, b"LIST 1", b"RETR 1"]


async def test_an_err_answer_leaves_the_connection_usable(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve()
    async with connect(client, "127.0.0.1", server.port, tls=None) as c:
        await c.login("alice", "secret")
        with pytest.raises(p.Pop3Error) as err:
            await c.dele(9)
        assert (type(err.value), str(err.value)) == (p.Pop3Error, "DELE: -ERR no such message")
        assert await c.noop() == ""
    assert server.received == [*LOGIN, b"DELE 9", b"NOOP", b"QUIT"]


async def test_a_bad_argument_is_refused_before_a_write_and_leaves_it_usable(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve()
    async with connect(client, "127.0.0.1", server.port, tls=None) as c:
        await c.login("alice", "secret")
        with pytest.raises(p.LocalProtocolError) as bad:
            await c.dele(0)
        assert (str(bad.value), bad.value.reason) == (
            "message number out of range: 0",
            "bad-argument",
        )
        assert await c.stat() == (1, len(BODY))
    assert server.received == [*LOGIN, b"STAT", b"QUIT"]


async def test_a_timeout_in_the_middle_of_an_answer_breaks_the_connection(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve({b"RETR 1": STALL})
    async with connect(client, "127.0.0.1", server.port, tls=None, timeout=0.3) as c:
        await c.login("alice", "secret")
        with pytest.raises(TimeoutError) as timeout:
            await c.retr(1)
        with pytest.raises(ConnectionError) as broken:
            await c.noop()
        assert str(broken.value) == BROKEN
        assert broken.value.__cause__ is timeout.value
    assert server.received == [*LOGIN, b"LIST 1", b"RETR 1"]  # no QUIT


async def test_an_exception_inside_the_block_closes_without_quit(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve()
    with pytest.raises(KeyError):
        async with connect(client, "127.0.0.1", server.port, tls=None) as c:
            await c.login("alice", "secret")
            await c.dele(1)
            raise KeyError("stop")
    assert server.received == [*LOGIN, b"DELE 1"]  # nothing is deleted


async def test_a_connection_lost_with_marks_is_reported_on_a_normal_exit(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve({b"NOOP": HANG_UP})
    with pytest.raises(ConnectionError) as lost:
        async with connect(client, "127.0.0.1", server.port, tls=None) as c:
            await c.login("alice", "secret")
            await c.dele(1)
            with pytest.raises(p.RemoteProtocolError) as closed:
                await c.noop()
            assert (str(closed.value), closed.value.reason) == (
                "connection closed in the middle of an answer",
                "truncated",
            )
    assert str(lost.value) == (
        "1 message(s) marked for deletion were not deleted: "
        "the connection became unusable before QUIT"
    )
    assert lost.value.__cause__ is closed.value
    assert server.received == [*LOGIN, b"DELE 1", b"NOOP"]


async def test_a_failed_open_leaves_the_client_broken(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve(greeting=b"-ERR [SYS/TEMP] busy\r\n")
    c = connect(client, "127.0.0.1", server.port, tls=None)
    with pytest.raises(p.TemporaryError) as failed:
        async with c:
            pass  # pragma: no cover - not reached
    assert str(failed.value) == "greeting: -ERR [SYS/TEMP] busy"
    with pytest.raises(ConnectionError) as broken:
        await c.noop()
    assert str(broken.value) == BROKEN
    assert repr(broken.value.__cause__) == "RuntimeError('open() failed')"


async def test_retr_many_asks_for_capa_when_iterated_not_when_called(
    client: str, serve: Callable[..., Scripted]
) -> None:
    server = serve()
    async with connect(client, "127.0.0.1", server.port, tls=None) as c:
        await c.auth("PLAIN", "alice", password="secret")  # no CAPA: not known yet
        messages = c.retr_many([1])
        await c.noop()
        assert [m async for m in messages] == [(1, BODY)]
    assert server.received[1:] == [b"NOOP", b"CAPA", b"LIST", b"RETR 1", b"QUIT"]
    assert server.received[0].startswith(b"AUTH PLAIN ")


def test_the_blocking_retr_many_sends_nothing_until_iterated(
    serve: Callable[..., Scripted],
) -> None:
    """As the async clients: CAPA goes out with the first step (ClientSession.retr_many)."""
    server = serve()
    with pop3_sync.connect("127.0.0.1", server.port, tls=None) as c:
        c.auth("PLAIN", "alice", password="secret")  # no CAPA: not known yet
        messages = c.retr_many([1])
        c.noop()
        assert list(messages) == [(1, BODY)]
    assert server.received[1:] == [b"NOOP", b"CAPA", b"LIST", b"RETR 1", b"QUIT"]


def test_a_collected_blocking_iter_retr_breaks_it_as_an_abandoned_async_one(
    serve: Callable[..., Scripted],
) -> None:
    """Closing (or collecting) the generator leaves the guard busy: no GC-dependent path."""
    server = serve()
    with pop3_sync.connect("127.0.0.1", server.port, tls=None) as c:
        c.login("alice", "secret")
        chunks = c.iter_retr(1)
        assert next(chunks) == BODY
        chunks.close()  # what the garbage collector does to a dropped generator
        with pytest.raises(ConnectionError) as busy:
            c.noop()
        assert str(busy.value) == BUSY
    assert server.received == [*LOGIN, b"LIST 1", b"RETR 1"]


# --- the plaintext-login policy ------------------------------------------------------------


async def test_every_method_of_the_async_face_runs_through_each_binding(
    client: str, serve: Callable[..., Scripted]
) -> None:
    """The adapter in bindings.py covers the whole API, so each scenario can use any method."""
    server = serve({b"UIDL": b"+OK\r\n1 u1\r\n.\r\n", b"TOP 1 0": b"+OK\r\nSubject: one\r\n.\r\n"})
    async with connect(client, "127.0.0.1", server.port, tls=None) as c:
        assert await c.capa() is None
        assert await c.utf8() == ""  # RFC 6856: before login
        await c.login("alice", "secret")
        assert await c.list() == {1: len(BODY)}
        assert await c.uidl() == {1: "u1"}
        assert await c.top(1, 0) == b"Subject: one\r\n"
        assert await c.rset() == ""
    assert server.received == [
        b"CAPA",
        b"UTF8",
        b"USER alice",
        b"PASS secret",
        b"LIST",
        b"UIDL",
        b"TOP 1 0",
        b"RSET",
        b"QUIT",
    ]


async def test_an_ipv4_mapped_loopback_peer_counts_as_loopback(
    client: str, serve: Callable[..., Scripted]
) -> None:
    """``::ffff:127.0.0.1`` is 127.0.0.1 (``is_loopback_address``): a password may go in clear."""
    server = serve(dual_stack=True)
    async with connect(
        client, "::ffff:127.0.0.1", server.port, tls=None, allow_plaintext_login=False
    ) as c:
        assert c.session.may_send_password
        await c.login("alice", "secret")
    assert server.received == [*LOGIN, b"QUIT"]
