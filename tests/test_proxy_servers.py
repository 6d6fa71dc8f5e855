"""Every binding's server with ``proxy_protocol=True``: the header first, then POP3 (or TLS).

The client side is a raw socket, so the tests choose exactly which octets arrive together:
the header and the first command (or the TLS ClientHello) in one ``sendall``, which a
server reading more than the header would swallow. The address in the header is the one
the server must use: a non-loopback one turns password logins off although the socket's
peer is 127.0.0.1, and it is the address in the log.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Iterator

import pytest

from bindings import NAMES, serving
from helpers import FakeBackend, crlf, log_fields, server_lines, wait_for, wait_for_log

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
MESSAGE = b"Subject: proxied\r\n\r\nhello from behind a proxy\r\n"
TIMEOUT = 10.0

pytestmark = pytest.mark.usefixtures("server_log")  # the session lines are asserted


def v1(src: str, sport: int = 4242, dst: str = "127.0.0.1", dport: int = 110) -> bytes:
    return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str, sport: int = 4242, dst: str = "127.0.0.1", dport: int = 110) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body += b"\x04\x00\x03abc"  # a NOOP TLV: ignored
    return SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body


LOCAL = SIG + b"\x20\x00\x00\x00"


class Raw:
    """A line-oriented client on a plain socket, every wait bounded."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.line()

    def body(self) -> bytes:
        lines = []
        while (line := self.line()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@contextlib.contextmanager
def raw(port: int) -> Iterator[Raw]:
    client = Raw(port)
    try:
        yield client
    finally:
        client.close()


def closed_silently(sock: socket.socket) -> bool:
    """Whether the server closed without sending a single octet (no greeting).

    A reset is a close too: the kernel resets a connection closed with unread input.
    """
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("name", NAMES)
def test_the_proxied_client_logs_in(
    name: str, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend([MESSAGE])
    header = (v1 if version == "v1" else v2)("127.0.0.2", 40001)
    with serving(name, backend, proxy_protocol=True, failed_login_delay=0) as port, raw(port) as c:
        # The header and the first command in one segment: CAPA must not be lost.
        c.send(header + b"CAPA\r\n")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK")
        assert b"USER\r\n" in c.body()  # 127.0.0.2 is loopback: password logins allowed
        assert c.command(b"USER alice").startswith(b"+OK")
        assert c.command(b"PASS secret").startswith(b"+OK")
        assert c.command(b"RETR 1").startswith(b"+OK")
        assert c.body() == crlf(MESSAGE)
        assert c.command(b"QUIT").startswith(b"+OK")
        line = wait_for_log(caplog, "session ended: ")
        login = wait_for_log(caplog, "login: ")
    # The client's address is the header's; the proxy's is the socket's peer.
    event, fields = log_fields(login)
    assert event == "login"
    assert fields["rip"] == "127.0.0.2"
    assert fields["rport"] == "40001"
    assert (fields["lip"], fields["lport"]) == ("127.0.0.1", str(port))
    assert fields["proxy"].startswith("127.0.0.1:")
    assert (fields["method"], fields["user"]) == ("USER", "<alice>")
    event, fields = log_fields(line)
    assert (event, fields["rip"], fields["rport"]) == ("session ended", "127.0.0.2", "40001")
    assert fields["proxy"] == log_fields(login)[1]["proxy"]
    assert (fields["user"], fields["reason"]) == ("<alice>", "quit")
    assert fields["retr"] == f"1/{len(crlf(MESSAGE))}"


@pytest.mark.parametrize("name", NAMES)
def test_the_proxied_address_decides_the_plaintext_policy(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The socket's peer is 127.0.0.1; the header says 192.0.2.7, which is not loopback.
    backend = FakeBackend([MESSAGE])
    with serving(name, backend, proxy_protocol=True, failed_login_delay=0) as port, raw(port) as c:
        c.send(v2("192.0.2.7"))
        assert c.line().startswith(b"+OK")
        assert c.command(b"CAPA").startswith(b"+OK")
        assert b"USER" not in c.body()
        assert c.command(b"USER alice").startswith(b"-ERR")
        assert c.command(b"QUIT").startswith(b"+OK")
        line = wait_for_log(caplog, "session ended: rip=192.0.2.7 ")
    assert log_fields(line)[1]["reason"] == "quit"


@pytest.mark.parametrize("name", NAMES)
def test_local_and_unknown_keep_the_socket_address(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend([MESSAGE])
    with serving(name, backend, proxy_protocol=True, failed_login_delay=0) as port:
        for header in (LOCAL, b"PROXY UNKNOWN\r\n"):
            with raw(port) as c:
                c.send(header)
                assert c.line().startswith(b"+OK")
                assert c.command(b"USER alice").startswith(b"+OK")  # 127.0.0.1: allowed
                assert c.command(b"QUIT").startswith(b"+OK")
        wait_for(lambda: len(server_lines(caplog)) == 2, 10, lambda: caplog.text)
    for line in server_lines(caplog):
        event, fields = log_fields(line)
        assert (event, fields["rip"], fields["reason"]) == ("session ended", "127.0.0.1", "quit")
        assert "proxy" not in fields  # the header named no client: no proxy to show


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"USER alice\r\n", "proxy-signature"),
        (b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\nUSER alice\r\n", "proxy-malformed"),
        (SIG + b"\x21\x11\xff\xff", "proxy-too-long"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_a_bad_header_is_closed_without_a_greeting(
    name: str, data: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend([])
    with serving(name, backend, proxy_protocol=True) as port, raw(port) as c:
        c.send(data)
        assert closed_silently(c.sock)
        line = wait_for_log(caplog, "no valid PROXY header")
    assert line.startswith("session ended: rip=127.0.0.1 rport=")
    assert log_fields(line)[1]["reason"].startswith("no valid PROXY header: ")
    assert f"reason={reason!r}" in line


@pytest.mark.parametrize("name", NAMES)
def test_a_silent_connection_is_closed_after_the_header_timeout(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend([])
    with serving(name, backend, proxy_protocol=True, proxy_timeout=0.3) as port, raw(port) as c:
        c.send(b"PROXY TCP4 127.0.0.2")  # and then nothing
        assert closed_silently(c.sock)  # before the socket's own TIMEOUT would raise
        line = wait_for_log(caplog, "no valid PROXY header")
    assert "reason='proxy-timeout'" in line


class MemoryTls:
    """A TLS client over ``sock`` through an ``SSLObject``, so that its first flight can go
    out in the same ``sendall`` as ``prefix``."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, prefix: bytes) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.buffer = b""
        pending = prefix
        while True:
            try:
                self.tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            self.sock.sendall(pending + self.outgoing.read())
            pending = b""
            if done:
                return
            self._receive()

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.incoming.write(data)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def _read(self) -> bytes:
        try:
            return self.tls.read(65536)
        except ssl.SSLWantReadError:
            self._receive()
            return b""

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            self.buffer += self._read()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("name", NAMES)
def test_implicit_tls_starts_after_the_header(
    name: str,
    version: str,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FakeBackend([MESSAGE])
    header = (v1 if version == "v1" else v2)("192.0.2.99", 5995)
    options = {"proxy_protocol": True, "ssl_context": server_ssl, "failed_login_delay": 0}
    with (
        serving(name, backend, **options) as port,
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock,
    ):
        # The header and the ClientHello in one segment: the server must read exactly
        # the header before TLS starts, or the handshake fails.
        c = MemoryTls(sock, client_ssl, header)
        assert c.line().startswith(b"+OK")
        # 192.0.2.99 is not loopback, but this is TLS: password logins are allowed.
        c.send(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
        assert [c.line()[:3] for _ in range(3)] == [b"+OK"] * 3
        lines = []
        while (line := c.line()) != b".\r\n":
            lines.append(line)
        assert b"".join(lines) == crlf(MESSAGE)
        c.send(b"QUIT\r\n")
        assert c.line().startswith(b"+OK")
        line = wait_for_log(caplog, "session ended: rip=192.0.2.99 ")
    fields = log_fields(line)[1]
    assert (fields["user"], fields["reason"]) == ("<alice>", "quit")
    assert fields["tls"].startswith("TLSv1.")  # implicit TLS, behind the proxy
    assert fields["cipher"] not in ("", "?")


@pytest.mark.parametrize("name", NAMES)
def test_sessions_per_address_are_limited(name: str) -> None:
    backend = FakeBackend([])
    with (
        serving(name, backend, proxy_protocol=True, max_sessions_per_address=1) as port,
        raw(port) as first,
    ):
        first.send(v1("127.0.0.5"))
        assert first.line().startswith(b"+OK")
        with raw(port) as second, raw(port) as other:
            second.send(v1("127.0.0.5", 5))
            assert second.line() == b"-ERR [SYS/TEMP] too many sessions from your address\r\n"
            other.send(v2("127.0.0.6"))
            assert other.line().startswith(b"+OK")
        assert first.command(b"QUIT").startswith(b"+OK")
        assert first.line() == b""
        # Once the first session is over, the address may connect again.
        deadline = time.monotonic() + TIMEOUT
        while True:
            with raw(port) as again:
                again.send(v1("127.0.0.5"))
                if again.line().startswith(b"+OK"):
                    break
            assert time.monotonic() < deadline, "the first session was never counted off"
            time.sleep(0.02)


DEFAULT_PER_ADDRESS = 20
"""``ServerOptions.max_sessions_per_address`` when it is not given."""


@pytest.mark.parametrize("name", NAMES)
def test_one_address_cannot_take_every_session_by_default(name: str) -> None:
    """With the default options one address has 20 sessions; others still get in.

    The sessions here never log in: they are counted all the same, from the
    greeting. The address counted is the PROXY header's.
    """
    backend = FakeBackend([])
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(serving(name, backend, proxy_protocol=True))
        for n in range(DEFAULT_PER_ADDRESS):
            idle = stack.enter_context(raw(port))
            idle.send(v1("192.0.2.7", 1000 + n))
            assert idle.line().startswith(b"+OK"), n
        with raw(port) as beyond, raw(port) as other:
            beyond.send(v2("192.0.2.7", 999))
            assert beyond.line() == b"-ERR [SYS/TEMP] too many sessions from your address\r\n"
            assert beyond.line() == b""  # and closed
            other.send(v1("192.0.2.8"))
            assert other.line().startswith(b"+OK")


@pytest.mark.parametrize("name", NAMES)
def test_sessions_per_address_without_a_proxy(name: str) -> None:
    backend = FakeBackend([])
    with serving(name, backend, max_sessions_per_address=1) as port, raw(port) as first:
        assert first.line().startswith(b"+OK")
        with raw(port) as second:
            assert second.line() == b"-ERR [SYS/TEMP] too many sessions from your address\r\n"
