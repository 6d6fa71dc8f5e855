"""``pop3 serve --metrics``: Prometheus metrics counted from the servers' log records.

The handler alone, fed by a real server of each binding in process (its own registry, read
back with ``prometheus_client``'s own API); then ``pop3 serve --metrics`` scraped over HTTP
the way Prometheus does, with ``-q`` (the metrics must not depend on what the log shows).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import pop3_sync
from bindings import NAMES, serving
from helpers import FakeBackend, wait_for
from pop3_cli._metrics import MetricsHandler
from served import LISTENING, RawClient, deliver, env, pop3, write_users


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


@pytest.mark.parametrize("server", NAMES)
def test_the_handler_counts_logins_sessions_and_octets(server: str) -> None:
    registry = CollectorRegistry()
    handler = MetricsHandler(registry)
    logger = logging.getLogger("pop3.server")
    saved = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        backend = FakeBackend()
        with serving(server, backend, failed_login_delay=0) as port:
            with pop3_sync.connect("127.0.0.1", port, tls=None) as client:
                with pytest.raises(pop3_sync.AuthError):
                    client.login("alice", "wrong", mechanism="USER")
                client.login("alice", "secret", mechanism="PLAIN")
                first = client.retr(1)
                client.dele(2)
            with RawClient(port) as raw:
                assert raw.command(b"STAT").startswith(b"-ERR")  # not logged in
            wait_for(lambda: value(registry, "pop3_sessions_total", reason="client-closed") == 1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    assert value(registry, "pop3_logins_total", method="USER", result="failed") == 1
    assert value(registry, "pop3_logins_total", method="PLAIN", result="ok") == 1
    assert value(registry, "pop3_sessions_total", reason="quit") == 1
    assert value(registry, "pop3_retrieved_messages_total") == 1
    assert value(registry, "pop3_retrieved_octets_total") == len(first)
    assert value(registry, "pop3_deleted_messages_total") == 1
    assert value(registry, "pop3_session_duration_seconds_count") == 2
    assert value(registry, "pop3_sent_octets_total") > len(first)
    assert value(registry, "pop3_received_octets_total") >= len(b"USER alice\r\nSTAT\r\n")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wrong_login(port: int) -> bytes:
    with RawClient(port) as client:
        return client.login("alice", "nope")


def test_pop3_serve_metrics_are_scraped_over_http(tmp_path: Path) -> None:
    users = write_users(tmp_path / "users", {"alice": "right-pw"})
    deliver(tmp_path / "mail" / "alice", "m1", b"Subject: one\n\nhello\n")
    args = ("--users", str(users), "--maildir", str(tmp_path / "mail"), "-q")
    proc = subprocess.Popen(
        pop3("serve", "--port", "0", "--metrics", "127.0.0.1:0", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert first.startswith("metrics on http://127.0.0.1:"), first
        url = first.split()[-1]
        match = LISTENING.search(proc.stdout.readline())
        assert match is not None
        port = int(match.group(1))
        with ThreadPoolExecutor(2) as pool:
            wrong = [pool.submit(wrong_login, port) for _ in range(2)]
            with RawClient(port) as client:
                assert client.login("alice", "right-pw").startswith(b"+OK")
                assert client.retr(1) == b"Subject: one\r\n\r\nhello\r\n"
                assert client.command(b"DELE 1").startswith(b"+OK")
                assert client.command(b"QUIT").startswith(b"+OK")
            assert all(f.result().startswith(b"-ERR [AUTH]") for f in wrong)
        wait_for(lambda: scrape(url).get(("pop3_sessions_total", (("reason", "quit"),))) == 1)
        metrics = scrape(url)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert stderr == b""  # -q: the log shows nothing, the metrics count all the same
    assert metrics[("pop3_logins_total", (("method", "USER"), ("result", "failed")))] == 2
    assert metrics[("pop3_logins_total", (("method", "USER"), ("result", "ok")))] == 1
    assert metrics[("pop3_retrieved_messages_total", ())] == 1
    assert metrics[("pop3_retrieved_octets_total", ())] == len(b"Subject: one\r\n\r\nhello\r\n")
    assert metrics[("pop3_deleted_messages_total", ())] == 1
    assert not list((tmp_path / "mail" / "alice" / "cur").iterdir())  # the deletion was real


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pop3("serve", *args), capture_output=True, text=True, env=env(), timeout=30
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--metrics", "9110"), "expected HOST:PORT"),
        (("--metrics", "127.0.0.1:99999"), "expected HOST:PORT"),
        (("--metrics", "127.0.0.1:0", "--workers", "2"), "--metrics works with one worker"),
    ],
)
def test_bad_metrics_arguments_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = run_serve(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_serve("--port", "0", "--metrics", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"pop3 serve: cannot serve the metrics on 127.0.0.1:{port}: ")
    assert result.stderr.count("\n") == 1
