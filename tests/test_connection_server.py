"""ServerConnection: command parsing, the state rules, answering, body encoding.

Every command reader is fed whole, byte by byte, in 3-octet chunks and with
trailing data (``feed_three_ways``), with a generic responder so that reading
goes on; errors must not depend on how the bytes were split.
"""

from __future__ import annotations

import pytest

from helpers import (
    ErrorInfo,
    answer_generically,
    drain,
    feed_three_ways,
    server_after_greeting,
    server_logged_in,
)
from pop3_sansio import (
    IN_USE,
    MAX_COMMAND_LENGTH,
    NEED_DATA,
    PAUSED,
    SYS_PERM,
    Apop,
    Auth,
    Capa,
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
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    ServerConnection,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    UnknownCommand,
    User,
    Utf8,
    message_size,
)

DIGEST = "c4c9334bac560ecc979e58001b3e22fb"


# ======================================================================================
# The greeting
# ======================================================================================


def test_paused_until_greeting() -> None:
    server = ServerConnection()
    assert server.our_state is State.GREETING
    server.receive_data(b"CAPA\r\n")
    assert server.next_event() is PAUSED
    assert server.send(Greeting("ready")) == b"+OK ready\r\n"
    assert server.our_state is State.AUTHORIZATION
    assert server.next_event() == Capa()


def test_greeting_timestamp_is_appended_once() -> None:
    stamp = "<1896.697170952@dbc.mtview.ca.us>"
    server = ServerConnection()
    assert server.apop_timestamp is None
    assert server.send(Greeting("POP3 server ready", timestamp=stamp)) == (
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    )
    assert server.apop_timestamp == stamp
    server = ServerConnection()
    assert server.send(Greeting(f"ready {stamp} here", timestamp=stamp)) == (
        f"+OK ready {stamp} here\r\n".encode()
    )
    assert ServerConnection().send(Greeting(timestamp=stamp)) == f"+OK {stamp}\r\n".encode()
    assert ServerConnection().send(Greeting("hi", SYS_PERM)) == b"+OK [SYS/PERM] hi\r\n"


def test_greeting_twice() -> None:
    server = server_after_greeting()
    with pytest.raises(LocalProtocolError) as info:
        server.send(Greeting("again"))
    assert (info.value.reason, info.value.state) == ("wrong-state", "AUTHORIZATION")
    assert server.our_state is State.ERROR
    with pytest.raises(LocalProtocolError) as info:
        server.send(Err("x"))
    assert info.value.reason == "error-state"


def test_err_greeting_refuses_service() -> None:
    server = ServerConnection()
    assert server.send(Err("busy", IN_USE)) == b"-ERR [IN-USE] busy\r\n"
    assert server.our_state is State.CLOSED
    server.receive_data(b"USER a\r\n")
    assert server.next_event() is PAUSED


@pytest.mark.parametrize("event", [Ok("x"), Data(b"x"), EndOfResponse(), SaslChallenge(b"")])
def test_answer_before_greeting(event: object) -> None:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError) as info:
        server.send(event)  # type: ignore[arg-type]
    assert info.value.reason in {"wrong-state", "no-body"}
    assert info.value.state == "GREETING"


# ======================================================================================
# Parsing every command
# ======================================================================================

AUTHORIZATION_LINES = [
    (b"USER alice\r\n", User("alice")),
    (b"user alice\r\n", User("alice")),
    (b"USER Bob Smith\r\n", User("Bob Smith")),
    (b"USER j\xc3\xb6ns\r\n", User("jöns")),  # RFC 6856 UTF8
    (b"APOP mrose " + DIGEST.encode() + b"\r\n", Apop("mrose", DIGEST)),
    (b"apop mrose " + DIGEST.upper().encode() + b"\r\n", Apop("mrose", DIGEST.upper())),
    (b"AUTH\r\n", Auth()),
    (b"auth plain\r\n", Auth("PLAIN")),
    (b"AUTH PLAIN AHUAcA==\r\n", Auth("PLAIN", b"\0u\0p")),
    (b"AUTH PLAIN =\r\n", Auth("PLAIN", b"")),
    (b"AUTH X-MECH_2\r\n", Auth("X-MECH_2")),
    (b"CAPA\r\n", Capa()),
    (b"capa\r\n", Capa()),
    (b"STLS\r\n", Stls()),
    (b"UTF8\r\n", Utf8()),
    (b"QUIT\r\n", Quit()),
    (b"QUIT\n", Quit()),  # bare LF accepted
]

TRANSACTION_LINES = [
    (b"STAT\r\n", Stat()),
    (b"LIST\r\n", List()),
    (b"LIST 1\r\n", List(1)),
    (b"list 00012\r\n", List(12)),
    (b"UIDL\r\n", Uidl()),
    (b"UIDL 2\r\n", Uidl(2)),
    (b"RETR 1\r\n", Retr(1)),
    (b"TOP 1 0\r\n", Top(1, 0)),
    (b"Top 3 10\r\n", Top(3, 10)),
    (b"DELE 1\r\n", Dele(1)),
    (b"DELE 99999999999999999999\r\n", Dele(99999999999999999999)),
    (b"NOOP\r\n", Noop()),
    (b"RSET\r\n", Rset()),
    (b"CAPA\r\n", Capa()),
    (b"QUIT\r\n", Quit()),
]


@pytest.mark.parametrize(("line", "event"), AUTHORIZATION_LINES)
def test_authorization_commands(line: bytes, event: object) -> None:
    events, error = feed_three_ways(server_after_greeting, line, respond=answer_generically)
    assert error is None
    assert events == [event]


@pytest.mark.parametrize(("line", "event"), TRANSACTION_LINES)
def test_transaction_commands(line: bytes, event: object) -> None:
    events, error = feed_three_ways(server_logged_in, line, respond=answer_generically)
    assert error is None
    assert events == [event]


def test_pass() -> None:
    def make() -> ServerConnection:
        server = server_after_greeting()
        server.receive_data(b"USER alice\r\n")
        server.next_event()
        server.send(Ok())
        return server

    for line, password in [
        (b"PASS secret\r\n", "secret"),
        (b"PASS  with spaces \r\n", " with spaces "),  # RFC 1939 section 7
        (b"PASS \r\n", ""),
        (b"pass p\xc3\xa4ss\r\n", "päss"),
    ]:
        events, error = feed_three_ways(make, line, respond=answer_generically)
        assert (events, error) == ([Pass(password)], None)


SYNTAX_ERRORS = [
    b"USER",
    b"USER ",
    b"PASS",  # (the state check comes after the syntax check)
    b"APOP",
    b"APOP mrose",
    b"APOP mrose nothex",
    b"APOP mrose " + DIGEST.encode() + b"0",
    b"APOP mr ose " + DIGEST.encode(),  # spaces in the APOP name
    b"AUTH PLAIN a b",
    b"AUTH ",
    b"AUTH  PLAIN",
    b"AUTH PLAIN !!!!",  # not base64
    b"AUTH PLAIN QQ=A",  # "=" in the middle
    b"AUTH PLAIN QQ",  # no padding
    b"AUTH PL@IN",
    b"AUTH ABCDEFGHIJKLMNOPQRSTU",  # longer than 20 characters
    b"AUTH \xc3\xa9",  # non-ASCII mechanism (UnicodeDecodeError before the fix)
    b"USER a\0b",
    b"USER a\rb",
    b"USER \xff\xfe",  # not UTF-8
    b"CAPA now",
    b"STLS please",
    b"QUIT ",
]


@pytest.mark.parametrize("line", SYNTAX_ERRORS)
def test_syntax_errors_in_authorization(line: bytes) -> None:
    events, error = feed_three_ways(
        server_after_greeting, line + b"\r\n", respond=answer_generically
    )
    assert error is None
    keyword = line.split(b" ")[0].decode().upper()
    assert events == [UnknownCommand(keyword, line, "syntax")]


TRANSACTION_SYNTAX_ERRORS = [
    b"RETR",
    b"RETR ",
    b"RETR 0",
    b"RETR -1",
    b"RETR x",
    b"RETR 1 2",
    b"RETR +1",
    b"RETR \xd9\xa1",  # ARABIC-INDIC DIGIT ONE: a digit, but not ASCII
    b"RETR 123456789012345678901",  # 21 digits
    b"DELE",
    b"DELE 1x",
    b"LIST 0",
    b"LIST 1 2",
    b"LIST ",
    b"UIDL a",
    b"TOP 1",
    b"TOP 1 -1",
    b"TOP 0 1",
    b"TOP 1 1 1",
    b"TOP 1 123456789012345678901",
    b"STAT 1",
    b"NOOP x",
    b"RSET x",
]


@pytest.mark.parametrize("line", TRANSACTION_SYNTAX_ERRORS)
def test_syntax_errors_in_transaction(line: bytes) -> None:
    events, error = feed_three_ways(server_logged_in, line + b"\r\n", respond=answer_generically)
    assert error is None
    assert events == [UnknownCommand(line.split(b" ")[0].decode(), line, "syntax")]


def test_longest_possible_number_is_a_syntax_error() -> None:
    line = b"RETR " + b"9" * (MAX_COMMAND_LENGTH - len(b"RETR \r\n"))
    events, _ = feed_three_ways(server_logged_in, line + b"\r\n", respond=answer_generically)
    assert events == [UnknownCommand("RETR", line, "syntax")]


@pytest.mark.parametrize(
    ("line", "keyword"),
    [
        (b"FOO", "FOO"),
        (b"XTND XMIT", "XTND"),
        (b"", ""),
        (b"LAST", "LAST"),  # RFC 1725, removed by RFC 1939
        (b"PA\xdf secret", "PA\xdf"),  # Latin-1 "PAß".upper() is "PASS": not a command
        (b"\xdf", "\xdf"),
    ],
)
def test_unknown_commands(line: bytes, keyword: str) -> None:
    events, error = feed_three_ways(
        server_after_greeting, line + b"\r\n", respond=answer_generically
    )
    assert error is None
    assert events == [UnknownCommand(keyword, line, "unknown")]


def test_unknown_command_keeps_the_line() -> None:
    server = server_after_greeting()
    server.receive_data(b"foo bar\r\n")
    event = server.next_event()
    assert isinstance(event, UnknownCommand)
    assert (event.keyword, event.line, event.reason) == ("FOO", b"foo bar", "unknown")
    assert type(event.line) is bytes
    assert server.current_command == event


# ======================================================================================
# State rules: wrong-state commands come back as UnknownCommand and get -ERR
# ======================================================================================


@pytest.mark.parametrize(
    "line", [b"STAT", b"LIST", b"LIST 1", b"UIDL", b"RETR 1", b"TOP 1 1", b"DELE 1", b"NOOP"]
)
def test_transaction_commands_in_authorization(line: bytes) -> None:
    events, _ = feed_three_ways(server_after_greeting, line + b"\r\n", respond=answer_generically)
    assert events == [UnknownCommand(line.split(b" ")[0].decode(), line, "wrong-state")]


@pytest.mark.parametrize(
    "line",
    [b"USER a", b"PASS a", b"APOP a " + DIGEST.encode(), b"AUTH PLAIN", b"AUTH", b"STLS", b"UTF8"],
)
def test_authorization_commands_in_transaction(line: bytes) -> None:
    events, _ = feed_three_ways(server_logged_in, line + b"\r\n", respond=answer_generically)
    assert events == [UnknownCommand(line.split(b" ")[0].decode(), line, "wrong-state")]


def test_wrong_state_must_be_answered_err() -> None:
    server = server_after_greeting()
    server.receive_data(b"STAT\r\n")
    assert server.next_event() == UnknownCommand("STAT", b"STAT", "wrong-state")
    assert server.next_event() is PAUSED
    with pytest.raises(LocalProtocolError) as info:
        server.send(Ok("2 320"))
    assert (info.value.reason, info.value.state) == ("must-err", "AUTHORIZATION")
    server = server_after_greeting()
    server.receive_data(b"STAT\r\n")
    server.next_event()
    assert server.send(Err("not yet")) == b"-ERR not yet\r\n"
    assert server.current_command is None


def test_pass_without_user() -> None:
    events, _ = feed_three_ways(server_after_greeting, b"PASS x\r\n", respond=answer_generically)
    assert events == [UnknownCommand("PASS", b"PASS x", "wrong-state")]


def test_pass_after_failed_user() -> None:
    server = server_after_greeting()
    server.receive_data(b"USER nobody\r\nPASS x\r\n")
    assert server.next_event() == User("nobody")
    server.send(Err("no such user"))
    assert server.next_event() == UnknownCommand("PASS", b"PASS x", "wrong-state")


def test_pass_not_right_after_user() -> None:
    server = server_after_greeting()
    server.receive_data(b"USER alice\r\nCAPA\r\nPASS x\r\n")
    assert server.next_event() == User("alice")
    server.send(Ok())
    assert server.next_event() == Capa()
    server.send(Ok())
    server.send(EndOfResponse())
    assert server.next_event() == UnknownCommand("PASS", b"PASS x", "wrong-state")


def test_pass_after_garbage_after_user() -> None:
    server = server_after_greeting()
    server.receive_data(b"USER alice\r\nFOO\r\nPASS x\r\n")
    server.next_event()
    server.send(Ok())
    assert isinstance(server.next_event(), UnknownCommand)
    server.send(Err())
    assert server.next_event() == UnknownCommand("PASS", b"PASS x", "wrong-state")


def test_stls_inside_tls() -> None:
    events, _ = feed_three_ways(
        lambda: server_after_greeting(tls=True), b"STLS\r\n", respond=answer_generically
    )
    assert events == [UnknownCommand("STLS", b"STLS", "tls-active")]
    server = server_after_greeting(tls=True)
    assert server.tls_active
    server.receive_data(b"STLS\r\n")
    server.next_event()
    with pytest.raises(LocalProtocolError) as info:
        server.send(Ok())
    assert info.value.reason == "must-err"


def test_stls_in_transaction_is_wrong_state() -> None:
    events, _ = feed_three_ways(server_logged_in, b"STLS\r\n", respond=answer_generically)
    assert events == [UnknownCommand("STLS", b"STLS", "wrong-state")]


# ======================================================================================
# QUIT and the end of the connection
# ======================================================================================


def test_quit_from_authorization() -> None:
    server = server_after_greeting()
    server.receive_data(b"QUIT\r\n")
    assert server.next_event() == Quit()
    assert server.our_state is State.AUTHORIZATION  # RFC 1939 section 6: no UPDATE
    assert server.send(Ok("bye")) == b"+OK bye\r\n"
    assert server.our_state is State.CLOSED
    assert server.next_event() is PAUSED


def test_quit_from_transaction() -> None:
    server = server_logged_in()
    server.receive_data(b"QUIT\r\n")
    assert server.next_event() == Quit()
    assert server.our_state is State.UPDATE
    assert server.their_state is State.UPDATE
    assert server.send(Ok("signing off")) == b"+OK signing off\r\n"
    assert server.our_state is State.CLOSED
    with pytest.raises(LocalProtocolError) as info:
        server.send(Ok())
    assert (info.value.reason, info.value.state) == ("no-command", "CLOSED")


def test_quit_answered_err() -> None:
    server = server_logged_in()
    server.receive_data(b"QUIT\r\n")
    server.next_event()
    assert server.send(Err("some deleted messages not removed")).startswith(b"-ERR ")
    assert server.our_state is State.CLOSED


def test_client_closes() -> None:
    events, error = feed_three_ways(server_logged_in, b"", close=True)
    assert (events, error) == ([ConnectionClosed()], None)
    events, error = feed_three_ways(
        server_logged_in, b"NOOP\r\n", respond=answer_generically, close=True
    )
    assert (events, error) == ([Noop(), ConnectionClosed()], None)
    server = server_logged_in()
    server.receive_data(b"")
    assert server.their_state is State.CLOSED
    assert server.our_state is State.TRANSACTION
    assert server.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError) as info:
        server.receive_data(b"x")
    assert info.value.reason == "closed"


# ======================================================================================
# Answering: LocalProtocolError paths
# ======================================================================================


def test_response_with_no_command() -> None:
    for event in (Ok(), Err()):
        server = server_after_greeting()
        with pytest.raises(LocalProtocolError) as info:
            server.send(event)
        assert info.value.reason == "no-command"


def test_data_outside_a_body() -> None:
    server = server_logged_in()
    server.receive_data(b"STAT\r\n")
    server.next_event()
    with pytest.raises(LocalProtocolError) as info:
        server.send(Data(b"x"))
    assert info.value.reason == "no-body"
    server = server_logged_in()
    with pytest.raises(LocalProtocolError) as info:
        server.send(EndOfResponse())
    assert info.value.reason == "no-body"


def test_single_line_answer_to_stat_has_no_body() -> None:
    server = server_logged_in()
    server.receive_data(b"STAT\r\n")
    server.next_event()
    assert server.send(Ok("2 320")) == b"+OK 2 320\r\n"
    with pytest.raises(LocalProtocolError):
        server.send(Data(b"1 120\r\n"))


def test_status_while_body_open() -> None:
    for event in (Ok(), Err(), Greeting()):
        server = server_logged_in()
        server.receive_data(b"LIST\r\n")
        server.next_event()
        server.send(Ok())
        with pytest.raises(LocalProtocolError) as info:
            server.send(event)  # type: ignore[arg-type]
        assert info.value.reason == "body-open"


def test_not_a_response() -> None:
    server = server_logged_in()
    server.receive_data(b"NOOP\r\n")
    server.next_event()
    with pytest.raises(LocalProtocolError) as info:
        server.send(Noop())  # type: ignore[arg-type]
    assert info.value.reason == "type"


def test_status_line_over_512_octets() -> None:
    server = server_logged_in()
    server.receive_data(b"NOOP\r\n")
    server.next_event()
    assert len(server.send(Ok("a" * 506))) == 512
    server.receive_data(b"NOOP\r\n")
    server.next_event()
    with pytest.raises(LocalProtocolError) as info:
        server.send(Ok("a" * 507))
    assert info.value.reason == "too-long"


def test_sasl_challenge_outside_auth() -> None:
    for line in (b"NOOP\r\n", b"AUTH\r\n"):
        server = server_logged_in() if line == b"NOOP\r\n" else server_after_greeting()
        server.receive_data(line)
        server.next_event()
        with pytest.raises(LocalProtocolError) as info:
            server.send(SaslChallenge(b""))
        assert info.value.reason == "wrong-state"


def _in_auth(**kwargs: object) -> ServerConnection:
    server = server_after_greeting(**kwargs)
    server.receive_data(b"AUTH LOGIN\r\n")
    assert server.next_event() == Auth("LOGIN")
    assert server.send(SaslChallenge(b"Username:")) == b"+ VXNlcm5hbWU6\r\n"
    return server


def test_sasl_challenge_needs_data() -> None:
    server = server_after_greeting()
    server.receive_data(b"AUTH X\r\n")
    server.next_event()
    with pytest.raises(LocalProtocolError) as info:
        server.send(SaslChallenge(None))
    assert info.value.reason == "bad-argument"


def test_sasl_wait_for_the_response() -> None:
    for event in (SaslChallenge(b""), Ok(), Err()):
        server = _in_auth()
        with pytest.raises(LocalProtocolError) as info:
            server.send(event)  # type: ignore[arg-type]
        assert info.value.reason == "wrong-state"


# ======================================================================================
# SASL lines
# ======================================================================================


def test_sasl_exchange() -> None:
    server = _in_auth()
    assert server.current_command == Auth("LOGIN")
    server.receive_data(b"YWxpY2U=\r\n")
    assert server.next_event() == SaslResponse(b"alice")
    assert server.next_event() is PAUSED
    server.send(SaslChallenge(b"Password:"))
    server.receive_data(b"\r\n")
    assert server.next_event() == SaslResponse(b"")
    assert server.send(Ok("welcome")) == b"+OK welcome\r\n"
    assert server.our_state is State.TRANSACTION
    assert server.current_command is None


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"*", SaslCancel()),
        (b"", SaslResponse(b"")),
        (b"YWxpY2U=", SaslResponse(b"alice")),
        (b"USER alice", UnknownCommand("", b"USER alice", "syntax")),  # not a command here
        (b"YWxpY2U", UnknownCommand("", b"YWxpY2U", "syntax")),
        (b"YW=pY2U=", UnknownCommand("", b"YW=pY2U=", "syntax")),
        (b"YWxp Y2U=", UnknownCommand("", b"YWxp Y2U=", "syntax")),
        (b"**", UnknownCommand("", b"**", "syntax")),
    ],
)
def test_sasl_lines(line: bytes, event: object) -> None:
    events, error = feed_three_ways(_in_auth, line + b"\r\n", respond=answer_generically)
    assert (events, error) == ([event], None)


@pytest.mark.parametrize("line", [b"*\r\n", b"!!!!\r\n"])
def test_failed_sasl_exchange_must_be_answered_err(line: bytes) -> None:
    for answer in (Ok("in"), SaslChallenge(b"more")):
        server = _in_auth()
        server.receive_data(line)
        server.next_event()
        with pytest.raises(LocalProtocolError) as info:
            server.send(answer)
        assert info.value.reason == "must-err"
    server = _in_auth()
    server.receive_data(line + b"AUTH PLAIN =\r\n")
    server.next_event()
    assert server.send(Err("failed")) == b"-ERR failed\r\n"
    assert server.our_state is State.AUTHORIZATION
    # As if AUTH had never been issued (RFC 5034 section 4): a new one works.
    assert server.next_event() == Auth("PLAIN", b"")
    assert server.send(Ok()) == b"+OK\r\n"
    assert server.our_state is State.TRANSACTION


def test_sasl_line_limit() -> None:
    line = b"QUFB" * 100 + b"\r\n"  # 402 octets: over the command limit, fine for SASL
    events, error = feed_three_ways(_in_auth, line, respond=answer_generically)
    assert (events, error) == ([SaslResponse(b"AAA" * 100)], None)
    _, error = feed_three_ways(lambda: _in_auth(max_sasl_line_length=401), line)
    # The line may hold credentials: the error keeps none of it (docs/architecture.md, invariant 7).
    assert error == ErrorInfo(
        RemoteProtocolError, "line-too-long", "AUTHORIZATION", b"<SASL response>"
    )


# ======================================================================================
# Line limits
# ======================================================================================


def test_command_of_255_octets_is_accepted() -> None:
    line = b"USER " + b"u" * (255 - 7) + b"\r\n"
    events, error = feed_three_ways(server_after_greeting, line, respond=answer_generically)
    assert (events, error) == ([User("u" * 248)], None)


@pytest.mark.parametrize(
    "data",
    [
        b"USER " + b"u" * 249 + b"\r\n",  # 256 octets
        b"USER " + b"u" * 250 + b"\n",
        b"X" * 5000,  # no line end at all
        b"NOOP\r\n" + b"X" * 300 + b"\r\n",  # the second line
    ],
)
def test_command_over_255_octets(data: bytes) -> None:
    events, error = feed_three_ways(server_after_greeting, data, respond=answer_generically)
    last_line = data.split(b"\n")[-2 if data.endswith(b"\n") else -1]
    assert error == ErrorInfo(
        RemoteProtocolError, "line-too-long", "AUTHORIZATION", (last_line + b"\n")[:255]
    )
    assert events == ([UnknownCommand("NOOP", b"NOOP", "wrong-state")] if b"NOOP" in data else [])


def test_command_limit_is_configurable() -> None:
    _, error = feed_three_ways(lambda: server_after_greeting(max_command_length=6), b"CAPA1\r\n")
    assert error is not None and error.reason == "line-too-long"


def test_after_the_client_broke_the_protocol() -> None:
    server = server_after_greeting()
    server.receive_data(b"X" * 300)
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    assert server.their_state is State.ERROR
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.reason == "peer-error"
    assert server.send_failure("line too long") == b"-ERR line too long\r\n"
    assert server.our_state is State.CLOSED
    with pytest.raises(LocalProtocolError) as error:
        server.send_failure("again")
    assert error.value.reason == "wrong-state"


def test_send_failure_only_after_a_client_error() -> None:
    server = server_after_greeting()
    with pytest.raises(LocalProtocolError) as info:
        server.send_failure("no")
    assert info.value.reason == "wrong-state"


def test_send_failure_not_inside_a_body() -> None:
    server = server_logged_in()
    server.receive_data(b"RETR 1\r\n")
    server.next_event()
    server.send(Ok())
    server.receive_data(b"Y" * 300)
    assert server.next_event() is PAUSED  # nothing is read while the answer is open
    server = server_logged_in(max_buffer_size=10)
    server.receive_data(b"LIST\r\n")
    server.next_event()
    server.send(Ok())
    server.receive_data(b"Y" * 20)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"Y")  # the client broke the protocol while the body is open
    with pytest.raises(LocalProtocolError) as info:
        server.send_failure("x")  # the body must be finished first
    assert info.value.reason == "wrong-state"


def test_buffer_limit() -> None:
    server = server_after_greeting(max_buffer_size=8)
    server.receive_data(b"NOOP\r\nNO")
    server.receive_data(b"OP\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(b"NOOP\r\n")
    assert info.value.reason == "buffer-full"


# ======================================================================================
# STLS
# ======================================================================================


def test_stls() -> None:
    server = server_after_greeting()
    server.receive_data(b"STLS\r\n")
    assert server.next_event() == Stls()
    assert server.send(Ok("Begin TLS negotiation")) == b"+OK Begin TLS negotiation\r\n"
    assert server.tls_pending and not server.tls_active
    assert server.next_event() is PAUSED
    server.start_tls()
    assert server.tls_active and not server.tls_pending
    assert server.our_state is State.AUTHORIZATION
    server.receive_data(b"CAPA\r\n")
    assert server.next_event() == Capa()


def test_commands_pipelined_behind_stls_are_an_injection() -> None:
    # CVE-2011-0411: "STLS\r\nUSER x\r\n" in one segment.
    server = server_after_greeting()
    server.receive_data(b"STLS\r\nUSER evil\r\n")
    assert server.next_event() == Stls()
    server.send(Ok())
    assert server.next_event() is PAUSED  # the injected line is never read
    assert server.buffered == len(b"USER evil\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        server.start_tls()
    assert (info.value.reason, info.value.state) == ("stls-injection", "AUTHORIZATION")
    assert server.their_state is State.ERROR


def test_start_tls_without_stls() -> None:
    server = server_after_greeting()
    with pytest.raises(LocalProtocolError) as info:
        server.start_tls()
    assert info.value.reason == "no-stls"
    server = server_after_greeting()
    server.receive_data(b"STLS\r\n")
    server.next_event()
    server.send(Err("not now"))
    with pytest.raises(LocalProtocolError):
        server.start_tls()


def test_utf8() -> None:
    server = server_after_greeting()
    server.receive_data(b"UTF8\r\n")
    assert server.next_event() == Utf8()
    assert not server.utf8
    server.send(Ok())
    assert server.utf8


# ======================================================================================
# One command at a time (RFC 2449 section 6.6)
# ======================================================================================


def test_pipelined_commands_are_read_in_turn() -> None:
    server = server_logged_in()
    server.receive_data(b"STAT\r\nLIST\r\nRETR 1\r\nNOOP\r\n")
    assert server.next_event() == Stat()
    assert server.current_command == Stat()
    assert server.next_event() is PAUSED
    server.send(Ok("1 3"))
    assert server.next_event() == List()
    server.send(Ok())
    assert server.next_event() is PAUSED  # the body is still open
    server.send(Data(b"1 3\r\n"))
    server.send(EndOfResponse())
    assert server.next_event() == Retr(1)
    server.send(Err("no such message"))
    assert server.next_event() == Noop()
    server.send(Ok())
    assert server.next_event() is NEED_DATA
    assert drain(server) == []


# ======================================================================================
# Body encoding (RFC 1939 section 3): CRLF, dot-stuffing, the terminator
# ======================================================================================


def _body_wire(*chunks: bytes, command: bytes = b"RETR 1\r\n") -> bytes:
    server = server_logged_in()
    server.receive_data(command)
    assert server.next_event() is not NEED_DATA
    out = server.send(Ok())
    for chunk in chunks:
        out += server.send(Data(chunk))
    out += server.send(EndOfResponse())
    assert server.current_command is None
    return out[len(b"+OK\r\n") :]


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        ((), b".\r\n"),  # empty body
        ((b"",), b".\r\n"),
        ((b"a\r\n",), b"a\r\n.\r\n"),
        ((b"a",), b"a\r\n.\r\n"),  # the server adds the final CRLF
        ((b"a\n", b"b"), b"a\r\nb\r\n.\r\n"),
        ((b"a\nb\n",), b"a\r\nb\r\n.\r\n"),  # bare LF bodies
        ((b"a\r\nb\nc\r\n",), b"a\r\nb\r\nc\r\n.\r\n"),  # mixed
        ((b".\r\n",), b"..\r\n.\r\n"),  # a line that is only "."
        ((b".",), b"..\r\n.\r\n"),
        ((b"..x\n",), b"...x\r\n.\r\n"),
        ((b"a\n.\n..\n",), b"a\r\n..\r\n...\r\n.\r\n"),
        ((b"a\r", b"\nb\r\n"), b"a\r\nb\r\n.\r\n"),  # CR LF split: no CR CR LF
        ((b"a\r", b"\n", b".b\n"), b"a\r\n..b\r\n.\r\n"),
        ((b"a\r", b"\n.b\n"), b"a\r\n..b\r\n.\r\n"),
        ((b"a\n", b".b\n"), b"a\r\n..b\r\n.\r\n"),  # "." at a chunk boundary
        ((b"a\n", b".", b"b\n"), b"a\r\n..b\r\n.\r\n"),
        ((b"a\r",), b"a\r\n.\r\n"),  # a last lone CR is completed
        ((b"a\rb\n",), b"a\rb\r\n.\r\n"),  # a lone CR inside a line stays
        ((b"a\r", b"x\n"), b"a\rx\r\n.\r\n"),
        ((b"a\r\r\n",), b"a\r\r\n.\r\n"),
        ((b"x.\n",), b"x.\r\n.\r\n"),
        ((b"\n.",), b"\r\n..\r\n.\r\n"),
    ],
)
def test_body_encoding(chunks: tuple[bytes, ...], wire: bytes) -> None:
    assert _body_wire(*chunks) == wire
    # docs/architecture.md, invariant 5: the size is what the client gets back
    message = b"".join(chunks)
    body = wire[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
    if body.startswith(b".."):
        body = body[1:]
    assert message_size(message) == message_size(list(chunks)) == len(body)


def test_every_multiline_command_takes_a_body() -> None:
    for command in (b"LIST\r\n", b"UIDL\r\n", b"CAPA\r\n", b"RETR 1\r\n", b"TOP 1 0\r\n"):
        assert _body_wire(b"x\n", command=command) == b"x\r\n.\r\n"
    server = server_after_greeting()
    server.receive_data(b"AUTH\r\n")
    server.next_event()
    assert server.send(Ok()) + server.send(Data(b"PLAIN")) + server.send(EndOfResponse()) == (
        b"+OK\r\nPLAIN\r\n.\r\n"
    )
    assert server.our_state is State.AUTHORIZATION  # a bare AUTH logs nobody in


def test_single_line_commands_take_no_body() -> None:
    for command in (b"LIST 1\r\n", b"UIDL 1\r\n", b"STAT\r\n", b"DELE 1\r\n"):
        server = server_logged_in()
        server.receive_data(command)
        server.next_event()
        server.send(Ok())
        assert server.current_command is None


def test_encoded_body_is_bytes() -> None:
    server = server_logged_in()
    server.receive_data(b"RETR 1\r\n")
    server.next_event()
    server.send(Ok())
    for chunk in (b"a\n", b"b", b".\r", b"\n"):
        assert type(server.send(Data(chunk))) is bytes
    assert server.send(EndOfResponse()) == b".\r\n"
