"""Twisted's POP3 client against every binding's server, and every binding's client against
Twisted's POP3 server.

Each Twisted side runs in a subprocess of its own (so its reactor is isolated from the
test's event loops): twisted_pop3_client.py for one client session, twisted_pop3_server.py
for a server over a directory of message files (see those files for what is Twisted's own
and what the scripts add). Twisted comes from PyPI (the ``test`` extra, ``twisted[tls]``:
pyOpenSSL for its TLS). Twisted's client is also run over STLS and implicit TLS against our
servers, and our clients against Twisted's server over implicit TLS (it has no STLS), all
with certificates of the test CA, verified.

Twisted's server is a good test of a client's tolerance: it announces ``PIPELINE`` (not
``PIPELINING``), answers ``+OK `` with a trailing space, reports the stored (LF) size of a
message in LIST and in RETR's ``+OK`` where RFC 1939 wants the CRLF size, and sends stored
LF line ends as CRLF by a blind ``\\n`` -> ``\\r\\n`` replacement. So its messages are stored
with LF, and none has a line starting with a dot at a 16 KiB boundary: Twisted byte-stuffs
chunk by chunk and misses such a line (a bug of Twisted's, not something a client can mend).
"""

from __future__ import annotations

import contextlib
import json
import select
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import trustme

import bindings
from ourserver import MESSAGES, PASSWORD, USER, Served, run, serve_maildir
from peers import HOST, as_received

pytest_plugins = ["peers", "ourserver"]

HERE = Path(__file__).parent
CHUNK = 2**14  # Twisted's FileSender reads and byte-stuffs messages in chunks of this size
TWISTED_MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nHello.\n.leading dot\n..two dots\n.\nend\n",
    b"Subject: no final newline\n\nlast line",
    b"Subject: empty body\n\n",
    b"Subject: eight bits\n\ncaf\xc3\xa9 \xe2\x82\xac\n",
    b"From: big@example.org\nSubject: big\n\n"
    + b"".join(b"." * (i % 3) + b"z" * (i % 997) + b"\n" for i in range(300)),
]


def test_no_dot_line_at_a_chunk_boundary() -> None:
    """The messages avoid Twisted's byte-stuffing bug (see the module), and use chunks."""
    for message in TWISTED_MESSAGES:
        assert all(message[n : n + 1] != b"." for n in range(0, len(message), CHUNK))
    assert len(TWISTED_MESSAGES[-1]) > 2 * CHUNK


def twisted_available() -> None:
    pytest.importorskip("twisted.mail.pop3", reason="Twisted is in the test extra")


# --- Twisted's client against our servers --------------------------------------------------


def twisted_client(
    port: int, *delete: int, tls: str | None = None, ca_file: Path | None = None
) -> dict[str, object]:
    twisted_available()
    script = HERE / "twisted_pop3_client.py"
    options = [] if tls is None else ["--tls", tls, "--ca", str(ca_file)]
    command = [sys.executable, str(script), str(port), USER, PASSWORD, *map(str, delete)]
    result = run([*command, *options])
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return out


def messages(out: dict[str, object]) -> list[bytes]:
    """The messages as Twisted's client gave them: its lines, each with CRLF put back."""
    got = out["messages"]
    assert isinstance(got, list)
    return [b"".join(bytes.fromhex(line) + b"\r\n" for line in lines) for lines in got]


def test_twisted_client_apop(served: Served) -> None:
    out = twisted_client(served.port, 2, 4)
    assert out["apop"] is True  # Twisted's login() prefers APOP when the greeting allows it
    sizes = [len(as_received(m)) for m in MESSAGES]
    assert out["stat"] == [len(MESSAGES), sum(sizes)]
    assert out["sizes"] == sizes
    assert out["uids"] == served.names
    assert messages(out) == [as_received(m) for m in MESSAGES]
    assert {"TOP", "UIDL", "USER", "PIPELINING", "SASL", "STLS"} <= set(out["capabilities"])
    # DELE 2 and DELE 4, then QUIT: exactly those two are gone.
    kept = [0, 2, 4, 5]
    assert served.stored() == {served.names[i]: MESSAGES[i] for i in kept}


@pytest.mark.parametrize("binding", bindings.NAMES)
def test_twisted_client_user_pass(
    binding: str, tmp_path: Path, ca: trustme.CA, served_cert: trustme.LeafCert
) -> None:
    # No APOP timestamp and no STLS: Twisted's login() falls back to USER/PASS.
    with serve_maildir(binding, tmp_path, ca, served_cert, apop=False, starttls=False) as served:
        out = twisted_client(served.port)
        assert out["apop"] is False
        assert messages(out) == [as_received(m) for m in MESSAGES]
        assert out["uids"] == served.names
        assert served.stored() == served.original()


@pytest.mark.parametrize("binding", bindings.NAMES)
def test_twisted_client_stls(
    binding: str, tmp_path: Path, ca: trustme.CA, served_cert: trustme.LeafCert
) -> None:
    # No APOP timestamp: after STLS (with the certificate verified), Twisted's login()
    # sends USER/PASS over TLS.
    with serve_maildir(binding, tmp_path, ca, served_cert, apop=False) as served:
        out = twisted_client(served.port, 1, tls="starttls", ca_file=served.ca_file)
        assert out["tls"] is True and out["apop"] is False
        assert "STLS" in out["capabilities_before_tls"]
        assert "STLS" not in out["capabilities"]  # RFC 2595: not offered again after TLS
        assert {"USER", "UIDL", "TOP"} <= set(out["capabilities"])
        assert messages(out) == [as_received(m) for m in MESSAGES]
        assert out["uids"] == served.names
        # DELE 1 over TLS, then QUIT: exactly that one is gone.
        assert served.stored() == {
            n: m for n, m in served.original().items() if n != served.names[0]
        }


def test_twisted_client_implicit_tls(served: Served) -> None:
    out = twisted_client(served.tls_port, 3, tls="implicit", ca_file=served.ca_file)
    assert out["tls"] is True
    assert out["apop"] is True  # the greeting has a timestamp: APOP, over TLS
    assert "STLS" not in out["capabilities"]  # already TLS
    sizes = [len(as_received(m)) for m in MESSAGES]
    assert out["stat"] == [len(MESSAGES), sum(sizes)]
    assert out["sizes"] == sizes
    assert messages(out) == [as_received(m) for m in MESSAGES]
    assert served.stored() == {n: m for n, m in served.original().items() if n != served.names[2]}


# --- our clients against Twisted's server --------------------------------------------------


@dataclass
class TwistedServer:
    port: int
    root: Path
    names: list[str]

    def stored(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in self.root.iterdir()}


@contextlib.contextmanager
def twisted_server(root: Path, cert: trustme.LeafCert | None = None) -> Iterator[TwistedServer]:
    """Twisted's POP3 server over ``TWISTED_MESSAGES``, in files under ``root``.

    With ``cert``, it speaks implicit TLS with that certificate (and its key).
    """
    twisted_available()
    mail = root / "mail"
    mail.mkdir()
    names = [f"msg-{i:02}" for i in range(1, len(TWISTED_MESSAGES) + 1)]
    for name, message in zip(names, TWISTED_MESSAGES, strict=True):
        (mail / name).write_bytes(message)
    tls = []
    if cert is not None:
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        tls = [str(root / "cert.pem"), str(root / "key.pem")]
    script = HERE / "twisted_pop3_server.py"
    log = root / "twisted.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), str(mail), USER, PASSWORD, *tls],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready else b""
        assert line.startswith(b"PORT "), log.read_text(errors="replace")
        yield TwistedServer(int(line.split()[1]), mail, names)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        print(log.read_text(errors="replace"))  # shown when a test fails


@pytest.fixture(scope="module")
def shared_twisted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwistedServer]:
    """One Twisted server for the tests that delete nothing."""
    with twisted_server(tmp_path_factory.mktemp("twisted")) as server:
        yield server


def client(binding: str, server: TwistedServer) -> bindings.Client:
    return bindings.connect(binding, HOST, server.port, tls=None, timeout=10)


@pytest.mark.parametrize("binding", bindings.NAMES)
@pytest.mark.parametrize("mechanism", [None, "USER", "APOP", "CRAM-MD5"], ids=lambda m: m or "auto")
def test_twisted_server_login_and_read(
    shared_twisted: TwistedServer, binding: str, mechanism: str | None
) -> None:
    server = shared_twisted
    received = [as_received(m) for m in TWISTED_MESSAGES]

    async def session() -> None:
        with anyio.fail_after(30):
            async with client(binding, server) as c:
                caps = await c.capa()
                # The client takes Twisted's PIPELINE for PIPELINING (Twisted queues the
                # commands that arrive while it answers one), so USER and PASS, and the
                # RETRs of retr_many, go out pipelined below.
                assert caps is not None and "PIPELINE" in caps.tags and caps.pipelining
                assert await c.login(USER, PASSWORD, mechanism=mechanism)
                assert await c.stat() == (len(TWISTED_MESSAGES), sum(map(len, TWISTED_MESSAGES)))
                # Twisted's sizes are the stored LF sizes; the messages still arrive whole.
                listing = await c.list()
                assert listing == {n: len(m) for n, m in enumerate(TWISTED_MESSAGES, 1)}
                assert listing[1] < len(received[0])
                assert await c.uidl() == dict(enumerate(server.names, 1))
                assert await c.list(2) == {2: len(TWISTED_MESSAGES[1])}
                # Twisted answers UIDL n with "+OK <uid>", without the message number.
                assert await c.uidl(3) == {3: server.names[2]}
                for n, expected in enumerate(received, 1):
                    assert await c.retr(n) == expected
                many = [(n, m) async for n, m in c.retr_many(range(1, len(received) + 1))]
                assert many == list(enumerate(received, 1))
                assert await c.noop() == ""  # "+OK " with a trailing space: empty text
        assert server.stored() == dict(zip(server.names, TWISTED_MESSAGES, strict=True))

    anyio.run(session, backend=bindings.ANYIO_BACKEND[binding])


@pytest.mark.parametrize("binding", bindings.NAMES)
def test_twisted_server_top(shared_twisted: TwistedServer, binding: str) -> None:
    server = shared_twisted

    async def session() -> None:
        with anyio.fail_after(30):
            async with client(binding, server) as c:
                await c.login(USER, PASSWORD, mechanism="USER")
                assert await c.top(1, 2) == (
                    b"From: a@example.org\r\nSubject: one\r\n\r\nHello.\r\n.leading dot\r\n"
                )
                assert await c.top(3, 0) == b"Subject: empty body\r\n\r\n"

    anyio.run(session, backend=bindings.ANYIO_BACKEND[binding])


@pytest.mark.parametrize("binding", bindings.NAMES)
def test_twisted_server_dele_then_quit(tmp_path: Path, binding: str) -> None:
    class DroppedError(Exception):
        pass

    async def session(server: TwistedServer) -> None:
        with anyio.fail_after(30):
            # DELE, then leaving with an exception: no QUIT, so nothing is deleted.
            with pytest.raises(DroppedError):
                async with client(binding, server) as c:
                    await c.login(USER, PASSWORD)
                    assert await c.dele(1) == ""
                    raise DroppedError
            # DELE 2 and 5, then QUIT (leaving the block normally): exactly those go.
            async with client(binding, server) as c:
                await c.login(USER, PASSWORD)
                assert await c.dele(2) == ""
                assert await c.dele(5) == ""
                # Twisted's STAT and LIST still count the deleted messages, as 0 octets.
                kept = sum(len(TWISTED_MESSAGES[i]) for i in (0, 2, 3))
                assert await c.stat() == (len(TWISTED_MESSAGES), kept)
                listing = await c.list()
                assert [n for n, size in listing.items() if size == 0] == [2, 5]

    with twisted_server(tmp_path) as server:
        before = server.stored()
        anyio.run(session, server, backend=bindings.ANYIO_BACKEND[binding])
        # Twisted removes the files before it answers QUIT, and the client waits for that.
        assert server.stored() == {n: before[n] for n in ("msg-01", "msg-03", "msg-04")}


@pytest.fixture(scope="module")
def twisted_tls(
    tmp_path_factory: pytest.TempPathFactory, served_cert: trustme.LeafCert
) -> Iterator[TwistedServer]:
    """One Twisted server over implicit TLS (certificate of the test CA), for reading."""
    with twisted_server(tmp_path_factory.mktemp("twisted-tls"), served_cert) as server:
        yield server


@pytest.mark.parametrize("binding", bindings.NAMES)
@pytest.mark.parametrize("mechanism", ["USER", "APOP", "CRAM-MD5"])
def test_twisted_server_implicit_tls(
    twisted_tls: TwistedServer, client_ssl: ssl.SSLContext, binding: str, mechanism: str
) -> None:
    server = twisted_tls
    received = [as_received(m) for m in TWISTED_MESSAGES]

    async def session() -> None:
        with anyio.fail_after(30):
            async with bindings.connect(
                binding, HOST, server.port, tls="implicit", ssl_context=client_ssl, timeout=10
            ) as c:
                assert c.session.connection.tls_active
                caps = await c.capa()
                assert caps is not None and caps.pipelining and not caps.stls
                await c.login(USER, PASSWORD, mechanism=mechanism)
                assert await c.uidl() == dict(enumerate(server.names, 1))
                many = [(n, m) async for n, m in c.retr_many(range(1, len(received) + 1))]
                assert many == list(enumerate(received, 1))
                assert await c.top(3, 0) == b"Subject: empty body\r\n\r\n"
        assert server.stored() == dict(zip(server.names, TWISTED_MESSAGES, strict=True))

    anyio.run(session, backend=bindings.ANYIO_BACKEND[binding])


@pytest.mark.parametrize("binding", bindings.NAMES)
def test_twisted_server_implicit_tls_refuses_an_untrusted_certificate(
    twisted_tls: TwistedServer, binding: str
) -> None:
    async def session() -> None:
        with anyio.fail_after(30), pytest.raises(ssl.SSLCertVerificationError):
            async with bindings.connect(binding, HOST, twisted_tls.port, timeout=10):
                pass  # pragma: no cover - the handshake fails

    anyio.run(session, backend=bindings.ANYIO_BACKEND[binding])
