"""HAProxy in the foreground, in front of one or more of our servers (a helper, not tests).

``haproxy(tmp_path, ports, send_proxy)`` writes the configuration docs/deployment.md shows
(TCP mode, ``send-proxy`` or ``send-proxy-v2`` to every server, optional health checks that
send a PROXY header too, round robin over the servers), checks it with ``haproxy -c``, runs
``haproxy -db`` and yields the port it listens on (127.0.0.1). Its log is printed when the
block ends, which pytest shows for a failed test. A missing HAProxy skips the test (or fails
it with ``POP3_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from peers import free_port, require_peer

TIMEOUT = 10.0

CONFIG = """\
global
    maxconn {maxconn}

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend pop3
    bind 127.0.0.1:{front}
    default_backend pop3_servers

backend pop3_servers
    balance roundrobin
{servers}"""
SERVER = "    server pop3-{n} 127.0.0.1:{port} {send_proxy}{checks}\n"
CHECKS = " check check-send-proxy inter 200ms"


@contextlib.contextmanager
def haproxy(
    tmp_path: Path,
    ports: Sequence[int],
    send_proxy: str,
    *,
    checks: bool = True,
    maxconn: int = 100,
) -> Iterator[int]:
    """HAProxy in the foreground, in front of ``ports``; yields the port it listens on."""
    binary = require_peer("haproxy", "haproxy")
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    servers = "".join(
        SERVER.format(n=n, port=port, send_proxy=send_proxy, checks=CHECKS if checks else "")
        for n, port in enumerate(ports, 1)
    )
    text = CONFIG.format(front=front, servers=servers, maxconn=maxconn)
    config.write_text(text)
    subprocess.run([binary, "-c", "-f", str(config)], check=True, capture_output=True, timeout=30)
    log = tmp_path / "haproxy.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, log.read_text()
            # Listening yet? Binding tells without connecting (a connection would
            # reach the server as one more session).
            if _taken(front):
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield front
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(log.read_text())  # shown if the test fails


def _taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False
