"""ClientConnection: every command against a ServerConnection, and every reader path.

Each reader is fed whole, byte by byte, in 3-octet chunks and with trailing data
(``feed_three_ways``); errors must be the same however the bytes were split.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings, strategies as st

from helpers import (
    ErrorInfo,
    Link,
    client_after_greeting,
    client_logged_in,
    drain,
    feed_three_ways,
    merge_data,
    run,
)
from pop3_sansio import (
    IN_USE,
    MAX_RESPONSE_LINE_LENGTH,
    NEED_DATA,
    PAUSED,
    SYS_TEMP,
    Apop,
    Auth,
    Capa,
    Capabilities,
    ClientConnection,
    ConnectionClosed,
    Data,
    Dele,
    EndOfResponse,
    Err,
    Greeting,
    List,
    LocalProtocolError,
    Noop,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    ResponseCode,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    apop_digest,
    b64encode,
    message_size,
    parse_scan_listing,
    parse_stat,
    parse_uid_line,
    parse_uid_listing,
)

# ======================================================================================
# The greeting
# ======================================================================================


def test_greeting_with_code_and_timestamp() -> None:
    events, error = feed_three_ways(
        ClientConnection, b"+OK [SYS/TEMP] POP3 ready <1.2@example.org>\r\n"
    )
    assert error is None
    assert events == [Greeting("POP3 ready <1.2@example.org>", SYS_TEMP, "<1.2@example.org>")]


def test_greeting_states() -> None:
    client = ClientConnection()
    assert client.our_state is State.GREETING
    assert client.their_state is State.GREETING
    assert client.next_event() is NEED_DATA
    client.receive_data(b"+OK hi\r\n")
    assert client.buffered == 8
    assert client.next_event() == Greeting("hi")
    assert client.buffered == 0
    assert client.our_state is client.their_state is State.AUTHORIZATION


def test_err_greeting_closes() -> None:
    events, error = feed_three_ways(ClientConnection, b"-ERR [SYS/TEMP] busy, try later\r\n")
    assert error is None
    assert events == [Err("busy, try later", SYS_TEMP)]
    client = ClientConnection()
    client.receive_data(b"-ERR no\r\n")
    client.next_event()
    assert client.our_state is State.CLOSED
    with pytest.raises(LocalProtocolError) as info:
        client.send(Capa())
    assert info.value.reason == "wrong-state"
    assert info.value.state == "CLOSED"


@pytest.mark.parametrize("line", [b"OK ready\r\n", b"* OK IMAP\r\n", b"220 smtp\r\n", b"\r\n"])
def test_bad_greeting(line: bytes) -> None:
    _, error = feed_three_ways(ClientConnection, line)
    assert error == ErrorInfo(RemoteProtocolError, "bad-status-line", "GREETING", line.rstrip())


def test_greeting_twice_is_unsolicited() -> None:
    _, error = feed_three_ways(ClientConnection, b"+OK one\r\n+OK two\r\n")
    assert error == ErrorInfo(RemoteProtocolError, "unsolicited", "AUTHORIZATION", b"+OK two")


def test_send_before_greeting_then_error_state() -> None:
    client = ClientConnection()
    with pytest.raises(LocalProtocolError) as info:
        client.send(Capa())
    assert (info.value.reason, info.value.state) == ("wrong-state", "GREETING")
    assert client.our_state is State.ERROR
    assert client.their_state is State.GREETING
    with pytest.raises(LocalProtocolError) as info:
        client.send(Capa())
    assert info.value.reason == "error-state"


# ======================================================================================
# Every command, on the wire and through the server
# ======================================================================================

DIGEST = "c4c9334bac560ecc979e58001b3e22fb"

AUTHORIZATION_COMMANDS = [
    (User("bob"), b"USER bob\r\n", User("bob")),
    (User("Bob Smith"), b"USER Bob Smith\r\n", User("Bob Smith")),
    (Apop("mrose", DIGEST.upper()), b"APOP mrose " + DIGEST.encode() + b"\r\n", None),
    (Auth(), b"AUTH\r\n", Auth()),
    (Auth("plain"), b"AUTH PLAIN\r\n", Auth("PLAIN")),
    (Auth("PLAIN", b"\0u\0p"), b"AUTH PLAIN AHUAcA==\r\n", Auth("PLAIN", b"\0u\0p")),
    (Auth("PLAIN", b""), b"AUTH PLAIN =\r\n", Auth("PLAIN", b"")),
    (Capa(), b"CAPA\r\n", Capa()),
    (Stls(), b"STLS\r\n", Stls()),
    (Utf8(), b"UTF8\r\n", Utf8()),
    (Quit(), b"QUIT\r\n", Quit()),
]

TRANSACTION_COMMANDS = [
    (Stat(), b"STAT\r\n"),
    (List(), b"LIST\r\n"),
    (List(12), b"LIST 12\r\n"),
    (Uidl(), b"UIDL\r\n"),
    (Uidl(3), b"UIDL 3\r\n"),
    (Retr(1), b"RETR 1\r\n"),
    (Top(10, 0), b"TOP 10 0\r\n"),
    (Dele(99999999999999999999), b"DELE 99999999999999999999\r\n"),
    (Noop(), b"NOOP\r\n"),
    (Rset(), b"RSET\r\n"),
    (Capa(), b"CAPA\r\n"),
    (Quit(), b"QUIT\r\n"),
]


@pytest.mark.parametrize(("command", "wire", "parsed"), AUTHORIZATION_COMMANDS)
def test_authorization_command_wire_form(
    link: Link, command: object, wire: bytes, parsed: object
) -> None:
    assert link.client_send(command) == wire  # type: ignore[arg-type]
    assert link.client.in_flight == (command,)
    event = link.server_event()
    if parsed is None:  # APOP: the digest goes out in lower case
        assert event == Apop("mrose", DIGEST)
    else:
        assert event == parsed
    assert link.server.current_command == event


@pytest.mark.parametrize(("command", "wire"), TRANSACTION_COMMANDS)
def test_transaction_command_wire_form(logged_in: Link, command: object, wire: bytes) -> None:
    assert logged_in.client_send(command) == wire  # type: ignore[arg-type]
    assert logged_in.server_event() == command


def test_pass_keeps_spaces(link: Link) -> None:
    link.exchange(User("bob"), Ok())
    assert link.client_send(Pass(" pass word ")) == b"PASS  pass word \r\n"
    assert link.server_event() == Pass(" pass word ")


def test_user_pass(link: Link) -> None:
    assert link.exchange(User("alice"), Ok("send PASS")) == [Ok("send PASS")]
    assert link.client.our_state is link.server.our_state is State.AUTHORIZATION
    assert link.exchange(Pass("secret"), Ok("2 messages")) == [Ok("2 messages")]
    assert link.client.our_state is link.server.our_state is State.TRANSACTION
    assert link.client.their_state is State.TRANSACTION


def test_user_pass_refused(link: Link) -> None:
    link.exchange(User("alice"), Ok())
    code = ResponseCode.parse("AUTH")
    assert link.exchange(Pass("wrong"), Err("bad password", code)) == [Err("bad password", code)]
    assert link.client.our_state is link.server.our_state is State.AUTHORIZATION
    # RFC 1939 section 7: USER may be given again after a failed PASS.
    assert link.exchange(User("alice"), Ok()) == [Ok()]
    assert link.exchange(Pass("right"), Ok()) == [Ok()]
    assert link.client.our_state is State.TRANSACTION


def test_apop_with_digest_from_greeting() -> None:
    stamp = "<1896.697170952@dbc.mtview.ca.us>"
    link = Link(Greeting("POP3 server ready", timestamp=stamp))
    assert link.greeting.timestamp == stamp
    assert link.server.apop_timestamp == stamp
    command = Apop("mrose", apop_digest(link.greeting.timestamp, "tanstaaf"))
    assert command.digest == DIGEST
    assert link.exchange(command, Ok("mrose's maildrop")) == [Ok("mrose's maildrop")]
    assert link.client.our_state is link.server.our_state is State.TRANSACTION


def test_auth_initial_response(link: Link) -> None:
    assert link.exchange(Auth("PLAIN", b"\0alice\0pw"), Ok("welcome")) == [Ok("welcome")]
    assert link.client.our_state is link.server.our_state is State.TRANSACTION


def test_auth_challenges(link: Link) -> None:
    assert link.exchange(Auth("CRAM-MD5"), SaslChallenge(b"<1.2@h>")) == [SaslChallenge(b"<1.2@h>")]
    assert link.to_client.endswith(b"+ PDEuMkBoPg==\r\n")
    assert link.server.next_event() is NEED_DATA  # it waits for the SASL line
    assert link.client.in_flight == (Auth("CRAM-MD5"),)
    link.client_send(SaslResponse(b"alice 0123"))
    assert link.server_event() == SaslResponse(b"alice 0123")
    link.server_send(SaslChallenge(b""))
    assert link.to_client.endswith(b"+ \r\n")
    assert link.client_events() == [SaslChallenge(b"")]
    assert link.client_send(SaslResponse(b"")) == b"\r\n"
    assert link.server_event() == SaslResponse(b"")
    link.server_send(Ok("in"))
    assert link.client_events() == [Ok("in")]
    assert link.client.in_flight == ()
    assert link.client.our_state is link.server.our_state is State.TRANSACTION


def test_auth_cancel(link: Link) -> None:
    link.exchange(Auth("LOGIN"), SaslChallenge(b"Username:"))
    assert link.client_send(SaslCancel()) == b"*\r\n"
    assert link.server_event() == SaslCancel()
    with pytest.raises(LocalProtocolError) as info:
        link.server.send(Ok())  # RFC 5034 section 4: "*" MUST be answered -ERR
    assert info.value.reason == "must-err"


def test_auth_cancel_answered_err(link: Link) -> None:
    link.exchange(Auth("LOGIN"), SaslChallenge(b"Username:"))
    link.client_send(SaslCancel())
    assert link.server_event() == SaslCancel()
    link.server_send(Err("cancelled"))
    assert link.client_events() == [Err("cancelled")]
    assert link.client.our_state is link.server.our_state is State.AUTHORIZATION
    # RFC 5034 section 4: after a failed AUTH it is as if AUTH was never issued.
    assert link.exchange(User("alice"), Ok()) == [Ok()]


def test_bare_auth_lists_mechanisms_and_stays_in_authorization(link: Link) -> None:
    events = link.exchange(Auth(), Ok("methods"), Data(b"PLAIN\r\nLOGIN"), EndOfResponse())
    assert events == [Ok("methods"), Data(b"PLAIN\r\nLOGIN\r\n"), EndOfResponse()]
    assert link.client.our_state is link.server.our_state is State.AUTHORIZATION
    with pytest.raises(LocalProtocolError):
        link.client.send(Stat())
    link.server.receive_data(b"STAT\r\n")  # the server refuses it too
    assert link.server_event().reason == "wrong-state"  # type: ignore[union-attr]


def test_capa(link: Link) -> None:
    caps = Capabilities({"USER": (), "SASL": ("PLAIN",), "STLS": ()})
    events = link.exchange(Capa(), Ok("follows"), Data(caps.encode()), EndOfResponse())
    assert events[0] == Ok("follows")
    assert events[2] == EndOfResponse()
    assert isinstance(events[1], Data)
    assert Capabilities.parse(events[1].data) == caps


def test_stls_then_start_tls(link: Link) -> None:
    assert link.exchange(Stls(), Ok("begin TLS")) == [Ok("begin TLS")]
    for conn in (link.client, link.server):
        assert conn.tls_pending and not conn.tls_active
    assert link.server.next_event() is PAUSED
    assert link.client.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError) as info:
        link.client.send(Capa())  # RFC 2595 section 4: nothing before the handshake
    assert info.value.reason == "tls-pending"
    link.server.start_tls()
    assert link.server.tls_active and not link.server.tls_pending
    link.server.receive_data(b"STLS\r\n")
    assert link.server_event().reason == "tls-active"  # type: ignore[union-attr]


def test_stls_start_tls_both_sides(link: Link) -> None:
    link.exchange(Stls(), Ok())
    link.client.start_tls()
    link.server.start_tls()
    assert link.client.tls_active and link.server.tls_active
    assert link.client.our_state is State.AUTHORIZATION
    caps = Capabilities({"SASL": ("PLAIN",)})
    events = link.exchange(Capa(), Ok(), Data(caps.encode()), EndOfResponse())
    assert Capabilities.parse(events[1].data).sasl == ("PLAIN",)  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError) as info:
        link.client.send(Stls())
    assert info.value.reason == "tls-active"


def test_stls_refused(link: Link) -> None:
    assert link.exchange(Stls(), Err("no TLS here")) == [Err("no TLS here")]
    assert not link.client.tls_pending and not link.server.tls_pending
    with pytest.raises(LocalProtocolError) as info:
        link.client.start_tls()
    assert info.value.reason == "no-stls"
    assert link.client.our_state is State.ERROR


def test_stls_when_tls_is_implicit() -> None:
    client = client_after_greeting(tls=True)
    assert client.tls_active
    with pytest.raises(LocalProtocolError) as info:
        client.send(Stls())
    assert info.value.reason == "tls-active"


def _after_stls() -> ClientConnection:
    client = client_after_greeting()
    client.send(Stls())
    return client


def test_bytes_after_stls_ok_are_an_injection() -> None:
    # In the same segment as the +OK, or later: the Ok comes, then the error.
    events, error = feed_three_ways(_after_stls, b"+OK begin\r\n+OK [IN-USE] spoofed\r\n")
    assert events == [Ok("begin")]
    assert error == ErrorInfo(RemoteProtocolError, "stls-injection", "AUTHORIZATION", None)


def test_bytes_after_stls_ok_fail_start_tls() -> None:
    client = _after_stls()
    client.receive_data(b"+OK begin\r\nX")
    assert client.next_event() == Ok("begin")
    with pytest.raises(RemoteProtocolError) as info:
        client.start_tls()
    assert info.value.reason == "stls-injection"
    assert client.their_state is State.ERROR
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert (info.value.reason, info.value.state) == ("peer-error", "ERROR")


def test_utf8(link: Link) -> None:
    assert not link.client.utf8 and not link.server.utf8
    assert link.exchange(Utf8(), Ok("UTF8 enabled")) == [Ok("UTF8 enabled")]
    assert link.client.utf8 and link.server.utf8
    assert link.exchange(User("jöns"), Ok()) == [Ok()]
    assert link.to_server.endswith("USER jöns\r\n".encode())


def test_utf8_refused(link: Link) -> None:
    link.exchange(Utf8(), Err("no"))
    assert not link.client.utf8 and not link.server.utf8


def test_quit_from_authorization(link: Link) -> None:
    link.client_send(Quit())
    assert link.server_event() == Quit()
    assert link.server.our_state is State.AUTHORIZATION  # no UPDATE without login
    link.server_send(Ok("bye"))
    assert link.client_events() == [Ok("bye")]
    assert link.client.our_state is link.server.our_state is State.CLOSED
    assert link.server.next_event() is PAUSED
    link.client.receive_data(b"")
    assert link.client.next_event() == ConnectionClosed()
    assert link.client.their_state is State.CLOSED


def test_quit_from_transaction(logged_in: Link) -> None:
    logged_in.client_send(Quit())
    assert logged_in.server_event() == Quit()
    assert logged_in.server.our_state is State.UPDATE  # RFC 1939 section 6
    assert logged_in.client.our_state is State.TRANSACTION
    logged_in.server_send(Ok("dewey POP3 server signing off"))
    assert logged_in.client_events() == [Ok("dewey POP3 server signing off")]
    assert logged_in.client.our_state is logged_in.server.our_state is State.CLOSED
    with pytest.raises(LocalProtocolError) as info:
        logged_in.client.send(Noop())
    assert (info.value.reason, info.value.state) == ("wrong-state", "CLOSED")


def test_quit_answered_err_still_closes(logged_in: Link) -> None:
    logged_in.client_send(Quit())
    logged_in.server_event()
    logged_in.server_send(Err("some deleted messages not removed"))
    assert logged_in.client_events() == [Err("some deleted messages not removed")]
    assert logged_in.client.our_state is logged_in.server.our_state is State.CLOSED


# --- TRANSACTION commands through the link ------------------------------------------------


def test_stat(logged_in: Link) -> None:
    events = logged_in.exchange(Stat(), Ok("2 320"))
    assert events == [Ok("2 320")]
    assert parse_stat(events[0].text) == (2, 320)  # type: ignore[union-attr]


def test_list_multi_and_single(logged_in: Link) -> None:
    events = logged_in.exchange(
        List(), Ok("2 messages"), Data(b"1 120\n"), Data(b"2 200\n"), EndOfResponse()
    )
    assert events == [Ok("2 messages"), Data(b"1 120\r\n2 200\r\n"), EndOfResponse()]
    assert parse_scan_listing(events[1].data) == {1: 120, 2: 200}  # type: ignore[union-attr]
    assert logged_in.exchange(List(2), Ok("2 200")) == [Ok("2 200")]
    assert logged_in.exchange(List(3), Err("no such message")) == [Err("no such message")]


def test_list_empty_maildrop(logged_in: Link) -> None:
    events = logged_in.exchange(List(), Ok(), EndOfResponse())
    assert events == [Ok(), EndOfResponse()]
    assert logged_in.to_client.endswith(b"+OK\r\n.\r\n")


def test_uidl_multi_and_single(logged_in: Link) -> None:
    events = logged_in.exchange(
        Uidl(), Ok(), Data(b"1 whqtswO00WBw418f9t5JxYwZ\r\n"), EndOfResponse()
    )
    assert parse_uid_listing(events[1].data) == {1: "whqtswO00WBw418f9t5JxYwZ"}  # type: ignore[union-attr]
    events = logged_in.exchange(Uidl(2), Ok("2 QhdPYR:00WBw1Ph7x7"))
    assert parse_uid_line(events[0].text) == (2, "QhdPYR:00WBw1Ph7x7")  # type: ignore[union-attr]


MESSAGE = b"Subject: dots\n\n.\n..\n.leading\nlast line without newline"


def test_retr(logged_in: Link) -> None:
    chunks = [MESSAGE[i : i + 5] for i in range(0, len(MESSAGE), 5)]
    size = message_size(MESSAGE)
    events = logged_in.exchange(Retr(1), Ok(f"{size} octets"), *map(Data, chunks), EndOfResponse())
    body = b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nlast line without newline\r\n"
    assert events == [Ok(f"{size} octets"), Data(body), EndOfResponse()]
    assert size == len(body) == 61
    assert b"\r\n..\r\n...\r\n..leading\r\n" in logged_in.to_client
    assert logged_in.client.in_flight == ()


def test_top(logged_in: Link) -> None:
    events = logged_in.exchange(Top(1, 0), Ok(), Data(b"Subject: x\r\n\r\n"), EndOfResponse())
    assert events == [Ok(), Data(b"Subject: x\r\n\r\n"), EndOfResponse()]


@pytest.mark.parametrize("command", [Dele(1), Noop(), Rset()])
def test_single_line_transaction_commands(logged_in: Link, command: object) -> None:
    assert logged_in.exchange(command, Ok("done")) == [Ok("done")]  # type: ignore[arg-type]
    assert logged_in.exchange(command, Err("nope")) == [Err("nope")]  # type: ignore[arg-type]
    assert logged_in.client.our_state is State.TRANSACTION


def test_capa_in_transaction(logged_in: Link) -> None:
    events = logged_in.exchange(Capa(), Ok(), Data(b"TOP\r\nUIDL\r\n"), EndOfResponse())
    assert Capabilities.parse(events[1].data).uidl  # type: ignore[union-attr]


def test_multiline_command_answered_err(logged_in: Link) -> None:
    for command in (List(), Uidl(), Retr(5), Top(5, 1), Capa()):
        assert logged_in.exchange(command, Err("no")) == [Err("no")]
        assert logged_in.client.in_flight == ()


# ======================================================================================
# Pipelining (RFC 2449 section 6.6)
# ======================================================================================

PIPELINE = [Stat(), List(), Uidl(1), Retr(1), Noop(), Top(1, 1), Dele(1), List(1)]


def _answer(server_event: object) -> list[object]:
    if isinstance(server_event, Stat):
        return [Ok("1 5")]
    if isinstance(server_event, List) and server_event.msg is None:
        return [Ok(), Data(b"1 5\r\n"), EndOfResponse()]
    if isinstance(server_event, Retr | Top):
        return [Ok(), Data(b"a\r\n.b\r\n"), EndOfResponse()]
    if isinstance(server_event, List):
        return [Err("no such message, deleted")]
    return [Ok(type(server_event).__name__)]


def test_pipelining_responses_matched_in_order(logged_in: Link) -> None:
    wire = logged_in.client_send(*PIPELINE)
    assert wire == b"STAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\nNOOP\r\nTOP 1 1\r\nDELE 1\r\nLIST 1\r\n"
    assert logged_in.client.in_flight == tuple(PIPELINE)
    expected: list[object] = []
    for command in PIPELINE:
        event = logged_in.server_event()
        assert event == command
        assert logged_in.server.next_event() is PAUSED  # processed in turn
        answer = _answer(event)
        logged_in.server_send(*answer)  # type: ignore[arg-type]
        expected += merge_data(answer)  # type: ignore[arg-type]
    assert logged_in.server.next_event() is NEED_DATA
    assert logged_in.client_events() == expected
    assert logged_in.client.in_flight == ()


def _pipelined_client() -> ClientConnection:
    client = client_logged_in()
    for command in PIPELINE:
        client.send(command)
    return client


def test_pipelined_answers_any_chunking() -> None:
    wire = (
        b"+OK 1 5\r\n+OK\r\n1 5\r\n.\r\n+OK Uidl\r\n+OK\r\na\r\n..b\r\n.\r\n+OK Noop\r\n"
        b"+OK\r\na\r\n..b\r\n.\r\n+OK Dele\r\n-ERR no such message, deleted\r\n"
    )
    events, error = feed_three_ways(_pipelined_client, wire)
    assert error is None
    assert events == [
        Ok("1 5"),
        Ok(),
        Data(b"1 5\r\n"),
        EndOfResponse(),
        Ok("Uidl"),
        Ok(),
        Data(b"a\r\n.b\r\n"),
        EndOfResponse(),
        Ok("Noop"),
        Ok(),
        Data(b"a\r\n.b\r\n"),
        EndOfResponse(),
        Ok("Dele"),
        Err("no such message, deleted"),
    ]


def test_in_flight_shrinks_as_answers_arrive() -> None:
    client = _pipelined_client()
    client.receive_data(b"+OK 1 5\r\n+OK\r\n1 5\r\n")
    assert client.next_event() == Ok("1 5")
    assert client.in_flight == tuple(PIPELINE[1:])
    assert client.next_event() == Ok()
    assert client.in_flight[0] == List()  # still open: its body is not finished
    assert client.next_event() == Data(b"1 5\r\n")
    assert client.next_event() is NEED_DATA
    client.receive_data(b".\r\n")
    assert client.next_event() == EndOfResponse()
    assert client.in_flight == tuple(PIPELINE[2:])


def test_pipelined_login(link: Link) -> None:
    # USER, PASS and STAT in one write: STAT is checked against the state the
    # session will be in once the commands before it succeed.
    link.client_send(User("alice"), Pass("pw"), Stat())
    for answer in (Ok(), Ok(), Ok("0 0")):
        link.server_event()
        link.server_send(answer)
    assert link.client_events() == [Ok(), Ok(), Ok("0 0")]


@pytest.mark.parametrize("blocker", [Auth("PLAIN"), Auth(), Stls(), Quit()])
def test_nothing_pipelined_behind_auth_stls_quit(blocker: object) -> None:
    client = client_after_greeting()
    client.send(blocker)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError) as info:
        client.send(Capa())
    assert info.value.reason == "wrong-state"
    assert "until the" in info.value.message


@pytest.mark.parametrize("command", [Retr(1), Dele(1), Noop()])
def test_nothing_pipelined_behind_quit_in_transaction(command: object) -> None:
    # RETR and DELE take a short cut in TRANSACTION; a QUIT in flight still stops them.
    client = client_logged_in()
    client.send(Quit())
    with pytest.raises(LocalProtocolError) as info:
        client.send(command)  # type: ignore[arg-type]
    assert (info.value.reason, info.value.state) == ("wrong-state", "TRANSACTION")
    assert client.in_flight == (Quit(),)


@pytest.mark.parametrize("kind", [Retr, Dele])
def test_retr_dele_length_limit(kind: type[Retr] | type[Dele]) -> None:
    client = client_logged_in()
    client.max_command_length = 12
    assert client.send(kind(1234)) == b"%s 1234\r\n" % kind.__name__.upper().encode()
    with pytest.raises(LocalProtocolError) as info:
        client.send(kind(123456))
    assert (info.value.reason, info.value.state) == ("command-too-long", "TRANSACTION")
    assert client.in_flight == (kind(1234),)


# ======================================================================================
# Misuse: LocalProtocolError
# ======================================================================================


@pytest.mark.parametrize(
    ("command", "state"),
    [
        (Stat(), "AUTHORIZATION"),
        (List(), "AUTHORIZATION"),
        (Retr(1), "AUTHORIZATION"),
        (Noop(), "AUTHORIZATION"),
        (Dele(1), "AUTHORIZATION"),
    ],
)
def test_transaction_command_in_authorization(command: object, state: str) -> None:
    client = client_after_greeting()
    with pytest.raises(LocalProtocolError) as info:
        client.send(command)  # type: ignore[arg-type]
    assert (info.value.reason, info.value.state) == ("wrong-state", state)
    assert client.our_state is State.ERROR


@pytest.mark.parametrize(
    "command", [User("a"), Apop("a", DIGEST), Auth("PLAIN"), Stls(), Utf8(), Auth()]
)
def test_authorization_command_in_transaction(command: object) -> None:
    client = client_logged_in()
    with pytest.raises(LocalProtocolError) as info:
        client.send(command)  # type: ignore[arg-type]
    assert (info.value.reason, info.value.state) == ("wrong-state", "TRANSACTION")


def test_pass_must_follow_user() -> None:
    client = client_after_greeting()
    with pytest.raises(LocalProtocolError) as info:
        client.send(Pass("x"))
    assert info.value.reason == "wrong-state"
    client = client_after_greeting()
    client.send(User("a"))
    client.send(Capa())
    with pytest.raises(LocalProtocolError):
        client.send(Pass("x"))


def test_poplib_injection_is_refused() -> None:
    # CPython poplib before CVE-2025-15367: user("bob\r\nDELE 1") sent two commands.
    with pytest.raises(LocalProtocolError) as info:
        User("bob\r\nDELE 1")
    assert info.value.reason == "bad-argument"
    for bad in ("a\rb", "a\nb", "a\0b"):
        with pytest.raises(LocalProtocolError):
            Pass(bad)
        with pytest.raises(LocalProtocolError):
            User(bad)
        with pytest.raises(LocalProtocolError):
            Apop(bad, DIGEST)


def test_command_length_limit() -> None:
    client = client_after_greeting()
    fits = User("u" * (255 - len(b"USER \r\n")))
    assert len(client.send(fits)) == 255
    client = client_after_greeting()
    with pytest.raises(LocalProtocolError) as info:
        client.send(User("u" * 249))
    assert (info.value.reason, info.value.state) == ("command-too-long", "AUTHORIZATION")
    assert client.in_flight == ()
    # RFC 5034 section 4: an initial response that does not fit is an error too.
    client = client_after_greeting()
    with pytest.raises(LocalProtocolError):
        client.send(Auth("XOAUTH2", b"t" * 300))


def test_command_length_limit_is_configurable() -> None:
    client = client_after_greeting(max_command_length=10)
    with pytest.raises(LocalProtocolError):
        client.send(User("abcdef"))


def test_sasl_response_without_challenge() -> None:
    for line in (SaslResponse(b"x"), SaslCancel()):
        client = client_after_greeting()
        with pytest.raises(LocalProtocolError) as info:
            client.send(line)
        assert info.value.reason == "no-challenge"


def test_sasl_response_answers_one_challenge_only() -> None:
    client = client_after_greeting()
    client.send(Auth("LOGIN"))
    client.receive_data(b"+ VXNlcm5hbWU6\r\n")
    assert client.next_event() == SaslChallenge(b"Username:")
    assert client.send(SaslResponse(b"alice")) == b"YWxpY2U=\r\n"
    with pytest.raises(LocalProtocolError):
        client.send(SaslResponse(b"again"))


def test_send_something_that_is_not_a_command() -> None:
    client = client_after_greeting()
    with pytest.raises(LocalProtocolError) as info:
        client.send(Ok())  # type: ignore[arg-type]
    assert info.value.reason == "type"


def test_after_local_error_nothing_more_is_sent() -> None:
    client = client_logged_in()
    with pytest.raises(LocalProtocolError):
        client.send(User("x"))
    assert client.our_state is State.ERROR
    assert client.their_state is State.TRANSACTION
    with pytest.raises(LocalProtocolError) as info:
        client.send(Noop())
    assert info.value.reason == "error-state"
    assert "LocalProtocolError" in repr(info.value)


# ======================================================================================
# Status lines: limits and malformed input (RemoteProtocolError)
# ======================================================================================


def _waiting_for(command: object, **kwargs: object) -> object:
    def make() -> ClientConnection:
        client = client_logged_in(**kwargs)
        client.send(command)  # type: ignore[arg-type]
        return client

    return make


def _in_auth(**kwargs: object) -> ClientConnection:
    client = client_after_greeting(**kwargs)
    client.send(Auth("XOAUTH2"))
    return client


def test_status_line_of_512_octets_is_accepted() -> None:
    line = b"+OK " + b"a" * (MAX_RESPONSE_LINE_LENGTH - 6) + b"\r\n"
    assert len(line) == 512
    events, error = feed_three_ways(_waiting_for(Noop()), line)  # type: ignore[arg-type]
    assert error is None
    assert events == [Ok("a" * 506)]


def test_status_line_over_512_octets() -> None:
    line = b"+OK " + b"a" * 507 + b"\r\n"
    _, error = feed_three_ways(_waiting_for(Noop()), line)  # type: ignore[arg-type]
    assert error == ErrorInfo(RemoteProtocolError, "line-too-long", "TRANSACTION", line[:512])


def test_unterminated_status_line_over_the_limit() -> None:
    data = b"-ERR " + b"x" * 2000
    _, error = feed_three_ways(_waiting_for(Noop()), data)  # type: ignore[arg-type]
    assert error == ErrorInfo(RemoteProtocolError, "line-too-long", "TRANSACTION", data[:512])


def test_greeting_limit_is_configurable() -> None:
    _, error = feed_three_ways(
        lambda: ClientConnection(max_line_length=20), b"+OK 0123456789012345\r\n"
    )
    assert error is not None and error.reason == "line-too-long"


def test_sasl_challenge_may_exceed_512_octets() -> None:
    payload = b"x" * 3000
    line = b"+ " + b64encode(payload) + b"\r\n"
    events, error = feed_three_ways(_in_auth, line)
    assert error is None
    assert events == [SaslChallenge(payload)]


def test_sasl_challenge_has_its_own_limit() -> None:
    line = b"+ " + b"QUFB" * 40 + b"\r\n"  # 164 octets
    events, error = feed_three_ways(lambda: _in_auth(max_sasl_line_length=164), line)
    assert error is None and events == [SaslChallenge(b"AAA" * 40)]
    _, error = feed_three_ways(lambda: _in_auth(max_sasl_line_length=163), line)
    assert error == ErrorInfo(RemoteProtocolError, "line-too-long", "AUTHORIZATION", line[:163])


def test_ok_during_auth_keeps_the_status_limit() -> None:
    line = b"+OK " + b"a" * 600 + b"\r\n"
    _, error = feed_three_ways(_in_auth, line)
    assert error == ErrorInfo(RemoteProtocolError, "line-too-long", "AUTHORIZATION", line[:512])
    line = b"-ERR " + b"a" * 600 + b"\r\n"
    _, error = feed_three_ways(_in_auth, line)
    assert error == ErrorInfo(RemoteProtocolError, "line-too-long", "AUTHORIZATION", line[:512])


@pytest.mark.parametrize(
    "line",
    [
        b"OK\r\n",
        b"+OKAY\r\n",
        b"-ERROR\r\n",
        b"+ \r\n",  # a challenge, but NOOP is no AUTH
        b"+\r\n",
        b"\r\n",
        b"250 OK\r\n",
        b"+OK a\0b\r\n",
        b"+OK a\rb\r\n",
        b"-ERR trailing CR\r\r\n",
    ],
)
def test_bad_status_lines(line: bytes) -> None:
    _, error = feed_three_ways(_waiting_for(Noop()), line)  # type: ignore[arg-type]
    stripped = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    assert error == ErrorInfo(RemoteProtocolError, "bad-status-line", "TRANSACTION", stripped)


def test_status_after_bare_auth_is_not_a_challenge() -> None:
    def make() -> ClientConnection:
        client = client_after_greeting()
        client.send(Auth())
        return client

    _, error = feed_three_ways(make, b"+ \r\n")
    assert error is not None and error.reason == "bad-status-line"


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"+OK\r\n", Ok()),
        (b"+OK\n", Ok()),  # a bare LF is accepted on receipt
        (b"+ok lower case\r\n", Ok("lower case")),
        (b"-err lower case\r\n", Err("lower case")),
        (b"+OK  two spaces\r\n", Ok(" two spaces")),
        (b"+OK caf\xc3\xa9\r\n", Ok("café")),
        (b"+OK \xff\xfe\r\n", Ok("\ufffd\ufffd")),  # not UTF-8: replaced, not fatal
        (b"-ERR [IN-USE] locked\r\n", Err("locked", IN_USE)),
        (b"-ERR [SYS/TEMP/DISK] full\r\n", Err("full", ResponseCode(("SYS", "TEMP", "DISK")))),
        (b"-ERR [not a code\r\n", Err("[not a code")),
        (b"-ERR [x-unknown] y\r\n", Err("y", ResponseCode(("X-UNKNOWN",)))),
    ],
)
def test_status_line_forms(line: bytes, event: object) -> None:
    events, error = feed_three_ways(_waiting_for(Noop()), line)  # type: ignore[arg-type]
    assert error is None
    assert events == [event]


def test_unsolicited_line() -> None:
    _, error = feed_three_ways(client_logged_in, b"+OK surprise\r\n")
    assert error == ErrorInfo(RemoteProtocolError, "unsolicited", "TRANSACTION", b"+OK surprise")


def test_unsolicited_after_the_answers() -> None:
    events, error = feed_three_ways(_waiting_for(Noop()), b"+OK\r\n-ERR extra\r\n")  # type: ignore[arg-type]
    assert events == [Ok()]
    assert error is not None and error.reason == "unsolicited"


# ======================================================================================
# SASL challenges
# ======================================================================================


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"+ \r\n", b""),
        (b"+\r\n", b""),  # Microsoft's XOAUTH2 documentation shows no space
        (b"+ dGVzdA==\r\n", b"test"),
        (b"+ dGVzdA== \r\n", b"test"),
        (b"+ dGVzdA==\n", b"test"),
        (b"+ dGVz!A==\r\n", None),  # not in the alphabet
        (b"+ dG=zdA==\r\n", None),  # "=" in the middle
        (b"+ dGVzdA\r\n", None),  # padding missing
        (b"+ dGVzdA===\r\n", None),
        (b"+ \xff\r\n", None),
    ],
)
def test_challenge_decoding(line: bytes, data: bytes | None) -> None:
    events, error = feed_three_ways(_in_auth, line)
    assert error is None
    assert events == [SaslChallenge(data)]


def test_undecodable_challenge_is_cancelled() -> None:
    client = _in_auth()
    client.receive_data(b"+ !!!!\r\n")
    assert client.next_event() == SaslChallenge(None)
    assert client.send(SaslCancel()) == b"*\r\n"
    client.receive_data(b"-ERR cancelled\r\n")
    assert client.next_event() == Err("cancelled")
    assert client.in_flight == ()
    assert client.our_state is State.AUTHORIZATION


def test_server_must_wait_for_our_sasl_response() -> None:
    _, error = feed_three_ways(_in_auth, b"+ \r\n+OK too early\r\n")
    assert error == ErrorInfo(RemoteProtocolError, "sasl-order", "AUTHORIZATION", b"+OK too early")


def test_several_challenges() -> None:
    client = _in_auth()
    for challenge in (b"", b"one", b"two"):
        client.receive_data(b"+ " + b64encode(challenge) + b"\r\n")
        assert client.next_event() == SaslChallenge(challenge)
        client.send(SaslResponse(challenge))
    client.receive_data(b"+OK\r\n")
    assert client.next_event() == Ok()
    assert client.our_state is State.TRANSACTION


# ======================================================================================
# Multi-line bodies (RFC 1939 section 3)
# ======================================================================================


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),  # a line that is only "."
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"..foo\r\n.\r\n", b".foo\r\n"),
        (b"a\r\n..\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\n.\r\nb\r\n"),
        (b".foo\r\n.\r\n", b"foo\r\n"),  # an unstuffed leading dot is still removed
        (b"a\nb\n.\r\n", b"a\nb\n"),  # bare LF lines are passed through
        # "." LF ends the body too (as in poplib): a server with bare LF line
        # ends must not leave the client waiting for a CRLF that never comes.
        (b"a\r\n.\n", b"a\r\n"),
        (b"a\nb\n.\n", b"a\nb\n"),
        (b".\n", b""),
        (b"..\n.\n", b".\n"),
        (b"a\r\n.\rx\r\n.\r\n", b"a\r\n\rx\r\n"),  # "." CR x: stuffing, then CR x
        (b".\r\r\n.\r\n", b"\r\r\n"),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        (b"x.\r\n.\r\n", b"x.\r\n"),
        (b"a\r\n.\r\n", b"a\r\n"),
    ],
)
def test_body_decoding(wire: bytes, body: bytes) -> None:
    events, error = feed_three_ways(_waiting_for(Retr(1)), b"+OK\r\n" + wire)  # type: ignore[arg-type]
    assert error is None
    assert events == [Ok(), *([Data(body)] if body else []), EndOfResponse()]


def test_body_then_next_answer_in_one_segment() -> None:
    def make() -> ClientConnection:
        client = client_logged_in()
        client.send(Retr(1))
        client.send(Stat())
        return client

    events, error = feed_three_ways(make, b"+OK\r\nhello\r\n.\r\n+OK 1 7\r\n")
    assert error is None
    assert events == [Ok(), Data(b"hello\r\n"), EndOfResponse(), Ok("1 7")]


def test_body_lines_are_not_limited() -> None:
    line = b"x" * 100_000 + b"\r\n"
    events, error = feed_three_ways(_waiting_for(Retr(1)), b"+OK\r\n" + line[:3000] + b"\r\n.\r\n")  # type: ignore[arg-type]
    assert error is None and events[1] == Data(line[:3000] + b"\r\n")
    client = client_logged_in()
    client.send(Retr(1))
    client.receive_data(b"+OK\r\n" + line + b".\r\n")
    assert merge_data(drain(client)) == [Ok(), Data(line), EndOfResponse()]


def test_data_chunks_are_bytes_even_from_memoryview() -> None:
    client = client_logged_in()
    client.send(Retr(1))
    client.receive_data(memoryview(b"+OK\r\nabc\r\n"))  # type: ignore[arg-type]
    client.receive_data(bytearray(b"..d\r\n.\r\n"))  # type: ignore[arg-type]
    events = drain(client)  # drain() asserts type(x) is bytes for every chunk
    assert merge_data(events) == [Ok(), Data(b"abc\r\n.d\r\n"), EndOfResponse()]


# ======================================================================================
# The end of the connection
# ======================================================================================


def test_idle_close() -> None:
    events, error = feed_three_ways(client_logged_in, b"", close=True)
    assert (events, error) == ([ConnectionClosed()], None)
    client = client_logged_in()
    client.receive_data(b"")
    assert client.their_state is State.CLOSED
    assert client.next_event() == ConnectionClosed()
    assert client.our_state is State.CLOSED
    with pytest.raises(LocalProtocolError) as info:
        client.receive_data(b"more")
    assert info.value.reason == "closed"


def test_close_before_the_greeting() -> None:
    events, error = feed_three_ways(ClientConnection, b"", close=True)
    assert (events, error) == ([ConnectionClosed()], None)


def test_close_after_quit() -> None:
    events, error = feed_three_ways(_waiting_for(Quit()), b"+OK bye\r\n", close=True)  # type: ignore[arg-type]
    assert (events, error) == ([Ok("bye"), ConnectionClosed()], None)


@pytest.mark.parametrize(
    ("command", "data", "before"),
    [
        (Stat(), b"", []),  # nothing of the answer arrived
        (Stat(), b"+OK 1 2", []),  # half a status line
        (Retr(1), b"+OK\r\nabc\r\n", [Ok(), Data(b"abc\r\n")]),  # half a body
        (Retr(1), b"+OK\r\nabc\r\n.", [Ok(), Data(b"abc\r\n")]),
        (Retr(1), b"+OK\r\n", [Ok()]),
        (List(), b"+OK\r\n.\r", [Ok()]),
    ],
)
def test_close_mid_answer_is_truncation(command: object, data: bytes, before: list[object]) -> None:
    events, error = feed_three_ways(_waiting_for(command), data, close=True)  # type: ignore[arg-type]
    assert events == before
    assert error is not None
    assert (error.type, error.reason) == (RemoteProtocolError, "truncated")


def test_close_with_body_end_and_data_in_one_chunk() -> None:
    client = client_logged_in()
    client.send(Retr(1))
    client.receive_data(b"+OK\r\nabc\r\n.\r\n")
    client.receive_data(b"")
    assert client.next_event() == Ok()
    assert client.next_event() == Data(b"abc\r\n")
    assert client.next_event() == EndOfResponse()
    assert client.next_event() == ConnectionClosed()


def test_buffer_limit() -> None:
    client = ClientConnection(max_buffer_size=10)
    client.receive_data(b"+OK 123456")  # 10 octets: at the limit, accepted
    client.receive_data(b"7")  # now over it, but the check is before appending
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(b"8")
    assert info.value.reason == "buffer-full"
    assert client.their_state is State.ERROR


# ======================================================================================
# Property: server encoding then client decoding gives the body with CRLF line ends
# ======================================================================================


def _expected_body(message: bytes) -> bytes:
    body = re.sub(rb"(?<!\r)\n", b"\r\n", message)
    if body and not body.endswith(b"\n"):
        body += b"\n" if body.endswith(b"\r") else b"\r\n"
    return body


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=300, deadline=None)
@given(
    message=st.binary(max_size=40).map(
        lambda b: bytes(b"a.\r\n"[x % 4] for x in b)  # mostly dots and line ends
    ),
    server_cuts=st.lists(st.integers(0, 60), max_size=6),
    client_cuts=st.lists(st.integers(0, 80), max_size=8),
)
def test_round_trip_any_chunking(
    message: bytes, server_cuts: list[int], client_cuts: list[int]
) -> None:
    link = Link(Greeting())
    link.exchange(User("a"), Ok())
    link.exchange(Pass("b"), Ok())
    link.client_send(Retr(1))
    assert link.server_event() == Retr(1)
    server = link.server
    wire = (
        server.send(Ok())
        + b"".join(server.send(Data(c)) for c in _cut(message, server_cuts))
        + server.send(EndOfResponse())
    )
    client = link.client
    events, error = run(client, _cut(wire, client_cuts))
    body = _expected_body(message)
    assert error is None
    assert events == [Ok(), *([Data(body)] if body else []), EndOfResponse()]
    assert message_size(message) == len(body)
    assert message_size(_cut(message, server_cuts)) == len(body)
