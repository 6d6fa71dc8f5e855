"""pop3_testing: the test servers people use in their own tests, driven by real clients.

Each test talks to the server over 127.0.0.1 with a real client (the standard
library's poplib, or a binding's client), the way a user's test would, and
reads back from the server what the client did.
"""

from __future__ import annotations

import poplib
import socket
import ssl
import sys
import time
from email.message import EmailMessage, Message
from pathlib import Path

import anyio
import pytest

import pop3_asyncio
import pop3_sync
import pop3_trio
from pop3_maildrop import read_eml_dir
from pop3_sansio import RemoteProtocolError
from pop3_testing import (
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    AsyncPop3TestServer,
    Pop3TestServer,
    StoredMessage,
    _tls,
)
from served import crlf


def login(
    server: Pop3TestServer, user: str | None = None, password: str | None = None
) -> poplib.POP3:
    """A poplib client logged in with USER/PASS; closed again if the login fails."""
    client = poplib.POP3(*server.address, timeout=10)
    try:
        client.user(user or server.user)
        client.pass_(password or server.password)
    except BaseException:
        client.close()
        raise
    return client


def refused(server: Pop3TestServer, user: str, password: str) -> bytes:
    """The server's answer to a login poplib sees refused (its bytes: python -bb)."""
    with pytest.raises(poplib.error_proto) as error:
        login(server, user, password)
    answer = error.value.args[0]
    assert isinstance(answer, bytes)
    return answer


def retr(client: poplib.POP3, n: int) -> bytes:
    return b"".join(line + b"\r\n" for line in client.retr(n)[1])


def write_eml_dir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "b.eml").write_bytes(b"Subject: second\r\n\r\nby name, second\r\n")
    (folder / "a.EML").write_bytes(b"Subject: first\n\n.a leading dot\n")
    (folder / "notes.txt").write_bytes(b"not a message")
    (folder / "sub.eml").mkdir()  # a folder named like a message is skipped
    return folder


# --- blocking code: Pop3TestServer and poplib ---------------------------------------------


def test_messages_of_each_kind_are_served_and_deletions_read_back(tmp_path: Path) -> None:
    built = EmailMessage()
    built["Subject"] = "built"
    built.set_content("From the start of a line.\n.dot\n")
    folder = write_eml_dir(tmp_path / "mail")
    with Pop3TestServer() as server:
        raw = server.add_message(b"Subject: raw\n\nraw bytes\n")
        parsed = server.add_message(built)
        from_files = server.add_eml_dir(folder)
        assert [m.original for m in from_files] == [folder / "a.EML", folder / "b.eml"]
        assert raw.original == b"Subject: raw\n\nraw bytes\n" and parsed.original is built

        client = login(server)
        stored = [raw, parsed, *from_files]
        assert client.stat() == (4, sum(len(crlf(m.data)) for m in stored))
        uids = [line.split()[1].decode() for line in client.uidl()[1]]
        assert uids == [m.uid for m in stored]
        for n, message in enumerate(stored, 1):
            assert retr(client, n) == crlf(message.data)  # byte-exact, dots unstuffed
        # The EmailMessage is stored as generated: CRLF, no ">From" quoting.
        assert b"\r\nFrom the start of a line.\r\n.dot\r\n" in parsed.data
        client.dele(2)
        client.dele(3)
        assert server.deleted() == []  # marked only: nothing is removed before QUIT
        client.quit()

        assert server.deleted() == [parsed, from_files[0]]
        assert server.messages() == [raw, from_files[1]]
        assert [m.original for m in server.deleted()] == [built, folder / "a.EML"]


def test_nothing_is_deleted_when_the_client_leaves_without_quit() -> None:
    with Pop3TestServer() as server:
        added = server.add_messages([b"Subject: 1\n\none\n", b"Subject: 2\n\ntwo\n"])
        client = login(server)
        client.dele(1)
        client.close()  # no QUIT: RFC 1939 section 6 removes nothing
        client = login(server)  # logging in again proves the session ended (the lock is free)
        assert client.stat()[0] == 2
        client.quit()
        assert server.deleted() == [] and server.messages() == added


def test_users_are_kept_apart_and_wrong_passwords_answered_at_once() -> None:
    with Pop3TestServer(user="alice", password="alice-pw") as server:
        assert (server.user, server.password) == ("alice", "alice-pw")
        server.add_user("bob", "bob-pw")
        to_alice = server.add_message(b"Subject: a\n\nfor alice\n")
        to_bob = server.add_message(b"Subject: b\n\nfor bob\n", user="bob")

        bob = login(server, "bob", "bob-pw")
        assert retr(bob, 1) == crlf(to_bob.data) and bob.stat()[0] == 1
        bob.dele(1)
        bob.quit()
        assert server.deleted("bob") == [to_bob] and server.deleted() == []
        assert server.messages() == [to_alice] and server.messages("bob") == []

        started = time.monotonic()
        assert refused(server, "bob", "wrong").startswith(b"-ERR [AUTH]")
        assert time.monotonic() - started < 1.5  # a real server would wait 2 s

        with pytest.raises(KeyError, match="no user 'carol'"):
            server.add_message(b"x", user="carol")
        with pytest.raises(ValueError, match="user name"):
            server.add_user("bad name", "pw")
        with pytest.raises(TypeError, match="not str"):
            server.add_message("Subject: text\n\nnot bytes\n")  # type: ignore[arg-type]


def test_every_login_method_is_offered() -> None:
    with Pop3TestServer() as server:
        server.add_message(b"Subject: s\n\nbody\n")
        client = poplib.POP3(*server.address, timeout=10)
        client.apop(DEFAULT_USER, DEFAULT_PASSWORD)  # needs the plain secret and the timestamp
        assert client.stat()[0] == 1
        client.quit()
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"):
            with pop3_sync.connect(*server.address, tls=None) as sync_client:
                sync_client.login(server.user, server.password, mechanism=mechanism)
                assert sync_client.stat() == (1, len(crlf(b"Subject: s\n\nbody\n")))


def test_many_connections_from_one_address_are_served() -> None:
    # A production server refuses the 21st session from one address; a test's
    # clients all come from 127.0.0.1, so the test server does not.
    with Pop3TestServer() as server:
        clients = [poplib.POP3(*server.address, timeout=10) for _ in range(25)]
        try:
            assert all(c.getwelcome().startswith(b"+OK") for c in clients)
        finally:
            for client in clients:
                client.close()


def test_a_message_added_during_a_session_comes_with_the_next() -> None:
    with Pop3TestServer() as server:
        first = server.add_message(b"Subject: 1\n\none\n")
        client = login(server)
        late = server.add_message(b"Subject: 2\n\ntwo\n")
        assert client.stat()[0] == 1  # the maildrop as it was at login (RFC 1939 section 4)
        client.dele(1)
        client.quit()
        assert server.deleted() == [first] and server.messages() == [late]
        client = login(server)
        assert retr(client, 1) == crlf(late.data)
        client.quit()


def test_reset_forgets_messages_and_users() -> None:
    with Pop3TestServer() as server:
        server.add_user("bob", "bob-pw")
        server.add_user(DEFAULT_USER, "changed")  # the default user's password follows
        assert server.password == "changed"
        login(server).quit()
        assert refused(server, DEFAULT_USER, DEFAULT_PASSWORD).startswith(b"-ERR [AUTH]")
        server.add_message(b"Subject: old\n\nold\n")
        server.reset()
        assert server.messages() == [] and server.deleted() == []
        assert server.password == DEFAULT_PASSWORD
        assert refused(server, "bob", "bob-pw").startswith(b"-ERR [AUTH]")
        new = server.add_message(b"Subject: new\n\nnew\n")
        client = login(server)
        assert client.stat()[0] == 1 and retr(client, 1) == crlf(new.data)
        client.quit()


def test_where_it_listens_and_when() -> None:
    server = Pop3TestServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
    assert "not started" in repr(server)
    with server:
        assert server.address == ("127.0.0.1", server.port) and server.host == "127.0.0.1"
        assert f"127.0.0.1:{server.port}" in repr(server)
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
    # Stopped: nothing listens there any more, and the records stay readable.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=10).close()
    assert server.messages() == []
    server.close()  # again: harmless
    with server:  # and it starts again, on a new free port, with what it held
        kept = server.add_message(b"Subject: again\n\nagain\n")
        client = login(server)
        assert client.stat()[0] == 1
        client.quit()
    assert server.messages() == [kept]


def test_a_client_still_connected_does_not_hold_up_close() -> None:
    with Pop3TestServer() as server:
        server.add_message(b"Subject: kept\n\nkept\n")
        client = login(server)
        client.dele(1)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    assert server.deleted() == []  # dropped without QUIT
    with pytest.raises((poplib.error_proto, OSError)):
        client.stat()
    client.close()


def test_the_package_names_what_it_lacks() -> None:
    import pop3_testing

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pop3_testing.Nope  # noqa: B018


def test_async_with_outside_asyncio_and_trio_still_stops_the_server() -> None:
    # Driven by hand, as another event loop library would: no asyncio loop runs.
    server = Pop3TestServer()
    entering = server.__aenter__()
    with pytest.raises(StopIteration):
        entering.send(None)
    address = server.address
    leaving = server.__aexit__(None, None, None)
    with pytest.raises(StopIteration):
        leaving.send(None)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=10).close()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tls must be"):
        Pop3TestServer(tls="always")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no TLS"):
        Pop3TestServer().client_ssl_context()


def test_a_compat32_message_is_stored_as_built() -> None:
    message = Message()
    message["Subject"] = "compat32"
    message.set_payload("From me, unquoted\n")
    with Pop3TestServer() as server:
        stored = server.add_message(message)
    assert stored.data == b"Subject: compat32\r\n\r\nFrom me, unquoted\r\n"
    assert stored.size == len(stored.data)
    # The record's repr stays short; equal records are the same message, however it came.
    assert repr(stored) == f"StoredMessage(user='user', uid='{stored.uid}')"
    assert stored == StoredMessage("user", stored.uid, stored.data, original=b"another source")


# --- .eml folders ---------------------------------------------------------------------------


def test_eml_dir_reads_eml_files_in_name_order(tmp_path: Path) -> None:
    folder = write_eml_dir(tmp_path / "mail")
    assert [(path.name, data[:14]) for path, data in read_eml_dir(folder)] == [
        ("a.EML", b"Subject: first"),
        ("b.eml", b"Subject: secon"),
    ]


def test_eml_dir_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.eml").write_bytes(b"x")
    with Pop3TestServer() as server:
        with pytest.raises(FileNotFoundError, match="no such directory"):
            server.add_eml_dir(tmp_path / "missing")
        with pytest.raises(ValueError, match=r"no \.eml files in"):
            server.add_eml_dir(tmp_path / "empty")
        with pytest.raises(NotADirectoryError, match="not a directory"):
            server.add_eml_dir(tmp_path / "file.eml")
        assert server.messages() == []
        # One .eml file on its own is add_message's.
        assert server.add_message(tmp_path / "file.eml").original == tmp_path / "file.eml"


# --- TLS ------------------------------------------------------------------------------------


def test_implicit_tls_with_a_certificate_the_client_trusts() -> None:
    with Pop3TestServer(tls="implicit") as server:
        server.add_message(b"Subject: tls\n\nover TLS\n")
        client = poplib.POP3_SSL("localhost", server.port, context=server.client_ssl_context())
        client.user(server.user)
        client.pass_(server.password)
        assert client.stat()[0] == 1
        client.quit()
        # The CA file works where a path is wanted (e.g. pop3 fetch --ca-file).
        from_file = ssl.create_default_context(cafile=str(server.ca_pem_path))
        with pop3_sync.connect(
            "127.0.0.1", server.port, tls="implicit", ssl_context=from_file
        ) as sync_client:
            sync_client.login(server.user, server.password)
            assert sync_client.stat()[0] == 1
        assert server.ca_pem_path.read_bytes() == server.ca_pem
        assert server.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
        # A client that does not trust the test CA refuses the certificate.
        with pytest.raises(ssl.SSLCertVerificationError):
            poplib.POP3_SSL("localhost", server.port, context=ssl.create_default_context())
        ca_file = server.ca_pem_path
    assert not ca_file.exists()  # removed with the server


def test_starttls_is_offered_and_upgrades() -> None:
    with Pop3TestServer(tls="starttls") as server:
        with pop3_sync.connect(
            "localhost", server.port, tls="starttls", ssl_context=server.client_ssl_context()
        ) as client:
            client.login(server.user, server.password)
            assert client.stat() == (0, 0)
        plain = poplib.POP3(*server.address, timeout=10)
        try:
            assert "STLS" in plain.capa()
        finally:
            plain.quit()


def test_without_trustme_tls_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _tls.tls_material.cache_clear()
    monkeypatch.setitem(sys.modules, "trustme", None)  # what a missing package looks like
    try:
        with pytest.raises(ModuleNotFoundError, match=r"pop3-sansio\[testing\]"):
            Pop3TestServer(tls="implicit")
        Pop3TestServer().start().close()  # plaintext needs no trustme
    finally:
        _tls.tls_material.cache_clear()


# --- async code: both servers from asyncio and from trio ------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _fetch_and_delete_first(server: Pop3TestServer | AsyncPop3TestServer, lib: str) -> bytes:
    """Log in with ``lib``'s client, retrieve message 1, delete it and QUIT."""
    if lib == "trio":
        async with pop3_trio.connect(*server.address, tls=None) as trio_client:
            await trio_client.login(server.user, server.password)
            body = await trio_client.retr(1)
            await trio_client.dele(1)
        return body
    async with pop3_asyncio.connect(*server.address, tls=None) as client:
        await client.login(server.user, server.password)
        body = await client.retr(1)
        await client.dele(1)
    return body


@pytest.mark.anyio
async def test_threaded_server_from_async_tests(anyio_backend: str) -> None:
    async with Pop3TestServer() as server:
        first = server.add_message(b"Subject: one\n\nfirst\n")
        second = server.add_message(b"Subject: two\n\nsecond\n")
        assert await _fetch_and_delete_first(server, anyio_backend) == crlf(first.data)
        assert server.deleted() == [first] and server.messages() == [second]


@pytest.mark.anyio
async def test_in_loop_server_from_async_tests(anyio_backend: str) -> None:
    async with AsyncPop3TestServer(tls="starttls") as server:
        first = server.add_message(b"Subject: one\n\nfirst\n")
        assert await _fetch_and_delete_first(server, anyio_backend) == crlf(first.data)
        assert server.deleted() == [first]
        assert await _offers_stls(server, anyio_backend)
    with pytest.raises(ConnectionRefusedError):  # stopped (refused at once: not blocking)
        socket.create_connection(server.address, timeout=10).close()


async def _offers_stls(server: AsyncPop3TestServer, lib: str) -> bool:
    if lib == "trio":
        async with pop3_trio.connect(*server.address, tls=None) as trio_client:
            trio_capa = await trio_client.capa()
        return trio_capa is not None and trio_capa.stls
    async with pop3_asyncio.connect(*server.address, tls=None) as client:
        capa = await client.capa()
    return capa is not None and capa.stls


@pytest.mark.anyio
async def test_in_loop_server_drops_sessions_on_exit_and_deletes_nothing(
    anyio_backend: str,
) -> None:
    client: pop3_trio.Client | pop3_asyncio.Client
    async with AsyncPop3TestServer() as server:
        kept = server.add_message(b"Subject: kept\n\nkept\n")
        with pytest.raises(RuntimeError, match="already running"):
            await server.__aenter__()
        if anyio_backend == "trio":
            client = pop3_trio.connect(*server.address, tls=None)
        else:
            client = pop3_asyncio.connect(*server.address, tls=None)
        await client.open()
        await client.login(server.user, server.password)
        await client.dele(1)
        # Leaving with the client still connected: the session is dropped, no QUIT.
    try:
        assert server.deleted() == [] and server.messages() == [kept]
        with pytest.raises(RemoteProtocolError, match="connection closed"):
            await client.noop()
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_in_loop_server_lets_the_tests_own_error_through(anyio_backend: str) -> None:
    # Not an ExceptionGroup from trio's nursery: the assertion the test made.
    with pytest.raises(AssertionError, match="the test's own"):
        async with AsyncPop3TestServer():
            raise AssertionError("the test's own")


@pytest.mark.anyio
async def test_in_loop_server_stops_when_the_test_is_cancelled(anyio_backend: str) -> None:
    with anyio.move_on_after(0.2) as scope:
        async with AsyncPop3TestServer() as server:
            await anyio.sleep(30)
    assert scope.cancelled_caught
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=10).close()


@pytest.mark.anyio
async def test_in_loop_server_with_implicit_tls(anyio_backend: str) -> None:
    async with AsyncPop3TestServer(tls="implicit") as server:
        server.add_message(b"Subject: tls\n\nover TLS\n")
        context = server.client_ssl_context()
        if anyio_backend == "trio":
            async with pop3_trio.connect(
                "localhost", server.port, tls="implicit", ssl_context=context
            ) as trio_client:
                await trio_client.login(server.user, server.password)
                assert (await trio_client.stat())[0] == 1
        else:
            async with pop3_asyncio.connect(
                "localhost", server.port, tls="implicit", ssl_context=context
            ) as client:
                await client.login(server.user, server.password)
                assert (await client.stat())[0] == 1
