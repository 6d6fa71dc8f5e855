"""A client that never finishes the TLS handshake is dropped and logged as such, by every server.

Implicit TLS (RFC 8314) and STLS (RFC 2595) alike: the handshake has a timeout of its own
(60 s, or the autologout time or what is left of the login time when that is shorter), and
the session's log line says "TLS handshake timed out" rather than "autologout" or
"login-timeout", which are about idle sessions.
"""

from __future__ import annotations

import logging
import socket
import ssl

import pytest

from bindings import NAMES, serving
from helpers import FakeBackend, log_fields, wait_for


@pytest.mark.parametrize("limit", ["autologout", "login_timeout"])
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
@pytest.mark.parametrize("server", NAMES)
def test_a_stalled_tls_handshake_is_logged_as_such(
    server_ssl: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    server: str,
    tls: str,
    limit: str,
) -> None:
    backend = FakeBackend([b"Subject: x\n\nhello\n"])
    context = {"ssl_context" if tls == "implicit" else "starttls_context": server_ssl}
    caplog.set_level(logging.INFO, logger="pop3.server")
    with serving(server, backend, **{limit: 0.5}, **context) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if tls == "starttls":
                assert sock.recv(512).startswith(b"+OK")
                sock.sendall(b"STLS\r\n")
                assert sock.recv(512).startswith(b"+OK")
            # No ClientHello: the server gives up after the (short) timeout, well
            # before the socket's 5 s would raise. (Which limit applies when: the
            # driver's wait_timeout, tests/test_server_driver.py.)
            assert sock.recv(512) == b""
        wait_for(lambda: any(r.name == "pop3.server" for r in list(caplog.records)), 5)
    lines = [r.getMessage() for r in caplog.records if r.name == "pop3.server"]
    event, fields = log_fields(lines[0])
    assert (event, fields["rip"], fields["user"]) == ("session ended", "127.0.0.1", "<>"), lines
    assert (fields["tls"], fields["reason"]) == ("no", "TLS handshake timed out"), lines
