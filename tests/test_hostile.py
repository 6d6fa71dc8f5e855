"""Hostile clients against every binding's server.

Each attack must end in a clear ``-ERR`` or a closed connection, the server's
memory must stay bounded, and all the while a normal session on another
connection logs in and retrieves its mail.

Attacks that need the server's memory measured (an endless line, a flood of
pipelined commands, thousands of idle connections) run against ``pop3 serve``
in a subprocess, whose VmRSS is read from ``/proc``; the others run against
the binding's server in this process (``bindings.serving``), where options
the command line does not offer (``autologout``, ``failed_login_delay``) can
be set.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bindings import NAMES, serving
from helpers import crlf, log_fields, server_lines, wait_for, wait_for_log
from pop3_maildrop import Backend, MemoryStorage, UserDB
from served import TIMEOUT, PopServer, RawClient, deliver, write_users

ALICE_MESSAGE = b"Subject: for alice\n\nhi\n"
BOB_MESSAGE = b"From: carol@example.org\nSubject: for bob\n\n.dot line\nhello bob\n"
PASSWORD = "secret"


# --- the normal session that must keep working ----------------------------------------------


def normal_session(port: int) -> None:
    """Bob logs in, retrieves his message byte-exact, and quits (nothing deleted)."""
    with RawClient(port) as client:
        assert client.greeting.startswith(b"+OK"), client.greeting
        assert client.login("bob", PASSWORD).startswith(b"+OK")
        assert client.retr(1) == crlf(BOB_MESSAGE)
        assert client.command(b"QUIT").startswith(b"+OK")


def wait_closed(client: RawClient, timeout: float = TIMEOUT) -> bytes:
    """Read until the server closes the connection; what came meanwhile.

    Fails (``TimeoutError``) if it stays open for ``timeout`` seconds. A reset
    counts as closed: a server that closes with unread input resets.
    """
    client.sock.settimeout(timeout)
    out = client.buffer
    client.buffer = b""
    with contextlib.suppress(ConnectionResetError):
        while data := client.sock.recv(65536):
            out += data
    return out


# --- in this process: options the command line does not set -----------------------------------


def in_process_backend() -> Backend:
    storage = MemoryStorage()
    storage.add("alice", ALICE_MESSAGE)
    storage.add("bob", BOB_MESSAGE)
    return Backend(UserDB.from_pairs({"alice": PASSWORD, "bob": PASSWORD}), storage)


@pytest.fixture(params=NAMES)
def binding(request: pytest.FixtureRequest) -> str:
    return str(request.param)


AUTOLOGOUT = 1.0
FAILED_LOGIN_DELAY = 0.3


@pytest.fixture
def port(binding: str) -> Iterator[int]:
    options = {
        "autologout": AUTOLOGOUT,
        "failed_login_delay": FAILED_LOGIN_DELAY,
        "max_failed_logins": 3,
    }
    with serving(binding, in_process_backend(), **options) as port:
        yield port


def test_a_client_that_stops_reading_is_logged_out_and_frees_the_maildrop(binding: str) -> None:
    # Writes wait for the client under the autologout timer too (RFC 1939
    # section 3): a client that asks for a big message and never reads it
    # must not hold the maildrop lock for ever.
    storage = MemoryStorage()
    storage.add("alice", b"Subject: big\n\n" + b"x" * 70 * 250_000)  # 17.5 MB, past the buffers
    backend = Backend(UserDB.from_pairs({"alice": PASSWORD}), storage)
    # Three autologouts' time: the first retry must come while the lock is still held,
    # even on a loaded machine where the server is busy writing the message.
    autologout = 3 * AUTOLOGOUT
    with serving(binding, backend, autologout=autologout, failed_login_delay=0) as port:
        with RawClient(port) as stalled:
            assert stalled.login("alice", PASSWORD).startswith(b"+OK")
            stalled.send(b"RETR 1\r\n")  # and never read
            started = time.monotonic()
            answers = []
            while True:
                with RawClient(port) as again:
                    answer = again.login("alice", PASSWORD)
                    answers.append(answer)
                    if answer.startswith(b"+OK"):
                        assert again.command(b"STAT").startswith(b"+OK 1 ")  # nothing deleted
                        break
                assert b"[IN-USE]" in answer
                assert time.monotonic() - started < autologout + TIMEOUT  # bounds a hang
                time.sleep(0.2)
    # Held while the client stalled (the first try comes at once, well within the
    # autologout), then released: the driver tests time it on a fake clock.
    assert len(answers) > 1 and b"[IN-USE]" in answers[0]


def test_slow_drip_is_ended_by_the_autologout_timer(
    port: int, server_log: pytest.LogCaptureFixture
) -> None:
    """A byte every 250 ms, never a whole command: logged out by the autologout timer.

    RFC 1939 section 3: a command resets the autologout timer, a byte does
    not. A timer restarted by every received byte would keep this session
    (and its memory, its task or thread) until the line grew past 255 octets,
    a minute later: here it would outlive the drip and ``wait_closed`` would
    time out. When the timer runs out is the driver's rule, tested on a fake
    clock in tests/test_server_driver.py.
    """
    with RawClient(port) as attacker:
        assert attacker.login("alice", PASSWORD).startswith(b"+OK")
        closed = False
        for n in range(int(4 * AUTOLOGOUT / 0.25)):
            try:
                attacker.send(b"N")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if n == 1:
                normal_session(port)  # alice's drip does not hold the server up
            time.sleep(0.25)
        if not closed:
            assert wait_closed(attacker, 0.5) == b""  # closed without a word (RFC 1939 §3)
    line = wait_for_log(server_log, " user=<alice> failed=")  # alice's session's end
    assert line.startswith("session ended: ")
    assert line.endswith(" reason=autologout")
    normal_session(port)


def test_slow_commands_keep_the_session(port: int) -> None:
    """The other side of the rule: a whole command now and then resets the timer."""
    with RawClient(port) as client:
        assert client.login("alice", PASSWORD).startswith(b"+OK")
        for _ in range(3):  # 1.8 autologouts in all, never one without a command
            time.sleep(0.6 * AUTOLOGOUT)
            assert client.command(b"NOOP") == b"+OK\r\n"
        assert client.command(b"QUIT").startswith(b"+OK")


LOGIN_TIMEOUT = 0.5


def test_a_client_that_does_not_log_in_is_dropped_after_the_login_timeout(
    binding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before login a client has ``login_timeout`` seconds, not the 10-minute autologout.

    A session that logged in first, with the same options, outlives the one
    that did not: it still answers NOOP once that one has been dropped.
    """
    caplog.set_level(logging.INFO, logger="pop3.server")
    with serving(binding, in_process_backend(), login_timeout=LOGIN_TIMEOUT) as port:
        with RawClient(port) as user:
            assert user.login("alice", PASSWORD).startswith(b"+OK")
            with RawClient(port) as idle:
                assert idle.greeting.startswith(b"+OK")
                assert idle.command(b"USER bob").startswith(b"+OK")  # but never PASS
                # Closed without a word (RFC 1939 section 3), within the test's timeout.
                assert wait_closed(idle) == b""
            assert user.command(b"NOOP") == b"+OK\r\n"
            assert user.command(b"QUIT").startswith(b"+OK")

        wait_for(lambda: len(server_lines(caplog)) >= 3, TIMEOUT, lambda: caplog.text)
    logged = [log_fields(line) for line in server_lines(caplog)]
    assert [(event, fields["user"]) for event, fields in logged] == [
        ("login", "<alice>"),
        ("session ended", "<>"),
        ("session ended", "<alice>"),
    ]
    assert [fields["reason"] for _, fields in logged[1:]] == ["login-timeout", "quit"]


def test_a_session_the_server_drops_as_it_stops_is_logged_as_a_shutdown(
    binding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every binding says "server shutdown".

    asyncio used to say "error" here, the threaded server "client-closed".
    """
    caplog.set_level(logging.INFO, logger="pop3.server")
    with contextlib.ExitStack() as open_after_the_server_stops:
        with serving(binding, in_process_backend()) as port:
            user = open_after_the_server_stops.enter_context(RawClient(port))
            assert user.login("alice", PASSWORD).startswith(b"+OK")
    logged = [log_fields(line) for line in server_lines(caplog)]
    assert [(event, fields["user"]) for event, fields in logged] == [
        ("login", "<alice>"),
        ("session ended", "<alice>"),
    ]
    assert logged[1][1]["reason"] == "server shutdown"


def test_commands_do_not_extend_the_login_time(binding: str) -> None:
    """A client that sends a command every 100 ms but never logs in is dropped all the same.

    Were the login time an idle timer, restarted by each command as the
    autologout timer is, such a client would hold its session for ever.
    """
    with serving(binding, in_process_backend(), login_timeout=LOGIN_TIMEOUT) as port:
        with RawClient(port) as client:
            started = time.monotonic()
            while True:
                try:
                    client.send(b"CAPA\r\n")
                    answer = client.line()
                except (BrokenPipeError, ConnectionResetError):
                    break
                if answer == b"":  # closed
                    break
                assert answer.startswith(b"+OK"), answer
                client.multiline()
                assert time.monotonic() - started < TIMEOUT, "commands kept the session"
                time.sleep(0.1)
        normal_session(port)


def test_password_guessing_is_slowed_down_and_cut_off(port: int) -> None:
    """Each wrong password is answered only after ``failed_login_delay``; the third closes."""
    with RawClient(port) as guesser:
        for attempt in range(3):
            assert guesser.command(b"USER alice").startswith(b"+OK")
            guesser.send(b"PASS guess-%d\r\n" % attempt)
            sent = time.monotonic()
            answer = guesser.line()
            waited = time.monotonic() - sent
            assert answer.startswith(b"-ERR [AUTH]"), answer
            assert waited >= FAILED_LOGIN_DELAY - 0.01, waited  # a lower bound only
            if attempt == 0:
                normal_session(port)  # the delay holds up the guesser, nobody else
        assert wait_closed(guesser) == b""


def test_oversized_sasl_response_is_refused_and_closed(port: int) -> None:
    with RawClient(port) as client:
        assert client.command(b"AUTH PLAIN") == b"+ \r\n"
        # 48 KiB of valid base64: over the 32 KiB limit of one SASL line.
        client.send(base64.b64encode(b"\0alice\0" + b"x" * 36_000) + b"\r\n")
        answer = wait_closed(client)
        assert answer.startswith(b"-ERR") and answer.endswith(b"\r\n"), answer[:200]
        assert answer.count(b"\r\n") == 1 and b"xxxx" not in answer
        normal_session(port)


@pytest.mark.parametrize(
    "lines",
    [
        [b"AUTH PLAIN", b"!!not*base64!!"],  # the response to the challenge
        [b"AUTH PLAIN AGFsaWNlAHNlY3JldA"],  # an initial response without its padding
        [b"AUTH PLAIN ===="],  # padding only
    ],
)
def test_invalid_base64_fails_the_exchange(port: int, lines: list[bytes]) -> None:
    """RFC 5034 section 4: an undecodable response fails the exchange with -ERR."""
    with RawClient(port) as client:
        for line in lines[:-1]:
            assert client.command(line) == b"+ \r\n"
        answer = client.command(lines[-1])
        assert answer.startswith(b"-ERR"), answer
        # The session goes on: a correct login still works on this connection.
        assert client.login("alice", PASSWORD).startswith(b"+OK")
        normal_session(port)


@pytest.mark.parametrize(
    "line",
    [b"\0", b"NOOP\0", b"USER al\0ice", b"\0\0\0\0 \0\0", b"CAPA\0\r"],
)
def test_nul_bytes_in_commands_are_refused(port: int, line: bytes) -> None:
    with RawClient(port) as client:
        answer = client.command(line)
        assert answer.startswith(b"-ERR"), answer
        assert b"\0" not in answer
        assert client.login("alice", PASSWORD).startswith(b"+OK")
        assert client.command(b"USER\0 x").startswith(b"-ERR")
        assert client.command(b"STAT") == b"+OK 1 %d\r\n" % len(crlf(ALICE_MESSAGE))
        normal_session(port)


# --- against pop3 serve, measuring its memory -------------------------------------------------


BIG_DROP = 1000
"""Messages in alice's maildrop: its LIST answer is about 9 KiB."""


def big_drop_message(n: int) -> bytes:
    return b"Subject: %d\n\nhi\n" % n


@pytest.fixture(params=NAMES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PopServer]:
    """``pop3 serve --backend NAME``: alice has a big maildrop, bob one message."""
    root = tmp_path / "maildirs"
    for n in range(BIG_DROP):
        deliver(root / "alice", f"{1_700_000_000 + n}.M{n}P1.test", big_drop_message(n))
    deliver(root / "bob", "1700000000.M0P1.test", BOB_MESSAGE)
    users = write_users(tmp_path / "users", {"alice": PASSWORD, "bob": PASSWORD})
    # 2001 sessions from 127.0.0.1, the first ones idle for as long as the
    # others take to connect: no limit per address, and the old pre-login time.
    limits = ("--max-sessions", "2001", "--max-sessions-per-address", "0")
    limits += ("--login-timeout", "600")
    with PopServer(tmp_path, str(request.param), users, root, *limits) as srv:
        normal_session(srv.port)  # warm: the imports of a first session are not counted
        yield srv


def settle_rss(server: PopServer) -> int:
    """VmRSS once freed memory had a moment to go (the largest of a few readings)."""
    time.sleep(0.2)
    return max(server.rss_kib() for _ in range(3))


ENDLESS = 20 << 20


def test_endless_line_is_refused_and_memory_stays_bounded(server: PopServer) -> None:
    """20 MiB without a line end: -ERR (line too long) and the connection closed.

    Bound: the server reads at most one receive buffer past the 255-octet
    command limit before it answers and closes; 8 MiB of RSS growth leaves
    room for allocator noise while being far below the 20 MiB sent.
    """
    before = settle_rss(server)
    with RawClient(server.port) as attacker:
        assert attacker.login("alice", PASSWORD).startswith(b"+OK")
        chunk = b"A" * (1 << 16)
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < ENDLESS:
                attacker.send(chunk)
                sent += len(chunk)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            answer = wait_closed(attacker)
        # The -ERR may be lost to the reset a close with unread input causes.
        assert answer == b"" or answer.startswith(b"-ERR"), answer[:200]
        assert b"AAAA" not in answer
        assert sent < ENDLESS, "the server read 20 MiB of one line"
    normal_session(server.port)
    grown = settle_rss(server) - before
    print(f"{server.backend}: endless line: {sent} octets sent, RSS +{grown} KiB")
    assert grown < 8 * 1024, grown


def test_pipelined_flood_without_reading_is_held_back(server: PopServer) -> None:
    """LIST again and again, never reading: the server stops answering, not buffering.

    Without backpressure every 64 KiB of "LIST\\r\\n" queues about 10,000
    answers of 9 KiB -- some 100 MiB -- before the first one is written. With
    it, the server holds at most a receive buffer of commands and 64 KiB of
    answers besides what the kernel buffers; 16 MiB of growth is the bound.
    """
    sizes = [len(crlf(big_drop_message(n))) for n in range(BIG_DROP)]
    total = sum(sizes)
    listing = b"".join(b"%d %d\r\n" % (n, size) for n, size in enumerate(sizes, 1))
    before = settle_rss(server)
    with RawClient(server.port) as attacker:
        assert attacker.login("alice", PASSWORD).startswith(b"+OK")
        attacker.sock.setblocking(False)
        flood = b"LIST\r\n" * 10_000
        sent = 0
        stalled_since = time.monotonic()
        while time.monotonic() - stalled_since < 1.0:  # until a second without progress
            with contextlib.suppress(BlockingIOError):
                sent += attacker.sock.send(flood)
                stalled_since = time.monotonic()
            time.sleep(0.002)
        during = settle_rss(server)
        normal_session(server.port)  # the server is not busy answering the flood
        attacker.sock.settimeout(TIMEOUT)
        # The answers queued meanwhile are whole and right.
        for _ in range(3):
            status = attacker.line()
            assert status == b"+OK %d messages (%d octets)\r\n" % (BIG_DROP, total)
            assert attacker.multiline() == listing
    grown = during - before
    print(f"{server.backend}: pipelined flood: {sent} octets sent, RSS +{grown} KiB")
    assert sent > 1 << 20  # the flood did go out (into kernel buffers at least)
    assert grown < 16 * 1024, grown


IDLE = 2000


def test_thousands_of_idle_connections(server: PopServer) -> None:
    """2000 idle sessions fit (``--max-sessions 2001``), the next is refused and closed.

    Also measures the memory an idle session costs (RSS growth / 2000); the
    target is under 50 KiB each.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE + 200:  # the server subprocess already has its own copy of the limit
        assert hard >= IDLE + 200, f"RLIMIT_NOFILE hard limit {hard} is too low"
        resource.setrlimit(resource.RLIMIT_NOFILE, (IDLE + 200, hard))
    before = settle_rss(server)
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE):
            # One at a time, as clients that come and stay: a burst of 2000
            # connects would overflow the listen backlog instead.
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            idle.append(sock)
            assert sock.recv(512).startswith(b"+OK POP3 server ready"), "not greeted"
        during = settle_rss(server)
        with RawClient(server.port) as normal:  # session 2001: the last one allowed
            assert normal.login("bob", PASSWORD).startswith(b"+OK")
            with RawClient(server.port) as beyond:  # 2002: one too many
                assert beyond.greeting.startswith(b"-ERR [SYS/TEMP]"), beyond.greeting
                assert wait_closed(beyond) == b""
            assert normal.retr(1) == crlf(BOB_MESSAGE)
            assert normal.command(b"QUIT").startswith(b"+OK")
    finally:
        for sock in idle:
            sock.close()
    per_session = (during - before) * 1024 / IDLE
    print(f"{server.backend}: {IDLE} idle sessions: {per_session / 1024:.1f} KiB each")
    assert per_session < 50 * 1024, per_session
