"""Servers that keep accepting when the system runs out of descriptors or threads.

Each runs as ``pop3 serve`` in a subprocess under a real limit: a low
``RLIMIT_NOFILE`` (set before it starts), or for the threaded server a
``RLIMIT_NPROC`` that lets just one more session thread start. Root is exempt
from ``RLIMIT_NPROC``, so that server runs as ``nobody`` through util-linux's
``setpriv``, keeping only ``CAP_DAC_OVERRIDE`` to reach the interpreter and
the test's files.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bindings import NAMES
from helpers import crlf
from pop3_sansio import AcceptPause, refusal
from served import TIMEOUT, PopServer, RawClient, deliver, write_users

MESSAGE = b"From: carol@example.org\nSubject: for bob\n\nhello bob\n"
PASSWORD = "secret"


# --- the shared rules ----------------------------------------------------------------------


def test_accept_pause_doubles_up_to_its_longest_and_starts_over_after_an_accept() -> None:
    pause = AcceptPause(first=0.05, longest=0.3)
    assert [pause.failed() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    pause.accepted()
    assert pause.failed() == 0.05


@pytest.mark.parametrize(("first", "longest"), [(0, 1), (-1, 1), (2, 1)])
def test_accept_pause_refuses_pauses_that_are_not_positive_and_ordered(
    first: float, longest: float
) -> None:
    with pytest.raises(ValueError, match="0 < first <= longest"):
        AcceptPause(first, longest)


def test_refusal_is_a_sys_temp_greeting() -> None:
    assert refusal("no room") == b"-ERR [SYS/TEMP] no room\r\n"


# --- pop3 serve in a subprocess ---------------------------------------------------------------


@pytest.fixture
def maildrops(tmp_path: Path) -> tuple[Path, Path]:
    """(users file, Maildir root): bob has one message."""
    root = tmp_path / "maildirs"
    deliver(root / "bob", "1700000000.M0P1.test", MESSAGE)
    return write_users(tmp_path / "users", {"bob": PASSWORD}), root


def new_session(port: int) -> None:
    """Bob logs in, retrieves his message byte-exact and quits."""
    with RawClient(port) as client:
        assert client.greeting.startswith(b"+OK"), client.greeting
        assert client.login("bob", PASSWORD).startswith(b"+OK")
        assert client.retr(1) == crlf(MESSAGE)
        assert client.command(b"QUIT").startswith(b"+OK")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``TIMEOUT`` seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- out of descriptors ---------------------------------------------------------------------

NOFILE = 64
"""The server's RLIMIT_NOFILE: room for its own files and a few dozen connections."""
HELD = 100
"""Connections held open at once: more than the server has descriptors for."""
HOLD = 3.0
"""Seconds the server spends out of descriptors while it is measured."""


def few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.mark.parametrize("backend", NAMES)
def test_out_of_descriptors_costs_little_cpu_and_few_log_lines(
    backend: str, tmp_path: Path, maildrops: tuple[Path, Path]
) -> None:
    """More connections than descriptors: the server pauses accepting, not spins.

    For ``HOLD`` seconds with every descriptor taken and connections still
    queued, the server uses under a quarter of a core and logs under 50
    lines; a session logged in before answers NOOP throughout; once the
    connections close, a new session logs in.
    """
    users, root = maildrops
    # Every connection comes from 127.0.0.1: the per-address limit would turn them away first.
    limits = ("--max-sessions-per-address", "0")
    with PopServer(tmp_path, backend, users, root, *limits, preexec_fn=few_descriptors) as server:
        new_session(server.port)  # the imports of a first session are done
        existing = RawClient(server.port)
        held: list[socket.socket] = []
        try:
            assert existing.login("bob", PASSWORD).startswith(b"+OK")
            while len(held) < HELD:  # queued by the kernel even once accept() fails
                held.append(socket.create_connection(("127.0.0.1", server.port), TIMEOUT))
            wait_until(lambda: open_descriptors(server.pid) >= NOFILE, "descriptors run out")
            log_before = len(server.stderr.splitlines())
            cpu_before, start = cpu_seconds(server.pid), time.monotonic()
            slowest_noop = 0.0
            while time.monotonic() - start < HOLD:
                sent = time.monotonic()
                assert existing.command(b"NOOP").startswith(b"+OK")
                slowest_noop = max(slowest_noop, time.monotonic() - sent)
                time.sleep(0.05)
            cpu = cpu_seconds(server.pid) - cpu_before
            elapsed = time.monotonic() - start
            log_lines = len(server.stderr.splitlines()) - log_before
        finally:
            for sock in held:
                sock.close()
        assert existing.command(b"QUIT").startswith(b"+OK")
        existing.close()
        new_session(server.port)  # accepting again
    print(
        f"{backend}: out of descriptors for {elapsed:.1f} s: CPU {cpu / elapsed:.0%},"
        f" {log_lines} log lines, slowest NOOP {slowest_noop * 1000:.0f} ms"
    )
    assert cpu < 0.25 * elapsed, (cpu, elapsed)
    assert log_lines < 50, server.stderr[-3000:]


# --- out of threads (the threaded server) -------------------------------------------------

NOBODY = 65534


def tasks_of(uid: int) -> int:
    """Threads of every process whose real user is ``uid``: what RLIMIT_NPROC counts."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                count += int(uid_line.split()[1]) == uid
        except (FileNotFoundError, ProcessLookupError):
            pass  # it ended meanwhile
    return count


@pytest.fixture
def as_nobody() -> Iterator[list[str]]:
    """The command prefix that runs the server as ``nobody``, able to read root's files."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to run a server as nobody"
    yield [
        setpriv,
        *(f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
        *("--inh-caps=+dac_override", "--ambient-caps=+dac_override"),
    ]


def test_sync_server_refuses_a_connection_no_thread_starts_for(
    tmp_path: Path, maildrops: tuple[Path, Path], as_nobody: list[str]
) -> None:
    """``thread.start()`` fails (RLIMIT_NPROC): -ERR [SYS/TEMP] to that client, one log line.

    The limit lets the server start exactly one thread besides its main and
    accept threads: the first session gets it, the next two connections are
    refused, and once the first session ends the next one is served.
    """
    users, root = maildrops
    limit = tasks_of(NOBODY) + 3

    def few_threads() -> None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))

    with PopServer(
        tmp_path, "sync", users, root, prefix=as_nobody, preexec_fn=few_threads
    ) as server:
        assert server.threads() == 2  # main and accept: one more thread can start
        with RawClient(server.port) as first:
            assert first.login("bob", PASSWORD).startswith(b"+OK")
            for _ in range(2):
                with RawClient(server.port) as refused:
                    assert refused.greeting == b"-ERR [SYS/TEMP] cannot start a session now\r\n"
                    assert refused.line() == b""  # closed
            assert first.retr(1) == crlf(MESSAGE)  # the session that has a thread goes on
            assert first.command(b"QUIT").startswith(b"+OK")
        wait_until(lambda: server.threads() == 2, "the first session's thread ends")
        new_session(server.port)
        # The accept thread logs the recovery after thread.start() returns: under load the
        # session it started can be over before that line is written.
        wait_until(
            lambda: "session threads start again" in server.stderr, "the recovery's log line"
        )
        log = server.stderr
    assert log.count("cannot start a session thread") == 1, log
    assert "session threads start again (2 connections refused)" in log, log
