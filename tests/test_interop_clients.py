"""Real POP3 clients (curl, the standard library's poplib) against every binding's server.

Each test runs once per binding (asyncio, trio, sync): that binding's server runs in a
thread of its own on 127.0.0.1 (``serving`` from bindings.py), serving a Maildir in
``tmp_path``, and once more per binding serving the same messages from PostgreSQL
(ourserver.py); the clients run as subprocesses (curl) or in a worker thread (poplib).
curl comes from the Debian package curl (``make peers``); without it the curl tests
skip, or fail when ``POP3_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import poplib
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
import trustme

from ourserver import STORAGES, Served, serve_maildir, storage_for, storage_id
from peers import HOST, as_received, require_peer

pytest_plugins = ["peers", "ourserver"]
pytestmark = pytest.mark.anyio

T = TypeVar("T")
PASSWORD = "s3cret-Pa55"
MESSAGES = [
    b"From: a@example.org\nTo: alice@example.org\nSubject: one\n\nHello.\nSecond line.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n..two dots\n.\nend\n",
    b"Subject: stored with CRLF\r\nX-Test: 3\r\n\r\nalready CRLF\r\n",
    b"Subject: no final newline\n\nlast line",
    b"From: big@example.org\nSubject: big\n\n"
    + b"".join(b"." * (i % 3) + b"y" * (i % 1013) + b"\n" for i in range(2000)),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=STORAGES, ids=storage_id)
def served(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    peer_ca: trustme.CA,
    peer_cert: trustme.LeafCert,
) -> Iterator[Served]:
    """Each binding's server in turn, with every SASL mechanism, STLS and implicit TLS,
    from a Maildir and from PostgreSQL."""
    mechanisms = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]
    with serve_maildir(
        request.param[0],
        tmp_path,
        peer_ca,
        peer_cert,
        messages=MESSAGES,
        mechanisms=mechanisms,
        storage=storage_for(request),
    ) as served:
        yield served


# --- curl ---------------------------------------------------------------------------------


@dataclass
class Curl:
    returncode: int
    stdout: bytes
    stderr: str

    def sent(self) -> list[str]:
        """The commands curl sent (from ``-v``), secrets and all."""
        return re.findall(r"^> (.*?)\r?$", self.stderr, re.MULTILINE)


async def curl(url: str, *args: str, user: str = f"alice:{PASSWORD}") -> Curl:
    command = [require_peer("curl", "curl"), "-sS", "-v", "--max-time", "20", "-u", user]
    result = await anyio.run_process([*command, *args, url], check=False)
    return Curl(result.returncode, result.stdout, result.stderr.decode(errors="replace"))


def ok(result: Curl) -> bytes:
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_curl_list(served: Served) -> None:
    result = await curl(f"pop3://{HOST}:{served.port}/")
    expected = "".join(f"{n} {len(as_received(m))}\r\n" for n, m in enumerate(MESSAGES, 1))
    assert ok(result).decode() == expected
    assert result.sent()[-1] == "LIST"  # curl's closing QUIT is not shown by -v


@pytest.mark.parametrize("n", range(1, len(MESSAGES) + 1))
async def test_curl_retr_is_byte_exact(served: Served, n: int) -> None:
    assert ok(await curl(f"pop3://{HOST}:{served.port}/{n}")) == as_received(MESSAGES[n - 1])


async def test_curl_uidl_and_top(served: Served) -> None:
    uidl = ok(await curl(f"pop3://{HOST}:{served.port}/", "-X", "UIDL"))
    assert uidl.decode() == "".join(f"{n} {name}\r\n" for n, name in enumerate(served.names, 1))
    top = ok(await curl(f"pop3://{HOST}:{served.port}/", "-X", "TOP 1 0"))
    assert top == b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: one\r\n\r\n"


@pytest.mark.parametrize(
    ("options", "command"),
    [
        ("AUTH=PLAIN", "AUTH PLAIN"),
        ("AUTH=LOGIN", "AUTH LOGIN"),
        ("AUTH=CRAM-MD5", "AUTH CRAM-MD5"),
        ("AUTH=+APOP", "APOP alice "),
    ],
)
async def test_curl_login_options(served: Served, options: str, command: str) -> None:
    result = await curl(f"pop3://{HOST}:{served.port}/1", "--login-options", options)
    assert ok(result) == as_received(MESSAGES[0])
    assert any(line.startswith(command) for line in result.sent()), result.sent()
    assert not any(line.startswith(("USER", "PASS")) for line in result.sent())


async def test_curl_wrong_password(served: Served) -> None:
    result = await curl(f"pop3://{HOST}:{served.port}/", user="alice:wrong")
    assert result.returncode == 67, result.stderr  # CURLE_LOGIN_DENIED
    assert result.stdout == b""


async def test_curl_dele_then_quit(served: Served) -> None:
    # -I: DELE has a one-line answer; without it curl waits for a multi-line body.
    result = await curl(f"pop3://{HOST}:{served.port}/2", "-X", "DELE", "-I")
    ok(result)
    assert result.sent()[-1] == "DELE 2"
    # Gone, so curl sent QUIT (not shown by -v): only QUIT commits (RFC 1939).
    stored = served.stored()
    assert sorted(stored) == sorted(served.names[:1] + served.names[2:])
    assert sorted(stored.values()) == sorted(MESSAGES[:1] + MESSAGES[2:])


async def test_curl_stls(served: Served) -> None:
    url = f"pop3://{HOST}:{served.port}/1"
    result = await curl(url, "--ssl-reqd", "--cacert", str(served.ca_file))
    assert ok(result) == as_received(MESSAGES[0])
    assert result.sent()[0] == "CAPA" and "STLS" in result.sent()
    # The certificate is checked: trusting another CA, curl refuses it.
    other = served.maildir.parent / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    refused = await curl(url, "--ssl-reqd", "--cacert", str(other))
    assert refused.returncode == 60, refused.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert refused.stdout == b""


async def test_curl_implicit_tls(served: Served) -> None:
    url = f"pop3s://{HOST}:{served.tls_port}/"
    result = await curl(url + "5", "--cacert", str(served.ca_file))
    assert ok(result) == as_received(MESSAGES[4])
    assert "STLS" not in result.sent()


# --- poplib -------------------------------------------------------------------------------


async def in_thread(function: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(function)


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def check_session(client: poplib.POP3) -> None:
    """What every poplib session below does once logged in."""
    count, size = client.stat()
    sizes = [len(as_received(m)) for m in MESSAGES]
    assert (count, size) == (len(MESSAGES), sum(sizes))
    _, listing, _ = client.list()
    assert listing == [f"{n} {s}".encode() for n, s in enumerate(sizes, 1)]
    for n, message in enumerate(MESSAGES, 1):
        _, lines, octets = client.retr(n)
        assert joined(lines) == as_received(message)
        assert octets == sizes[n - 1]


async def test_poplib_user_pass(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            assert client.getwelcome().startswith(b"+OK")
            assert "USER" in client.capa()
            client.user("alice")
            assert client.pass_(PASSWORD).startswith(b"+OK")
            check_session(client)
            _, uids, _ = client.uidl()
            assert uids == [f"{n} {name}".encode() for n, name in enumerate(served.names, 1)]
            assert client.uidl(3) == f"+OK 3 {served.names[2]}".encode()
            _, head, _ = client.top(2, 1)
            assert joined(head) == b"From: b@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n"
            assert client.quit().startswith(b"+OK")
        finally:
            client.close()

    await in_thread(session)


async def test_poplib_wrong_password(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            client.user("alice")
            with pytest.raises(poplib.error_proto) as caught:
                client.pass_("wrong")
            assert caught.value.args[0].startswith(b"-ERR [AUTH]")
        finally:
            client.close()

    await in_thread(session)


async def test_poplib_apop(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            assert re.search(rb"<[^<>]+@[^<>]+>", client.getwelcome())
            with pytest.raises(poplib.error_proto):
                client.apop("alice", "wrong")
            assert client.apop("alice", PASSWORD).startswith(b"+OK")
            check_session(client)
            client.quit()
        finally:
            client.close()

    await in_thread(session)


async def test_poplib_stls(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            assert "STLS" in client.capa()
            client.stls(context=served.context())
            assert isinstance(client.sock, ssl.SSLSocket)
            assert "STLS" not in client.capa()
            client.user("alice")
            client.pass_(PASSWORD)
            check_session(client)
            client.quit()
        finally:
            client.close()

    await in_thread(session)


async def test_poplib_stls_verifies_the_certificate(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                client.stls(context=ssl.create_default_context())
        finally:
            client.file.close()  # the failed handshake closed the socket itself
            client.sock.close()

    await in_thread(session)


async def test_poplib_pop3_ssl(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3_SSL(HOST, served.tls_port, timeout=10, context=served.context())
        try:
            assert client.sock.getpeercert() is not None
            assert "STLS" not in client.capa()
            client.user("alice")
            client.pass_(PASSWORD)
            check_session(client)
            client.quit()
        finally:
            client.close()

    await in_thread(session)


async def test_poplib_dele_and_quit(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            client.user("alice")
            client.pass_(PASSWORD)
            client.dele(1)
            client.dele(4)
            with pytest.raises(poplib.error_proto):
                client.retr(1)
            assert client.stat()[0] == len(MESSAGES) - 2
            client.quit()
        finally:
            client.close()

    await in_thread(session)
    stored = served.stored()
    assert sorted(stored) == sorted([served.names[1], served.names[2], served.names[4]])
    assert sorted(stored.values()) == sorted([MESSAGES[1], MESSAGES[2], MESSAGES[4]])


async def test_poplib_dele_without_quit_deletes_nothing(served: Served) -> None:
    def session() -> None:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            client.user("alice")
            client.pass_(PASSWORD)
            for n in range(1, len(MESSAGES) + 1):
                client.dele(n)
        finally:
            client.close()  # no QUIT

    before = served.stored()
    await in_thread(session)

    # The server notices the closed connection and unlocks the maildrop.
    def relogin() -> int:
        client = poplib.POP3(HOST, served.port, timeout=10)
        try:
            client.user("alice")
            client.pass_(PASSWORD)
            count = client.stat()[0]
            client.quit()
            return count
        finally:
            client.close()

    with anyio.fail_after(5):
        while True:
            try:
                count = await in_thread(relogin)
                break
            except poplib.error_proto as exc:  # [IN-USE] until the old session is gone
                assert b"[IN-USE]" in exc.args[0]
                await anyio.sleep(0.05)
    assert count == len(MESSAGES)
    assert served.stored() == before
