"""HAProxy in front of each binding's server, with ``send-proxy`` (v1) and ``send-proxy-v2``.

The client connects to HAProxy from 127.0.0.2; HAProxy connects to the server from
127.0.0.1. The server must log the client's address, and treat it as the peer. HAProxy's
health checks (``check check-send-proxy``) must be accepted as well, not logged as bad
headers. With implicit TLS, HAProxy passes TLS through: the header comes first, in the
clear, and the TLS handshake follows it. HAProxy runs with the configuration
docs/deployment.md shows (tests/haproxy.py).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import BinaryIO

import pytest

from bindings import NAMES, serving
from haproxy import haproxy
from helpers import FakeBackend, crlf, log_fields, wait_for, wait_for_log

CLIENT = "127.0.0.2"  # where the client connects from: not HAProxy's 127.0.0.1
MESSAGE = b"Subject: through HAProxy\r\n\r\nhello\r\n"
TIMEOUT = 10.0

pytestmark = pytest.mark.usefixtures("server_log")  # the session lines are asserted


def multiline(f: BinaryIO) -> list[bytes]:
    """The lines of a multi-line answer, up to the terminating dot (no stuffed lines here)."""
    lines = []
    while (line := f.readline()) not in (b".\r\n", b""):
        lines.append(line)
    return lines


def session(sock: socket.socket | ssl.SSLSocket) -> None:
    """Log in as alice, retrieve message 1, QUIT; every answer checked."""
    with sock.makefile("rb") as f:
        assert f.readline().startswith(b"+OK")
        sock.sendall(b"CAPA\r\n")
        assert f.readline().startswith(b"+OK")
        assert b"USER\r\n" in multiline(f)
        for command in (b"USER alice", b"PASS secret"):
            sock.sendall(command + b"\r\n")
            assert f.readline().startswith(b"+OK")
        sock.sendall(b"RETR 1\r\n")
        assert f.readline().startswith(b"+OK")
        assert b"".join(multiline(f)) == crlf(MESSAGE)
        sock.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"+OK")


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
@pytest.mark.parametrize("name", NAMES)
def test_through_haproxy(
    name: str, send_proxy: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend([MESSAGE])
    with (
        serving(name, backend, proxy_protocol=True, failed_login_delay=0) as port,
        haproxy(tmp_path, [port], send_proxy) as front,
    ):
        address = ("127.0.0.1", front)
        with socket.create_connection(address, TIMEOUT, source_address=(CLIENT, 0)) as sock:
            session(sock)
        line = wait_for_log(caplog, f"session ended: rip={CLIENT} ")
        assert log_fields(line)[1]["reason"] == "quit"
        assert log_fields(line)[1]["user"] == "<alice>"
        assert log_fields(line)[1]["proxy"].startswith("127.0.0.1:")
        # Health checks come in with a header too (LOCAL, or HAProxy's own addresses),
        # and are not taken for bad ones. HAProxy resets them at once, so the server may
        # not even learn the socket's peer: their lines say 127.0.0.1 or "?".
        wait_for(
            lambda: any(
                "ended" in record.getMessage() and CLIENT not in record.getMessage()
                for record in list(caplog.records)
            ),
            TIMEOUT,
            lambda: f"no health check seen:\n{caplog.text}",
        )
    assert "no valid PROXY header" not in caplog.text


@pytest.mark.parametrize("name", NAMES)
def test_implicit_tls_through_haproxy(
    name: str,
    tmp_path: Path,
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FakeBackend([MESSAGE])
    options = {"proxy_protocol": True, "ssl_context": server_ssl, "failed_login_delay": 0}
    with (
        serving(name, backend, **options) as port,
        # No health checks here: HAProxy ends them with a reset, which can come before
        # the server wraps the socket, and CPython's ssl then leaves the SSLSocket
        # unclosed (a ResourceWarning in the threaded server, an error under -W error).
        # For the same reason the fixture never connects to see whether HAProxy is up.
        haproxy(tmp_path, [port], "send-proxy-v2", checks=False) as front,
    ):
        address = ("127.0.0.1", front)
        with (
            socket.create_connection(address, TIMEOUT, source_address=(CLIENT, 0)) as raw,
            client_ssl.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            session(sock)
        line = wait_for_log(caplog, f"session ended: rip={CLIENT} ")
        fields = log_fields(line)[1]
        assert (fields["user"], fields["reason"]) == ("<alice>", "quit")
        assert fields["tls"].startswith("TLSv1.")
    assert "no valid PROXY header" not in caplog.text
