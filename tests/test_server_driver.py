"""SessionDriver: a ServerSession answered from a backend, as I/O instructions."""

from __future__ import annotations

import base64
import concurrent.futures
import threading
from typing import Any

import pytest

import pop3_sansio as p
from helpers import FakeBackend

MESSAGES = [b"Subject: a\n\nhello\n", b"Subject: b\n\n" + b"line\n" * 50]


def driver_backend(**knobs: Any) -> FakeBackend:
    """This module's backend: ``MESSAGES``, each read starting with two empty chunks (a
    storage may produce them; nothing is written for them)."""
    return FakeBackend(**{"messages": list(MESSAGES), "empty_chunks": 2, **knobs})


def run(driver: p.SessionDriver, client_lines: list[bytes]) -> tuple[bytes, list[object]]:
    """Play the binding: feed ``client_lines`` one per READ, collect what is written."""
    out: list[bytes] = []
    seen: list[object] = []
    gen = driver.run()
    value: Any = None
    error: BaseException | None = None
    lines = iter(client_lines)
    while True:
        try:
            instruction = gen.send(value) if error is None else gen.throw(error)
        except StopIteration:
            return b"".join(out), seen
        value = error = None
        seen.append(instruction)
        if isinstance(instruction, p.Write):
            out.append(instruction.data)
        elif instruction is p.READ:
            value = next(lines, b"")
        elif isinstance(instruction, p.Call):
            try:
                value = instruction.function(*instruction.args)
            except Exception as exc:
                error = exc
        elif isinstance(instruction, p.StartTls):
            pass
        else:
            assert isinstance(instruction, p.Sleep)


def driver_for(backend: FakeBackend, **options: Any) -> p.SessionDriver:
    session = p.ServerSession(allow_plaintext=True, **options)
    return p.SessionDriver(session, backend, failed_login_delay=1.5)


def test_a_whole_session() -> None:
    backend = driver_backend()
    driver = driver_for(backend)
    out, _ = run(
        driver,
        [
            b"USER alice\r\n",
            b"PASS secret\r\n",
            b"RETR 1\r\n",
            b"TOP 2 1\r\n",
            b"DELE 1\r\nQUIT\r\n",
        ],
    )
    total = sum(map(p.message_size, MESSAGES))
    assert out == (
        b"+OK POP3 server ready\r\n+OK send PASS\r\n"
        + b"+OK maildrop has 2 messages (%d octets)\r\n" % total
        + b"+OK 21 octets\r\nSubject: a\r\n\r\nhello\r\n.\r\n"
        b"+OK top of message follows\r\nSubject: b\r\n\r\nline\r\n.\r\n"
        b"+OK message 1 deleted\r\n+OK POP3 server signing off (1 messages deleted)\r\n"
    )
    assert backend.committed == [(1,)]
    assert driver.close_reason == "quit"
    driver.release()
    driver.release()
    assert backend.closed == 1


def test_failed_login_is_delayed_before_the_answer() -> None:
    driver = driver_for(driver_backend())
    _, seen = run(driver, [b"USER alice\r\n", b"PASS nope\r\n"])
    i = seen.index(p.Sleep(1.5))
    assert seen[i + 1] == p.Write(b"-ERR [AUTH] authentication failed\r\n")
    assert driver.close_reason == "client-closed"


def test_answers_held_back_before_a_failed_login_are_not_delayed_with_it() -> None:
    # With a tiny max_output the session pauses after each CAPA answer; the
    # driver holds those answers, and writes them before the failed-login delay.
    driver = driver_for(driver_backend(), mechanisms=["PLAIN"], max_output=10)
    malformed = base64.b64encode(b"no separators").decode()
    _, seen = run(driver, [f"CAPA\r\nCAPA\r\nAUTH PLAIN {malformed}\r\n".encode()])
    i = seen.index(p.Sleep(1.5))
    before, after = seen[i - 1], seen[i + 1]
    assert isinstance(before, p.Write) and before.data.startswith(b"+OK")  # CAPA lists
    assert isinstance(after, p.Write) and after.data == b"-ERR [AUTH] authentication failed\r\n"


def test_apop_and_token_paths() -> None:
    backend = driver_backend()
    driver = driver_for(backend, apop_timestamp="<1@x>", mechanisms=["XOAUTH2"])
    digest = p.apop_digest("<1@x>", "secret")
    out, _ = run(driver, [f"APOP alice {digest}\r\n".encode()])
    assert b"+OK maildrop has 2" in out
    driver = driver_for(driver_backend(), mechanisms=["XOAUTH2"])
    token = p.b64encode(b"user=alice\x01auth=Bearer tok-1\x01\x01").decode()
    out, _ = run(driver, [f"AUTH XOAUTH2 {token}\r\n".encode()])
    assert b"+OK maildrop has 2" in out


@pytest.mark.parametrize(
    ("backend", "answer"),
    [
        (driver_backend(locked=True), b"-ERR [IN-USE]"),
        (driver_backend(open_fails=True), b"-ERR [SYS/TEMP] unable to open maildrop"),
    ],
)
def test_open_failures(backend: FakeBackend, answer: bytes) -> None:
    out, _ = run(driver_for(backend), [b"USER alice\r\n", b"PASS secret\r\n"])
    assert answer in out


def test_read_failure_and_commit_failure() -> None:
    backend = driver_backend(read_fails_after=0, commit_raises=True)
    out, _ = run(
        driver_for(backend),
        [b"USER alice\r\n", b"PASS secret\r\n", b"RETR 1\r\n", b"DELE 2\r\nQUIT\r\n"],
    )
    assert b"-ERR [SYS/TEMP] message could not be read\r\n" in out
    assert out.endswith(b"-ERR [SYS/TEMP] some deleted messages not removed: 2\r\n")


def test_stls_is_handed_to_the_binding() -> None:
    driver = driver_for(driver_backend(), starttls=True)
    out, seen = run(driver, [b"STLS\r\n", b"CAPA\r\n"])
    tls = seen.index(p.StartTls())
    before = seen[tls - 1]  # the +OK is written before the handshake starts
    assert isinstance(before, p.Write) and before.data.endswith(b"begin TLS negotiation\r\n")
    assert b"STLS" not in out.split(b"begin TLS negotiation\r\n")[1]


def test_top_stops_reading_when_it_has_enough() -> None:
    backend = driver_backend()
    driver = p.SessionDriver(
        p.ServerSession(allow_plaintext=True), backend, failed_login_delay=0, chunk_size=16
    )
    _, seen = run(driver, [b"USER alice\r\n", b"PASS secret\r\n", b"TOP 2 0\r\n"])
    reads = [s for s in seen if isinstance(s, p.Call) and s.function.__name__ == "_next_chunk"]
    # Opening read b"" twice; then "Subject: b\n\nlin" (which already holds
    # the blank line) and the chunk after it, and no more.
    assert len(reads) == 2


@pytest.mark.parametrize("last", [b"QUIT\r\n", b"DELE 1\r\nQUIT\r\n"])
def test_the_maildrop_is_released_before_the_answer_to_quit(last: bytes) -> None:
    backend = driver_backend()
    driver = driver_for(backend)
    steps = driver.run()
    instruction = next(steps)
    for line in (b"USER alice\r\n", b"PASS secret\r\n", last):
        while instruction is not p.READ:
            value = (
                instruction.function(*instruction.args) if isinstance(instruction, p.Call) else None
            )
            instruction = steps.send(value)
        instruction = steps.send(line)
    writes: list[tuple[bytes, int]] = []  # what was written, and whether released by then
    with pytest.raises(StopIteration):
        while True:
            value = None
            if isinstance(instruction, p.Call):
                value = instruction.function(*instruction.args)
            elif isinstance(instruction, p.Write):
                writes.append((instruction.data, backend.closed))
            instruction = steps.send(value)
    assert writes[-1][0].startswith(b"+OK") and writes[-1][1] == 1  # released, then +OK
    assert all(closed == 0 for _, closed in writes[:-1])
    driver.release()
    assert backend.closed == 1  # release() stays idempotent


def test_a_small_message_is_opened_read_and_ended_in_one_call() -> None:
    backend = driver_backend(empty_chunks=0)
    driver = driver_for(backend)
    out, seen = run(driver, [b"USER alice\r\n", b"PASS secret\r\n", b"RETR 1\r\n", b"RETR 2\r\n"])
    calls = [s.function.__name__ for s in seen if isinstance(s, p.Call)]
    assert calls.count("_open_message") == 2
    assert all(
        s.quick == (s.function.__name__ == "_open_message") for s in seen if isinstance(s, p.Call)
    )
    assert "_next_chunk" not in calls
    assert out.count(b"\r\n.\r\n") == 2
    assert b"\r\n".join(MESSAGES[1].split(b"\n")) in out


def test_no_delay_when_configured_off() -> None:
    driver = p.SessionDriver(
        p.ServerSession(allow_plaintext=True), driver_backend(), failed_login_delay=0
    )
    _, seen = run(driver, [b"USER alice\r\n", b"PASS nope\r\n"])
    assert not any(isinstance(s, p.Sleep) for s in seen)


def test_storage_os_errors_are_temporary_failures() -> None:
    backend = driver_backend(read_fails_after=0, commit_raises=True, error=PermissionError)
    out, _ = run(
        driver_for(backend),
        [b"USER alice\r\n", b"PASS secret\r\n", b"RETR 1\r\n", b"DELE 1\r\nQUIT\r\n"],
    )
    assert b"-ERR [SYS/TEMP] message could not be read\r\n" in out
    assert out.endswith(b"-ERR [SYS/TEMP] some deleted messages not removed: 1\r\n")

    unopenable = driver_backend(open_fails=True, error=PermissionError)
    out, _ = run(driver_for(unopenable), [b"USER alice\r\n", b"PASS secret\r\n"])
    assert out.endswith(b"-ERR [SYS/TEMP] unable to open maildrop\r\n")


def test_a_maildrop_opened_after_the_binding_gave_up_is_still_released() -> None:
    backend = driver_backend()
    driver = driver_for(backend)
    maildrop = backend.open("alice")
    driver.abandoned(p.Call(backend.open, ("alice",)), maildrop)
    driver.abandoned(p.Call(backend.check_password, ("alice", "secret")), True)  # ignored
    assert driver.maildrop is maildrop
    driver.release()
    assert backend.closed == 1


def test_read_timeout_is_reset_by_a_command_not_by_a_byte() -> None:
    """RFC 1939 section 3: the autologout timer restarts when a command comes in."""
    driver = p.SessionDriver(
        p.ServerSession(allow_plaintext=True), driver_backend(), autologout=10.0
    )
    assert isinstance(driver.step(), p.Write)  # the greeting
    assert driver.step() is p.READ
    assert driver.read_timeout(100.0) == 10.0  # the timer starts with the first READ
    assert driver.step(b"CA") is p.READ  # half a command: the same deadline
    assert driver.read_timeout(104.0) == 6.0
    assert driver.step(b"P") is p.READ
    assert driver.read_timeout(111.0) == 0.0  # time is up (never negative)
    assert isinstance(driver.step(b"A\r\n"), p.Write)  # a command, answered
    assert driver.step() is p.READ
    assert driver.read_timeout(111.5) == 10.0  # a new deadline


def _until_read(driver: p.SessionDriver, value: Any) -> None:
    """Step past what ``value`` (bytes read) leads to, carrying out calls, up to the next READ."""
    instruction = driver.step(value)
    while instruction is not p.READ:
        result = None
        if isinstance(instruction, p.Call):
            result = instruction.function(*instruction.args)
        instruction = driver.step(result)


def test_a_client_has_login_timeout_seconds_in_all_to_log_in() -> None:
    """Before login every wait ends at the login deadline, which commands do not move."""
    driver = p.SessionDriver(
        p.ServerSession(allow_plaintext=True),
        driver_backend(),
        failed_login_delay=0,
        login_timeout=60.0,
    )
    assert isinstance(driver.step(), p.Write)  # the greeting
    assert driver.wait_timeout(1000.0) == 60.0  # the login time starts with the first wait
    assert driver.step() is p.READ
    assert driver.read_timeout(1010.0) == 50.0  # not the 600 s autologout
    _until_read(driver, b"CAPA\r\n")  # a command: a new autologout timer, not more login time
    assert driver.read_timeout(1030.0) == 30.0
    assert driver.wait_timeout(1050.0) == 10.0  # a write (or a TLS handshake) too
    assert driver.read_timeout(1061.0) == 0.0  # time is up (never negative)
    assert driver.timed_out() == "login-timeout"
    assert driver.close_reason == "login-timeout"


def test_once_logged_in_only_the_autologout_applies() -> None:
    driver = p.SessionDriver(
        p.ServerSession(allow_plaintext=True),
        driver_backend(),
        failed_login_delay=0,
        login_timeout=60.0,
    )
    assert isinstance(driver.step(), p.Write)
    assert driver.step() is p.READ
    assert driver.read_timeout(0.0) == 60.0
    _until_read(driver, b"USER alice\r\n")  # still AUTHORIZATION
    assert driver.read_timeout(50.0) == 10.0
    _until_read(driver, b"PASS secret\r\n")  # TRANSACTION
    assert driver.session.state is p.State.TRANSACTION
    assert driver.read_timeout(59.0) == 600.0  # RFC 1939 section 3, whatever the login time
    assert driver.wait_timeout(100.0) == 600.0
    assert driver.read_timeout(700.0) == 0.0
    assert driver.timed_out() == "autologout"


def test_an_autologout_shorter_than_the_login_timeout_applies_before_login_too() -> None:
    driver = p.SessionDriver(
        p.ServerSession(), driver_backend(), autologout=10.0, login_timeout=60.0
    )
    assert isinstance(driver.step(), p.Write)
    assert driver.step() is p.READ
    assert driver.read_timeout(100.0) == 10.0
    assert driver.read_timeout(111.0) == 0.0
    assert driver.timed_out() == "autologout"  # the idle limit ran out, not the login time
    assert driver.wait_timeout(155.0) == 5.0  # the login time, when it is shorter
    assert driver.timed_out() == "login-timeout"


def _logged_in_at(now: float) -> p.SessionDriver:
    """A driver (autologout 10 s) whose client logged in, answered at ``now``."""
    driver = p.SessionDriver(
        p.ServerSession(allow_plaintext=True),
        driver_backend(),
        failed_login_delay=0,
        autologout=10.0,
    )
    assert isinstance(driver.step(), p.Write)
    assert driver.step() is p.READ
    assert driver.read_timeout(now) == 10.0
    _until_read(driver, b"USER alice\r\nPASS secret\r\n")
    assert driver.session.state is p.State.TRANSACTION
    return driver


def test_after_login_a_byte_at_a_time_is_logged_out() -> None:
    """RFC 1939 section 3: a byte now and then (a slow drip) does not move the deadline.

    The end-to-end side is tests/test_hostile.py's slow drip, against each binding.
    """
    driver = _logged_in_at(0.0)
    assert driver.read_timeout(2.0) == 10.0  # the timer starts with the READ after login
    for now in (4.0, 6.0, 8.0, 10.0):  # "NOOP", two seconds a byte
        _until_read(driver, b"N")
        assert driver.read_timeout(now) == 12.0 - now
    assert driver.read_timeout(12.5) == 0.0
    assert driver.timed_out() == "autologout"
    assert driver.close_reason == "autologout"


def test_after_login_a_command_now_and_then_keeps_the_session() -> None:
    """The other side of the rule: each whole command restarts the timer, however long
    the session has lasted (tests/test_hostile.py's slow commands, end to end)."""
    driver = _logged_in_at(0.0)
    assert driver.read_timeout(1.0) == 10.0
    for now in (10.0, 19.0, 28.0, 37.0):  # 9 s apart: never 10 s without a command
        assert driver.read_timeout(now) == 1.0  # 9 s since the last command (or login)
        _until_read(driver, b"NOOP\r\n")
        assert driver.read_timeout(now) == 10.0
    assert driver.close_reason is None


def test_server_options_give_the_driver_its_login_timeout() -> None:
    options = p.ServerOptions()
    assert (options.login_timeout, options.autologout) == (60.0, 600.0)
    driver = p.ServerOptions(login_timeout=5.0).start_session(
        driver_backend(),
        peer_is_loopback=True,
        sessions=1,
        hostname="h",
        random_bytes=bytes,
        clock=0,
    )
    assert driver.login_timeout == 5.0


def test_pipelined_answers_are_written_in_bounded_pieces() -> None:
    """A client that pipelines without reading gets answers as the binding writes them.

    ``max_output`` bounds what the session queues (``next_request`` returns
    ``PAUSED``), ``chunk_size`` what the driver holds before it writes, so a
    binding blocked on a full socket stops answering (backpressure).
    """
    flood = b"USER alice\r\nPASS secret\r\n" + b"LIST\r\n" * 100 + b"QUIT\r\n"
    unbounded, _ = run(driver_for(driver_backend()), [flood])
    session = p.ServerSession(allow_plaintext=True, max_output=500)
    driver = p.SessionDriver(session, driver_backend(), failed_login_delay=0, chunk_size=1000)
    out, seen = run(driver, [flood])
    assert out == unbounded  # the same answers, in the same order
    writes = [len(i.data) for i in seen if isinstance(i, p.Write)]
    first = unbounded.index(b"+OK 2 messages")
    listing = unbounded.index(b"+OK 2 messages", first + 1) - first  # one LIST answer
    assert len(writes) > 5 and max(writes) < 1000 + 500 + listing, writes
    assert driver.close_reason == "quit"


def test_answers_to_pipelined_commands_go_out_together_and_none_is_held() -> None:
    # Ten pipelined RETRs of small messages: one write, not two per message.
    # Whatever the client sent last, its answer is written before the next READ.
    driver = driver_for(driver_backend())
    commands = [
        b"USER alice\r\nPASS secret\r\n",
        b"RETR 1\r\n" * 5 + b"RETR 2\r\n" * 5,
        b"NOOP\r\n",
    ]
    out, seen = run(driver, commands)
    assert out.count(b"\r\n.\r\n") == 10
    reads_and_writes = [
        "W" if isinstance(i, p.Write) else "R"
        for i in seen
        if i is p.READ or isinstance(i, p.Write)
    ]
    # Each READ here follows commands, so an answer goes out before it: never
    # two READs in a row. (+OK to USER goes out before the password check.)
    assert "".join(reads_and_writes) == "WRWWRWRWR"
    writes = [i.data for i in seen if isinstance(i, p.Write)]
    assert writes[3].count(b"\r\n.\r\n") == 10 and writes[3].startswith(b"+OK")
    assert writes[4].startswith(b"+OK") and b"\r\n.\r\n" not in writes[4]


def test_session_pauses_once_max_output_is_queued() -> None:
    session = p.ServerSession(max_output=10)
    session.receive_data(b"CAPA\r\nCAPA\r\n")
    assert session.next_request() is p.PAUSED  # the greeting alone is over 10 octets
    assert session.data_to_send().startswith(b"+OK POP3 server ready")
    assert session.next_request() is p.PAUSED  # one CAPA answered, then a pause
    assert session.data_to_send().startswith(b"+OK")
    assert session.next_request() is p.PAUSED
    assert session.data_to_send().endswith(b".\r\n")
    assert session.next_request() is p.NEED_DATA
    assert session.data_to_send() == b""


def test_step_throws_a_failed_call_in_and_ends_with_none() -> None:
    driver = p.SessionDriver(
        p.ServerSession(allow_plaintext=True), driver_backend(open_fails=True), failed_login_delay=0
    )
    feed = iter([b"USER alice\r\n", b"PASS secret\r\n", b"QUIT\r\n"])
    written = []
    instruction = driver.step()
    while instruction is not None:
        value: Any = None
        error: BaseException | None = None
        if instruction is p.READ:
            value = next(feed)
        elif isinstance(instruction, p.Write):
            written.append(instruction.data)
        else:
            assert isinstance(instruction, p.Call)
            try:
                value = instruction.function(*instruction.args)
            except p.MaildropError as exc:  # the broken backend's open()
                error = exc
        instruction = driver.step(value, error)
    assert b"-ERR [SYS/TEMP]" in b"".join(written)
    assert driver.close_reason == "quit"


def test_only_reads_of_small_messages_are_quick_calls() -> None:
    backend = driver_backend()
    session = p.ServerSession(allow_plaintext=True)
    size = p.message_size(MESSAGES[0])
    driver = p.SessionDriver(session, backend, failed_login_delay=0, quick_read_size=size)
    _, seen = run(driver, [b"USER alice\r\n", b"PASS secret\r\n", b"RETR 1\r\n", b"RETR 2\r\n"])
    opens = [s for s in seen if isinstance(s, p.Call) and s.function.__name__ == "_open_message"]
    assert [call.quick for call in opens] == [True, False]  # message 2 is bigger
    assert (
        p.ServerOptions(quick_read_size=0)
        .start_session(
            backend, peer_is_loopback=True, sessions=1, hostname="h", random_bytes=bytes, clock=0
        )
        .quick_read_size
        == 0
    )


@pytest.mark.parametrize(("quick_read_size", "quick"), [(16, True), (15, False), (0, False)])
def test_each_chunk_of_a_big_message_is_a_quick_read_if_a_chunk_may_be(
    quick_read_size: int, quick: bool
) -> None:
    # Reading 64 KiB of a big message costs what reading a 64 KiB message does.
    backend = driver_backend(
        chunk=5, empty_chunks=0
    )  # whatever the chunk size asked for (a storage may)
    session = p.ServerSession(allow_plaintext=True)
    driver = p.SessionDriver(
        session, backend, failed_login_delay=0, chunk_size=16, quick_read_size=quick_read_size
    )
    out, seen = run(driver, [b"USER alice\r\n", b"PASS secret\r\n", b"RETR 2\r\n"])
    calls = [s for s in seen if isinstance(s, p.Call)]
    reads = [c for c in calls if c.function.__name__ == "_next_chunk"]
    assert len(reads) >= len(MESSAGES[1]) // 16 - 2
    assert all(c.quick is quick for c in reads)
    writes_before_reads = [
        isinstance(seen[i - 1], p.Write) for i, s in enumerate(seen) if s in reads
    ]
    if quick:
        # Pieces smaller than a chunk are gathered into fewer writes.
        assert not all(writes_before_reads)
    else:
        # Each read waits on a worker: what is ready (however small) is written first.
        assert all(writes_before_reads)
    # Opening the message (and reading two chunks) stays in a worker.
    assert [c.quick for c in calls if c.function.__name__ == "_open_message"] == [False]
    assert b"\r\n".join(MESSAGES[1].split(b"\n")) in out


def test_answers_are_written_before_a_read_in_a_worker_thread() -> None:
    # RETR 1 (small, read at once) then RETR 2 (read in a worker): the first
    # answer does not wait for the worker.
    backend = driver_backend()
    session = p.ServerSession(allow_plaintext=True)
    size = p.message_size(MESSAGES[0])
    driver = p.SessionDriver(session, backend, failed_login_delay=0, quick_read_size=size)
    _, seen = run(driver, [b"USER alice\r\n", b"PASS secret\r\n", b"RETR 1\r\nRETR 2\r\n"])
    opens = [
        i
        for i, s in enumerate(seen)
        if isinstance(s, p.Call) and s.function.__name__ == "_open_message"
    ]
    assert [seen[i].quick for i in opens] == [True, False]  # type: ignore[attr-defined]
    slow = opens[1]
    assert isinstance(seen[slow - 1], p.Write)
    assert seen[slow - 1].data.endswith(b"hello\r\n.\r\n")


def test_scram_keys_are_derived_inside_the_storage_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # PBKDF2 takes milliseconds: it must run where Calls run (a worker thread
    # in the event-loop bindings), never in the binding's own thread.
    derived_in: list[str] = []
    real = p.ScramCredentials.from_password.__func__  # type: ignore[attr-defined]

    def spy(cls: type, *args: Any) -> p.ScramCredentials:
        derived_in.append(threading.current_thread().name)
        return real(cls, *args)

    monkeypatch.setattr(p.ScramCredentials, "from_password", classmethod(spy))
    backend = driver_backend()
    session = p.ServerSession(
        allow_plaintext=True, mechanisms=["SCRAM-SHA-256"], random_bytes=lambda n: b"\x01" * n
    )
    driver = p.SessionDriver(session, backend, failed_login_delay=0)
    client = p.ScramClient("SHA-256", "alice", "secret", nonce="n" * 24)
    first = base64.b64encode(client.initial_response() or b"").decode()
    steps = driver.run()
    instruction = next(steps)
    lines = [f"AUTH SCRAM-SHA-256 {first}\r\n".encode()]
    written = b""
    with concurrent.futures.ThreadPoolExecutor(thread_name_prefix="worker") as pool:
        while True:
            if instruction is p.READ:
                if not lines:
                    break
                value: Any = lines.pop(0)
            elif isinstance(instruction, p.Call):
                value = pool.submit(instruction.function, *instruction.args).result()
            else:
                assert isinstance(instruction, p.Write)
                written += instruction.data
                if written.endswith(b"\r\n") and written.split(b"\r\n")[-2].startswith(b"+ "):
                    challenge = base64.b64decode(written.split(b"\r\n")[-2][2:])
                    lines.append(base64.b64encode(client.respond(challenge)) + b"\r\n")
                value = None
            instruction = steps.send(value)
    assert b"-ERR" not in written and written.count(b"+ ") >= 1
    assert derived_in and all(name.startswith("worker") for name in derived_in)
