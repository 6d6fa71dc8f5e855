"""Every binding's client (asyncio, trio, sync) against a real Dovecot on 127.0.0.1 (peers.py).

Needs the Debian packages dovecot-core and dovecot-pop3d (``make peers``); without
them the tests skip, or fail when ``POP3_REQUIRE_PEERS=1``.

Each test runs once per client binding (ids end in ``-asyncio``, ``-trio``, ``-sync``),
through bindings.py's uniform async face, on that client's event loop (the sync client in
worker threads under asyncio). The tests that only read share one Dovecot for the
module (``shared``), and look only at the part of its log written since they began;
a test that deletes, or holds a maildrop's lock, has a Dovecot of its own.

Dovecot answers a second session for a locked maildrop only after a fixed 10 s dotlock
timeout (not configurable), so the three bindings' ``[IN-USE]`` sessions run at the same
time, each against its own Dovecot, in threads started by the ``in_use`` fixture; each
binding's test then waits for and reports its own binding's outcome.
"""

from __future__ import annotations

import concurrent.futures
import gc
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

import bindings
import pop3_sansio._client_session as client_session
from bindings import ANYIO_BACKEND, NAMES, Client
from peers import USERS, Dovecot, DovecotFactory, as_received, crlf_size

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
NO_FINAL_NEWLINE = b"Subject: no final newline\n\nlast line"
BOB_MESSAGES = [b"Subject: for bob\n\nonly bob sees this\n", NO_FINAL_NEWLINE]
TIMEOUT = 10  # the clients' timeout for every network wait


@pytest.fixture(params=NAMES)
def binding(request: pytest.FixtureRequest) -> Iterator[str]:
    """The client binding under test."""
    yield request.param
    # The test's event loop is closed by now: a connection the client left open is
    # garbage, and its ResourceWarning is reported here, against this test.
    gc.collect()


@pytest.fixture
def anyio_backend(binding: str) -> str:
    return ANYIO_BACKEND[binding]


@pytest.fixture(scope="module")
def shared(dovecot_module: DovecotFactory) -> Dovecot:
    """One Dovecot for the tests that delete nothing and hold no lock past their end."""
    return dovecot_module({"alice": MESSAGES, "bob": BOB_MESSAGES})


@pytest.fixture
def server(dovecot: DovecotFactory) -> Dovecot:
    """A Dovecot of the test's own (for tests that delete)."""
    return dovecot({"alice": MESSAGES, "bob": BOB_MESSAGES})


def connect(binding: str, server: Dovecot, **kwargs: Any) -> Client:
    """A plaintext client of ``binding`` for ``server``, unless ``kwargs`` say otherwise."""
    kwargs.setdefault("tls", None)
    kwargs.setdefault("timeout", TIMEOUT)
    return bindings.connect(binding, server.host, kwargs.pop("port", server.port), **kwargs)


def errors(binding: str) -> Any:
    """The binding's module, for its exception classes."""
    return bindings.MODULES[binding]


def head(message: bytes, body_lines: int) -> bytes:
    """What TOP n body_lines should give for a stored message."""
    received = as_received(message)
    header, _, body = received.partition(b"\r\n\r\n")
    lines = body.split(b"\r\n")[:-1]
    return header + b"\r\n\r\n" + b"".join(line + b"\r\n" for line in lines[:body_lines])


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The data of every write the client session asks its binding to make, in order.

    Every binding writes exactly what a ``Write`` instruction holds, in one write each,
    so this is what went on the wire (before TLS), command by command, for all three.
    """
    writes: list[bytes] = []
    lock = threading.Lock()
    make = client_session.Write

    def spy(data: bytes) -> client_session.Write:
        with lock:
            writes.append(data)
        return make(data)

    monkeypatch.setattr(client_session, "Write", spy)
    return writes


def logins(server: Dovecot, since: int) -> list[str]:
    return re.findall(r"Login: user=<[^>]*>, method=([A-Z0-9-]+)", server.log(since))


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
COMMAND = {"USER": b"USER alice\r\n", "APOP": b"APOP alice "}


@pytest.mark.parametrize(("mechanism", "logged"), LOGIN_CELLS)
async def test_login(
    shared: Dovecot, binding: str, sent: list[bytes], mechanism: str, logged: str
) -> None:
    if mechanism not in COMMAND and mechanism not in shared.sasl:
        pytest.skip(f"Dovecot {shared.version} does not offer {mechanism}")
    mark = shared.log_mark()
    async with connect(binding, shared) as client:
        await client.login("alice", PASSWORD, mechanism=mechanism)
        assert await client.stat() == (len(MESSAGES), sum(map(crlf_size, MESSAGES)))
    wire = b"".join(sent)
    assert COMMAND.get(mechanism, b"AUTH " + mechanism.encode()) in wire
    assert (b"AUTH " in wire) == (mechanism not in COMMAND)
    assert wire.endswith(b"QUIT\r\n")
    await shared.await_log(r"Disconnected: Logged out", since=mark)
    line = await shared.await_log(rf"Login: user=<alice>, method={logged}\b.*", since=mark)
    assert "secured" in line  # loopback: Dovecot counts it as secure


async def test_login_picks_scram_on_its_own(shared: Dovecot, binding: str) -> None:
    mark = shared.log_mark()
    async with connect(binding, shared) as client:
        await client.login("bob", USERS["bob"])
        assert await client.stat() == (len(BOB_MESSAGES), sum(map(crlf_size, BOB_MESSAGES)))
    expected = "SCRAM-SHA-256" if "SCRAM-SHA-256" in shared.sasl else "PLAIN"
    await shared.await_log(rf"Login: user=<bob>, method={expected}\b", since=mark)


@pytest.mark.parametrize("mechanism", ["USER", "PLAIN", "APOP", "CRAM-MD5"])
async def test_wrong_password(
    shared: Dovecot, binding: str, sent: list[bytes], mechanism: str
) -> None:
    mark = shared.log_mark()
    async with connect(binding, shared) as client:
        with pytest.raises(errors(binding).AuthError) as caught:
            await client.login("alice", "not-the-password", mechanism=mechanism)
        assert caught.value.code is not None and str(caught.value.code) == "AUTH"
        assert COMMAND.get(mechanism, b"AUTH " + mechanism.encode()) in b"".join(sent)
        # The session goes on.
        caps = await client.capa(refresh=True)
        assert caps is not None and caps.sasl
    line = await shared.await_log(r"Disconnected: .*auth failed.*", since=mark)
    assert "auth failed, 1 attempts" in line and "user=<alice>" in line, line
    assert logins(shared, mark) == []


# --- TLS ----------------------------------------------------------------------------------


async def test_stls(shared: Dovecot, binding: str, sent: list[bytes]) -> None:
    assert "STLS" in shared.capabilities
    mark = shared.log_mark()
    async with connect(
        binding, shared, tls="starttls", ssl_context=shared.client_context()
    ) as client:
        assert client.session.connection.tls_active
        assert b"".join(sent).startswith(b"CAPA\r\nSTLS\r\n")
        caps = await client.capa()
        assert caps is not None and not caps.stls  # RFC 2595: not offered again after TLS
        await client.login("alice", PASSWORD, mechanism="PLAIN")
        assert await client.retr(1) == as_received(MESSAGES[0])
    assert "TLS" in await shared.await_log(r"Login: user=<alice>.*", since=mark)


async def test_implicit_tls(shared: Dovecot, binding: str) -> None:
    mark = shared.log_mark()
    async with connect(
        binding,
        shared,
        port=shared.pop3s_port,
        tls="implicit",
        ssl_context=shared.client_context(),
    ) as client:
        assert client.session.connection.tls_active
        caps = await client.capa()
        assert caps is not None and not caps.stls
        await client.login("alice", PASSWORD)
        assert await client.retr(3) == as_received(MESSAGES[2])
    assert "TLS" in await shared.await_log(r"Login: user=<alice>.*", since=mark)


async def test_implicit_tls_refuses_an_untrusted_certificate(shared: Dovecot, binding: str) -> None:
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        async with connect(binding, shared, port=shared.pop3s_port, tls="implicit"):
            pass  # pragma: no cover - the handshake fails


# --- reading ------------------------------------------------------------------------------


async def test_retr_is_byte_exact_and_sizes_match(shared: Dovecot, binding: str) -> None:
    async with connect(binding, shared) as client:
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


async def test_message_without_final_newline(shared: Dovecot, binding: str) -> None:
    # Dovecot's LIST size counts the stored octets; RETR then adds the CRLF the
    # message lacks before the terminating dot, so the client gets two more octets.
    async with connect(binding, shared) as client:
        await client.login("bob", USERS["bob"])
        assert await client.list(2) == {2: crlf_size(NO_FINAL_NEWLINE)}
        assert await client.retr(2) == as_received(NO_FINAL_NEWLINE)
    assert len(as_received(NO_FINAL_NEWLINE)) == crlf_size(NO_FINAL_NEWLINE) + 2


async def test_uidl(shared: Dovecot, binding: str) -> None:
    async with connect(binding, shared) as client:
        await client.login("alice", PASSWORD)
        uids = await client.uidl()
        assert sorted(uids) == list(range(1, len(MESSAGES) + 1))
        assert len(set(uids.values())) == len(MESSAGES)
        assert await client.uidl(2) == {2: uids[2]}
    async with connect(binding, shared) as client:  # stable across sessions (RFC 1939 7)
        await client.login("alice", PASSWORD)
        assert await client.uidl() == uids


async def test_top(shared: Dovecot, binding: str) -> None:
    async with connect(binding, shared) as client:
        await client.login("alice", PASSWORD)
        assert await client.top(1, 0) == head(MESSAGES[0], 0)
        assert await client.top(1, 1) == head(MESSAGES[0], 1)
        assert await client.top(2, 3) == head(MESSAGES[1], 3)  # stuffed lines unstuffed
        assert await client.top(3, 100) == as_received(MESSAGES[2])


async def test_retr_many_pipelined(shared: Dovecot, binding: str, sent: list[bytes]) -> None:
    mark = shared.log_mark()
    async with connect(binding, shared) as client:
        caps = await client.capa()
        assert caps is not None and caps.pipelining
        await client.login("alice", PASSWORD)
        before = len(sent)
        got = [(n, raw) async for n, raw in client.retr_many([4, 2, 1, 3])]
        retrs = sent[before:]
    assert got == [(n, as_received(MESSAGES[n - 1])) for n in (4, 2, 1, 3)]
    # One LIST for the sizes the bodies are held to, then pipelined: several
    # RETRs went out in one write, before their answers came.
    assert retrs[0] == b"LIST\r\n"
    assert b"".join(retrs[1:]) == b"RETR 4\r\nRETR 2\r\nRETR 1\r\nRETR 3\r\n"
    assert len(retrs) < 5, retrs
    assert "retr=4/" in await shared.await_log(r"Disconnected: Logged out.*", since=mark)


async def test_retr_many_deleting(server: Dovecot, binding: str) -> None:
    async with connect(binding, server) as client:
        await client.login("alice", PASSWORD)
        got = [n async for n, _ in client.retr_many([1, 3], delete=True)]
    assert got == [1, 3]
    assert sorted(server.stored("alice").values()) == sorted([MESSAGES[1], MESSAGES[3]])


# --- locking and deleting -----------------------------------------------------------------


async def in_use_session(binding: str, server: Dovecot) -> None:
    """A second session for a locked maildrop gets ``[IN-USE]`` (runs in ``in_use``)."""
    with anyio.fail_after(60):
        async with connect(binding, server) as first:
            await first.login("alice", PASSWORD)
            # Dovecot waits 10 s (a fixed dotlock timeout) before it gives up, and
            # then closes the connection: leave without QUIT.
            with pytest.raises(errors(binding).InUseError) as caught:
                async with connect(binding, server, timeout=30) as second:
                    await second.login("alice", PASSWORD)
            assert caught.value.code is not None and str(caught.value.code) == "IN-USE"
            async with connect(binding, server) as other_user:  # the lock is per maildrop
                await other_user.login("bob", USERS["bob"])
            assert (await first.stat())[0] == len(MESSAGES)
        async with connect(binding, server) as again:  # QUIT released it
            await again.login("alice", PASSWORD)


@pytest.fixture(scope="module")
def in_use(
    dovecot_module: DovecotFactory,
) -> Iterator[dict[str, tuple[Dovecot, Callable[[], None]]]]:
    """Every binding's ``in_use_session``, started at once: ``{binding: (server, result)}``.

    ``result()`` waits for that binding's session (at most 60 s) and re-raises what
    failed in it. Each runs in a thread of its own, on its binding's event loop, against
    a Dovecot of its own.
    """
    runs: dict[str, tuple[Dovecot, Callable[[], None]]] = {}
    threads = []
    for name in NAMES:
        server = dovecot_module({"alice": MESSAGES, "bob": BOB_MESSAGES})
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run(name: str = name, server: Dovecot = server, done: Any = done) -> None:
            try:
                anyio.run(in_use_session, name, server, backend=ANYIO_BACKEND[name])
            except BaseException as exc:  # reported by that binding's test
                done.set_exception(exc)
            else:
                done.set_result(None)

        thread = threading.Thread(target=run, name=f"in-use-{name}", daemon=True)
        thread.start()
        threads.append(thread)
        runs[name] = (server, lambda done=done: done.result(timeout=60))
    yield runs
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), f"{thread.name} did not end"


async def test_second_session_gets_in_use(
    in_use: dict[str, tuple[Dovecot, Callable[[], None]]], binding: str
) -> None:
    server, result = in_use[binding]
    await anyio.to_thread.run_sync(result)
    assert "Couldn't lock POP3 session" in server.log()


async def test_dele_and_quit_deletes_exactly_that_message(server: Dovecot, binding: str) -> None:
    names = sorted(server.stored("alice"))  # delivery order
    async with connect(binding, server) as client:
        await client.login("alice", PASSWORD)
        await client.dele(2)
        with pytest.raises(errors(binding).Pop3Error):
            await client.retr(2)
        assert (await client.stat())[0] == len(MESSAGES) - 1
    stored = server.stored("alice")
    assert sorted(stored) == [names[0], names[2], names[3]]
    assert sorted(stored.values()) == sorted([MESSAGES[0], MESSAGES[2], MESSAGES[3]])
    assert len(server.stored("bob")) == len(BOB_MESSAGES)


class AbandonedError(Exception):
    pass


async def test_dele_then_dropped_connection_deletes_nothing(server: Dovecot, binding: str) -> None:
    before = server.stored("alice")
    with pytest.raises(AbandonedError):
        async with connect(binding, server) as client:
            await client.login("alice", PASSWORD)
            for n in range(1, len(MESSAGES) + 1):
                await client.dele(n)
            raise AbandonedError
    await server.await_log(r"Disconnected: Connection closed")
    assert server.stored("alice") == before
    async with connect(binding, server) as client:
        await client.login("alice", PASSWORD)
        assert (await client.stat())[0] == len(MESSAGES)


async def test_rset_undoes_dele(server: Dovecot, binding: str) -> None:
    async with connect(binding, server) as client:
        await client.login("alice", PASSWORD)
        await client.dele(1)
        await client.rset()
        assert (await client.stat())[0] == len(MESSAGES)
    assert len(server.stored("alice")) == len(MESSAGES)
