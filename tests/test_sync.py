"""pop3_sync: what only this binding has (timeouts, the poplib facade, shutdown, logging).

What every client and server share (every command, locks, SASL, TLS, streaming...)
is tested once for every pair of bindings in tests/test_conformance.py.
"""

from __future__ import annotations

import logging
import poplib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

import pop3_sansio as p
import pop3_sync as ps
from helpers import FakeBackend, crlf, fake_server, log_fields, server_lines, wait_for
from pop3_sync import poplib as compat

# --- shared with test_asyncio.py ---------------------------------------------------------

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nHello.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n.\n..two\nno final newline",
    b"Subject: crlf\r\n\r\nalready CRLF\r\n",
]
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]


# --- binding-specific helpers ------------------------------------------------------------


def serve(backend: FakeBackend, **options: object) -> ps.Server:
    """A sync server on a free loopback port, accepting in a background thread."""
    return ps.serve(backend, "127.0.0.1", 0, **options).start()


def plain(port: int, host: str = "127.0.0.1", **kwargs: object) -> ps.Client:
    return ps.connect(host, port, tls=None, **kwargs)  # type: ignore[arg-type]


class Running:
    def __init__(self, server: ps.Server, backend: FakeBackend) -> None:
        self.server = server
        self.backend = backend
        self.port = server.port


@pytest.fixture
def running() -> Iterator[Running]:
    backend = FakeBackend(MESSAGES)
    with serve(backend, failed_login_delay=0, apop=True, mechanisms=MECHANISMS) as server:
        yield Running(server, backend)


# --- the behaviours ----------------------------------------------------------------------


def test_poplib_facade_verifies_certificates_by_default(server_ssl: ssl.SSLContext) -> None:
    # pop3_sync.connect's own default is checked by tests/test_conformance.py.
    backend = FakeBackend(MESSAGES)
    with serve(backend, ssl_context=server_ssl) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            compat.POP3_SSL("localhost", server.port, timeout=10)


def test_stls_injection_is_dropped(server_ssl: ssl.SSLContext) -> None:
    # CVE-2011-0411: plaintext pipelined behind STLS must never run inside TLS.
    backend = FakeBackend(MESSAGES)
    with serve(backend, starttls_context=server_ssl) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"STLS\r\nCAPA\r\n")
            assert reader.readline() == b"+OK begin TLS negotiation\r\n"
            assert reader.read() == b""  # closed, CAPA never answered


def test_poplib_stls_response_injection_is_refused() -> None:
    answers = [b"+OK\r\nSTLS\r\n.\r\n", b"+OK go ahead\r\n+OK injected\r\n"]
    listener, thread = fake_server(answers)
    with listener:
        client = compat.POP3("127.0.0.1", listener.getsockname()[1], timeout=5)
        with pytest.raises(compat.error_proto, match="after the STLS"):
            client.stls()
        assert client.sock is None
    thread.join(5)


def test_client_timeout_is_a_timeout_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:  # accepts (backlog) but never greets
        client = ps.connect("127.0.0.1", listener.getsockname()[1], tls=None, timeout=0.2)
        with pytest.raises(ps.Timeout) as info:
            client.open()
        assert isinstance(info.value, TimeoutError)
        client.close()


@pytest.mark.parametrize("module", [poplib, compat], ids=["stdlib", "pop3_sync"])
def test_poplib_fetches_byte_exact(running: Running, module: object) -> None:
    client = module.POP3("127.0.0.1", running.port, timeout=10)  # type: ignore[attr-defined]
    client.user("alice")
    client.pass_("secret")
    count, _ = client.stat()
    bodies = [b"\r\n".join(client.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
    client.quit()
    assert bodies == [crlf(m) for m in MESSAGES]


@pytest.mark.parametrize("leave", ["raise", "break"])
def test_interrupted_retr_leaves_the_client_unusable(running: Running, leave: str) -> None:
    with plain(running.port) as client:
        client.login("alice", "secret")
        if leave == "raise":
            with pytest.raises(RuntimeError):
                for _ in client.iter_retr(1):
                    raise RuntimeError("stop reading half-way")
        else:
            for _ in client.iter_retr(1):
                break
        with pytest.raises(ConnectionError, match="unusable"):
            client.noop()
        with pytest.raises(ConnectionError, match="unusable"):
            client.noop()


def test_bad_tls_mode() -> None:
    with pytest.raises(ValueError, match="tls must be"):
        ps.connect("localhost", tls="sometimes")  # type: ignore[arg-type]


def test_default_ports() -> None:
    assert ps.connect("h").port == 995
    assert ps.connect("h", tls="starttls").port == 110
    assert ps.connect("h", tls=None).port == 110


def test_server_shutdown_commits_nothing_without_quit(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(MESSAGES)
    server = serve(backend)
    client = plain(server.port, timeout=5)
    client.open()
    client.login("alice", "secret")
    client.dele(1)
    with caplog.at_level(logging.INFO, logger="pop3.server"):
        server.close()
    with pytest.raises((p.RemoteProtocolError, ConnectionError)):
        client.noop()
    client.close()
    assert backend.committed == []  # nothing deleted
    assert backend.closed == backend.opened == 1  # the maildrop went with the session
    assert any("ended" in r.getMessage() and "alice" in r.getMessage() for r in caplog.records)


def test_failed_login_delay_does_not_hold_up_shutdown() -> None:
    # The delay is a Sleep the server's session thread must leave when the server
    # closes: close() returns, and the client's login ends, not an hour later.
    # (When the delay comes: test_server_driver.py, on the driver's instructions.)
    backend = FakeBackend(MESSAGES)
    checked = threading.Event()
    check_password = backend.check_password

    def checking(username: str, password: str) -> bool:
        try:
            return check_password(username, password)
        finally:
            checked.set()  # the Sleep comes next

    backend.check_password = checking  # type: ignore[method-assign]
    server = serve(backend, failed_login_delay=3600)
    client = plain(server.port, timeout=60)
    client.open()
    outcome: list[BaseException] = []

    def login() -> None:
        try:
            client.login("alice", "wrong")
        except BaseException as exc:  # what the client saw
            outcome.append(exc)

    thread = threading.Thread(target=login, daemon=True)
    thread.start()
    assert checked.wait(10)
    closing = threading.Thread(target=server.close, daemon=True)
    closing.start()
    closing.join(10)  # bounds a hang: the delay is an hour
    assert not closing.is_alive()
    thread.join(10)
    assert not thread.is_alive()
    client.close()
    # The login failed at once: -ERR (the delay cut short) or the connection dropped.
    assert len(outcome) == 1 and not isinstance(outcome[0], TimeoutError), outcome


def test_a_login_line_and_one_end_line_per_session(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pop3.server"):
        with plain(running.port) as client:
            client.login("alice", "secret")
        # The session thread logs after it has let go of the session: wait for the line.
        wait_for(lambda: len(server_lines(caplog)) >= 2)
    logged = [log_fields(line) for line in server_lines(caplog)]
    assert [event for event, _ in logged] == ["login", "session ended"], logged
    assert logged[1][1]["reason"] == "quit"
    assert logged[1][1]["user"] == "<alice>"


def test_serve_forever_in_a_thread_of_ones_own() -> None:
    backend = FakeBackend(MESSAGES)
    server = ps.serve(backend, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    with plain(server.port) as client:
        client.login("alice", "secret")
        assert client.stat()[0] == 3
    server.shutdown()
    thread.join(5)
    assert not thread.is_alive()
