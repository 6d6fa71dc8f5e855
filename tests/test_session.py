"""ServerSession: the server's POP3 semantics, driven against a real ClientConnection."""

from __future__ import annotations

import pytest

import pop3_sansio as p
from helpers import MESSAGES, FakeBackend


def _random(n: int) -> bytes:
    return bytes(range(1, n + 1))


class Link:
    """A ClientConnection and a ServerSession joined without sockets."""

    def __init__(self, backend: FakeBackend | None = None, **options: object) -> None:
        options.setdefault("allow_plaintext", True)
        self.backend = backend or FakeBackend()
        self.session = p.ServerSession(**options)  # type: ignore[arg-type]
        self.client = p.ClientConnection(tls=bool(options.get("tls", False)))
        self.last: p.Request | None = None
        greeting = self.pump(b"")
        assert isinstance(greeting[0], p.Greeting | p.Err)
        self.greeting = greeting[0]

    def pump(self, wire: bytes) -> list[p.Event]:
        if wire:
            self.session.receive_data(wire)
        self.last = self.backend.serve(self.session)
        self.client.receive_data(self.session.data_to_send())
        events: list[p.Event] = []
        while (event := self.client.next_event()) is not p.NEED_DATA:
            events.append(event)
        return events

    def do(self, *commands: p.Command) -> list[p.Event]:
        return self.pump(b"".join(self.client.send(c) for c in commands))

    def login(self) -> None:
        events = self.do(p.User("alice"), p.Pass("secret"))
        assert isinstance(events[-1], p.Ok), events


def body(events: list[p.Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, p.Data))


# --- AUTHORIZATION ---------------------------------------------------------------


def test_greeting_carries_the_apop_timestamp() -> None:
    link = Link(apop_timestamp="<1.2@host>", greeting="hello")
    assert link.greeting == p.Greeting("hello <1.2@host>", None, "<1.2@host>")


def test_user_pass_opens_the_maildrop() -> None:
    link = Link()
    events = link.do(p.User("alice"), p.Pass("secret"))
    size = sum(p.message_size(m) for m in MESSAGES)
    assert events == [p.Ok("send PASS"), p.Ok(f"maildrop has 3 messages ({size} octets)")]
    assert link.session.state is p.State.TRANSACTION
    assert link.session.username == "alice"
    assert link.client.our_state is p.State.TRANSACTION


def test_unknown_user_gets_ok_to_user_and_auth_error_after_pass() -> None:
    # RFC 1939 section 13: -ERR to USER would reveal which names exist.
    link = Link()
    events = link.do(p.User("mallory"), p.Pass("x"))
    assert events[0] == p.Ok("send PASS")
    assert isinstance(events[1], p.Err) and events[1].code == p.AUTH
    assert link.session.state is p.State.AUTHORIZATION
    assert link.session.username is None


def test_wrong_password_then_right_one() -> None:
    link = Link()
    assert isinstance(link.do(p.User("alice"), p.Pass("nope"))[1], p.Err)
    link.login()


def test_too_many_failures_close_the_session() -> None:
    link = Link(max_failed_logins=2)
    link.do(p.User("alice"), p.Pass("a"))
    events = link.do(p.User("alice"), p.Pass("b"))
    assert isinstance(events[1], p.Err)
    assert link.last == p.CloseConnection("too-many-failures")
    # The close is repeated, never anything else.
    assert link.session.next_request() == p.CloseConnection("too-many-failures")


def test_plaintext_refused_without_tls() -> None:
    link = Link(allow_plaintext=False)
    events = link.do(p.User("alice"))
    assert isinstance(events[0], p.Err) and events[0].code == p.AUTH
    caps = p.Capabilities.parse(body(link.do(p.Capa())))
    assert not caps.user and caps.sasl == ()
    events = link.do(p.Auth("PLAIN", b"\0alice\0secret"))
    assert isinstance(events[0], p.Err) and events[0].code == p.AUTH


def test_plaintext_allowed_inside_tls() -> None:
    link = Link(allow_plaintext=False, tls=True)
    caps = p.Capabilities.parse(body(link.do(p.Capa())))
    assert caps.user and caps.sasl == ("PLAIN", "LOGIN") and not caps.stls
    link.login()


def test_user_pass_disabled() -> None:
    link = Link(user_pass=False)
    events = link.do(p.User("alice"))
    assert isinstance(events[0], p.Err)
    assert "USER" not in p.Capabilities.parse(body(link.do(p.Capa())))


def test_pass_without_user_is_refused() -> None:
    link = Link()
    link.session.receive_data(b"PASS secret\r\n")
    link.backend.serve(link.session)
    assert link.session.data_to_send() == b"-ERR command not valid in this state: PASS\r\n"


def test_apop() -> None:
    link = Link(apop_timestamp="<1896.697170952@dbc.mtview.ca.us>")
    link.backend.users["mrose"] = "tanstaaf"
    events = link.do(p.Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"))
    assert isinstance(events[0], p.Ok)
    assert link.session.username == "mrose"


@pytest.mark.parametrize(("user", "digest"), [("mrose", "0" * 32), ("nobody", "0" * 32)])
def test_apop_bad_digest_or_user(user: str, digest: str) -> None:
    link = Link(apop_timestamp="<1@x>")
    link.backend.users["mrose"] = "tanstaaf"
    events = link.do(p.Apop(user, digest))
    assert isinstance(events[0], p.Err) and events[0].code == p.AUTH


def test_apop_disabled_without_timestamp() -> None:
    link = Link()
    assert link.do(p.Apop("alice", "0" * 32)) == [p.Err("APOP not supported")]


def test_lock_held_elsewhere_is_in_use() -> None:
    link = Link(FakeBackend(locked=True))
    events = link.do(p.User("alice"), p.Pass("secret"))
    assert isinstance(events[1], p.Err) and events[1].code == p.IN_USE
    assert link.session.state is p.State.AUTHORIZATION


def test_maildrop_that_cannot_open_is_sys_temp() -> None:
    link = Link(FakeBackend(open_fails=True))
    events = link.do(p.User("alice"), p.Pass("secret"))
    assert isinstance(events[1], p.Err) and events[1].code == p.SYS_TEMP


# --- SASL ----------------------------------------------------------------------------


def sasl_login(link: Link, mech: p.ClientMechanism, *, initial: bool = True) -> list[p.Event]:
    """Run one AUTH exchange from the client side; return every event."""
    first = mech.initial_response() if initial else None
    events = link.do(p.Auth(mech.name, first))
    seen = list(events)
    while isinstance(events[-1], p.SaslChallenge):
        challenge = events[-1].data
        assert challenge is not None
        events = link.pump(link.client.send(p.SaslResponse(mech.respond(challenge))))
        seen += events
    return seen


@pytest.mark.parametrize(
    "mech",
    [
        p.PlainClient("alice", "secret"),
        p.LoginClient("alice", "secret"),
        p.CramMD5Client("alice", "secret"),
        p.ScramSHA1Client("alice", "secret", "clientnonce1"),
        p.ScramSHA256Client("alice", "secret", "clientnonce2"),
    ],
    ids=lambda m: m.name,
)
def test_sasl_password_mechanisms(mech: p.ClientMechanism) -> None:
    link = Link(
        mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"],
        random_bytes=_random,
    )
    events = sasl_login(link, mech)
    assert isinstance(events[-1], p.Ok), events
    assert mech.is_complete
    assert link.session.state is p.State.TRANSACTION


@pytest.mark.parametrize(
    "mech",
    [
        p.PlainClient("alice", "wrong"),
        p.CramMD5Client("alice", "wrong"),
        p.CramMD5Client("nobody", "wrong"),
        p.ScramSHA256Client("nobody", "secret", "clientnonce"),
    ],
    ids=lambda m: m.name,
)
def test_sasl_failures_are_auth_errors(mech: p.ClientMechanism) -> None:
    link = Link(mechanisms=["SCRAM-SHA-256", "CRAM-MD5", "PLAIN"], random_bytes=_random)
    events = sasl_login(link, mech)
    assert isinstance(events[-1], p.Err) and events[-1].code == p.AUTH
    assert link.session.state is p.State.AUTHORIZATION
    link.login()  # RFC 5034 section 4: as if AUTH was never issued


def test_scram_wrong_password_is_refused() -> None:
    link = Link(mechanisms=["SCRAM-SHA-256"], random_bytes=_random)
    mech = p.ScramSHA256Client("alice", "wrong", "cnonce")
    events = link.do(p.Auth(mech.name, mech.initial_response()))
    challenge = events[-1]
    assert isinstance(challenge, p.SaslChallenge) and challenge.data is not None
    events = link.pump(link.client.send(p.SaslResponse(mech.respond(challenge.data))))
    assert isinstance(events[-1], p.Err) and events[-1].code == p.AUTH


def test_plain_without_initial_response_gets_an_empty_challenge() -> None:
    link = Link()
    events = sasl_login(link, p.PlainClient("alice", "secret"), initial=False)
    assert events[0] == p.SaslChallenge(b"")
    assert isinstance(events[-1], p.Ok)


@pytest.mark.parametrize(
    "mech", [p.XOAuth2Client("alice", "tok-1"), p.OAuthBearerClient("tok-1", authzid="alice")]
)
def test_token_mechanisms(mech: p.ClientMechanism) -> None:
    link = Link(mechanisms=["XOAUTH2", "OAUTHBEARER"])
    events = sasl_login(link, mech)
    assert isinstance(events[-1], p.Ok)


def test_bad_token_gets_error_challenge_then_err() -> None:
    link = Link(mechanisms=["XOAUTH2"])
    events = sasl_login(link, p.XOAuth2Client("alice", "tok-2"))
    assert isinstance(events[0], p.SaslChallenge)  # the JSON error (RFC 7628 section 3.2.2)
    assert isinstance(events[-1], p.Err) and events[-1].code == p.AUTH


def test_authzid_for_another_user_is_refused() -> None:
    link = Link()
    link.backend.users["bob"] = "pw"
    events = sasl_login(link, p.PlainClient("alice", "secret", authzid="bob"))
    assert isinstance(events[-1], p.Err) and events[-1].code == p.AUTH


def test_sasl_cancel() -> None:
    link = Link()
    link.do(p.Auth("LOGIN"))
    events = link.pump(link.client.send(p.SaslCancel()))
    assert events == [p.Err("authentication cancelled")]
    link.login()


def test_undecodable_sasl_response_fails_the_exchange() -> None:
    link = Link()
    link.do(p.Auth("LOGIN"))
    link.session.receive_data(b"not base64!\r\n")
    link.backend.serve(link.session)
    assert link.session.data_to_send() == b"-ERR [AUTH] malformed SASL response\r\n"


def test_unknown_mechanism_and_initial_response_to_server_first() -> None:
    link = Link(mechanisms=["CRAM-MD5"], random_bytes=_random)
    assert link.do(p.Auth("GSSAPI")) == [p.Err("unsupported mechanism GSSAPI")]
    assert link.do(p.Auth("CRAM-MD5", b"x")) == [p.Err("CRAM-MD5 takes no initial response")]


def test_bare_auth_lists_mechanisms() -> None:
    link = Link(mechanisms=["CRAM-MD5", "PLAIN"], random_bytes=_random)
    assert body(link.do(p.Auth())) == b"CRAM-MD5\r\nPLAIN\r\n"


def test_mechanism_configuration_is_checked() -> None:
    with pytest.raises(p.LocalProtocolError):
        p.ServerSession(mechanisms=["NOPE"])
    with pytest.raises(p.LocalProtocolError, match="random_bytes"):
        p.ServerSession(mechanisms=["CRAM-MD5"])


# --- CAPA, STLS, UTF8 ---------------------------------------------------------------


def test_capa_in_both_states() -> None:
    link = Link(
        starttls=True,
        implementation="pop3-sansio test",
        login_delay=60,
        expire=30,
    )
    before = p.Capabilities.parse(body(link.do(p.Capa())))
    assert before.stls and before.user and before.pipelining and before.top and before.uidl
    assert before.resp_codes and before.auth_resp_code and before.utf8
    assert before.login_delay == (60, False) and before.expire == (30, False)
    assert before.implementation == "pop3-sansio test"
    link.login()
    after = p.Capabilities.parse(body(link.do(p.Capa())))
    # RFC 2449 section 5: what AUTHORIZATION offers is announced in both states.
    assert after.tags == before.tags


def test_stls_then_tls_established() -> None:
    link = Link(starttls=True, allow_plaintext=False)
    events = link.do(p.Stls())
    assert events == [p.Ok("begin TLS negotiation")]
    assert link.last == p.StartTls()
    link.client.start_tls()
    link.session.tls_established()
    caps = p.Capabilities.parse(body(link.do(p.Capa())))
    assert not caps.stls and caps.user
    link.login()


def test_stls_with_pipelined_plaintext_closes() -> None:
    # CVE-2011-0411: a command injected behind STLS must never run inside TLS.
    link = Link(starttls=True)
    link.session.receive_data(b"STLS\r\nUSER alice\r\n")
    assert link.backend.serve(link.session) == p.CloseConnection("protocol-error")
    assert link.session.data_to_send() == b"+OK begin TLS negotiation\r\n"


def test_stls_unavailable_or_inside_tls() -> None:
    assert Link().do(p.Stls()) == [p.Err("STLS not available")]
    link = Link(starttls=True, tls=True)
    link.session.receive_data(b"STLS\r\n")
    link.backend.serve(link.session)
    assert link.session.data_to_send() == b"-ERR TLS is already active: STLS\r\n"


def test_utf8() -> None:
    link = Link()
    assert link.do(p.Utf8()) == [p.Ok("UTF8 enabled")]
    assert link.client.utf8 and link.session.connection.utf8


# --- TRANSACTION ---------------------------------------------------------------------


def test_stat_list_uidl_and_deletion_marks() -> None:
    link = Link()
    link.login()
    sizes = [p.message_size(m) for m in MESSAGES]
    assert link.do(p.Stat()) == [p.Ok(f"3 {sum(sizes)}")]
    listing = body(link.do(p.List()))
    assert p.parse_scan_listing(listing) == {1: sizes[0], 2: sizes[1], 3: sizes[2]}
    assert p.parse_uid_listing(body(link.do(p.Uidl()))) == {1: "uid0", 2: "uid1", 3: "uid2"}
    assert link.do(p.Dele(2)) == [p.Ok("message 2 deleted")]
    assert link.do(p.Dele(2)) == [p.Err("message 2 already deleted")]
    assert link.do(p.Stat()) == [p.Ok(f"2 {sizes[0] + sizes[2]}")]
    assert p.parse_scan_listing(body(link.do(p.List()))) == {1: sizes[0], 3: sizes[2]}
    assert p.parse_uid_listing(body(link.do(p.Uidl()))) == {1: "uid0", 3: "uid2"}
    assert link.do(p.List(2)) == [p.Err("message 2 already deleted")]
    assert link.do(p.Uidl(2)) == [p.Err("message 2 already deleted")]
    assert link.do(p.Retr(2)) == [p.Err("message 2 already deleted")]
    assert link.do(p.List(3)) == [p.Ok(f"3 {sizes[2]}")]
    assert link.do(p.Uidl(3)) == [p.Ok("3 uid2")]
    assert link.do(p.List(4)) == [p.Err("no such message, only 3 messages in maildrop")]
    assert link.do(p.Rset())[0] == p.Ok(f"maildrop has 3 messages ({sum(sizes)} octets)")
    assert link.session.deleted == frozenset()
    assert link.do(p.Noop()) == [p.Ok()]


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
@pytest.mark.parametrize("msg", [1, 2, 3])
def test_retr_is_byte_exact_and_matches_its_size(msg: int, chunk: int) -> None:
    link = Link(FakeBackend(chunk=chunk))
    link.login()
    events = link.do(p.Retr(msg))
    data = body(events)
    expected = MESSAGES[msg - 1].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert data == expected
    assert events[0] == p.Ok(f"{len(data)} octets")  # docs/architecture.md, invariant 5
    assert isinstance(events[-1], p.EndOfResponse)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (0, b"Subject: two\r\nX: y\r\n\r\n"),
        (2, b"Subject: two\r\nX: y\r\n\r\nline 1\r\n.dot line\r\n"),
        (99, b"Subject: two\r\nX: y\r\n\r\nline 1\r\n.dot line\r\nline 3\r\nline 4\r\n"),
    ],
)
def test_top(lines: int, expected: bytes) -> None:
    link = Link(FakeBackend(chunk=5))
    link.login()
    events = link.do(p.Top(2, lines))
    assert events[0] == p.Ok("top of message follows")
    assert body(events) == expected


def test_top_stops_reading_early() -> None:
    big = b"Subject: big\n\n" + b"x" * 70 + b"\n" * 10_000
    backend = FakeBackend(messages=[big], chunk=100)
    link = Link(backend)
    link.login()
    assert body(link.do(p.Top(1, 0))) == b"Subject: big\r\n\r\n"


def test_unreadable_message_before_data_is_sys_temp() -> None:
    link = Link(FakeBackend(read_fails_after=0))
    link.login()
    events = link.do(p.Retr(1))
    assert isinstance(events[0], p.Err) and events[0].code == p.SYS_TEMP
    assert link.do(p.Noop()) == [p.Ok()]


def test_read_error_mid_message_closes() -> None:
    link = Link(FakeBackend(read_fails_after=1))
    link.login()
    link.session.receive_data(link.client.send(p.Retr(2)))
    assert link.backend.serve(link.session) == p.CloseConnection("read-error")
    link.client.receive_data(link.session.data_to_send())
    link.client.receive_data(b"")
    assert isinstance(link.client.next_event(), p.Ok)
    assert isinstance(link.client.next_event(), p.Data)
    with pytest.raises(p.RemoteProtocolError) as info:
        link.client.next_event()
    assert info.value.reason == "truncated"


def test_wrong_state_and_unknown_commands() -> None:
    link = Link()
    link.session.receive_data(b"STAT\r\nXYZZY\r\nRETR x\r\n")
    link.backend.serve(link.session)
    assert link.session.data_to_send() == (
        b"-ERR command not valid in this state: STAT\r\n"
        b"-ERR unknown command: XYZZY\r\n"
        b"-ERR syntax error: RETR\r\n"
    )


# --- QUIT and UPDATE ---------------------------------------------------------------------


def test_quit_commits_marked_deletions_only() -> None:
    backend = FakeBackend()
    link = Link(backend)
    link.login()
    link.do(p.Dele(1), p.Dele(3), p.Rset(), p.Dele(3))
    events = link.do(p.Quit())
    assert events == [p.Ok("POP3 server signing off (1 messages deleted)")]
    assert backend.committed == [(3,)]
    assert isinstance(backend.requests[-2], p.CommitDeletions)
    assert backend.requests[-2].uids == ("uid2",)
    assert link.last == p.CloseConnection("quit")


def test_quit_without_deletions_commits_nothing() -> None:
    backend = FakeBackend()
    link = Link(backend)
    link.login()
    assert link.do(p.Quit()) == [p.Ok("POP3 server signing off")]
    assert backend.committed == []


def test_quit_in_authorization_never_enters_update() -> None:
    backend = FakeBackend()
    link = Link(backend)
    assert link.do(p.Quit()) == [p.Ok("POP3 server signing off")]
    assert backend.committed == []
    assert link.last == p.CloseConnection("quit")


def test_failed_commit_says_which_remain() -> None:
    backend = FakeBackend(commit_fails=(2,))
    link = Link(backend)
    link.login()
    link.do(p.Dele(1), p.Dele(2))
    events = link.do(p.Quit())
    assert events == [p.Err("some deleted messages not removed: 2", p.SYS_TEMP)]
    assert link.client.our_state is p.State.CLOSED


@pytest.mark.parametrize("ending", [b"", b"QU"])
def test_client_going_away_deletes_nothing(ending: bytes) -> None:
    # RFC 1939 section 6, docs/architecture.md, invariant 4: no QUIT, no UPDATE.
    backend = FakeBackend()
    link = Link(backend)
    link.login()
    link.do(p.Dele(1))
    if ending:
        link.session.receive_data(ending)
    link.session.receive_data(b"")
    assert backend.serve(link.session) == p.CloseConnection("client-closed")
    assert backend.committed == []


def test_overlong_command_gets_err_and_close() -> None:
    link = Link()
    link.session.receive_data(b"NOOP" + b" " * 300)
    assert link.backend.serve(link.session) == p.CloseConnection("protocol-error")
    assert link.session.data_to_send().startswith(b"-ERR line longer than 255")


def test_flood_beyond_the_buffer_cap_closes() -> None:
    conn = p.ServerConnection(max_buffer_size=10)
    session = p.ServerSession(connection=conn, allow_plaintext=True)
    session.data_to_send()
    session.receive_data(b"NOOP\r\n" * 3)
    session.receive_data(b"NOOP\r\n")  # refused: 18 octets already wait
    session.receive_data(b"NOOP\r\n")  # ignored after the failure
    assert session.next_request() == p.CloseConnection("protocol-error")
    assert session.data_to_send() == b"-ERR too much data received without being read\r\n"


def test_refused_session() -> None:
    session = p.ServerSession(refuse="too many sessions")
    assert session.data_to_send() == b"-ERR [SYS/TEMP] too many sessions\r\n"
    assert session.next_request() == p.CloseConnection("refused")


# --- misuse ----------------------------------------------------------------------------


def test_answers_must_match_the_request() -> None:
    link = Link()
    with pytest.raises(p.LocalProtocolError) as info:
        link.session.password_checked(True)
    assert info.value.reason == "no-request"
    with pytest.raises(p.LocalProtocolError):
        link.session.message_data(b"x")
    link.session.receive_data(b"USER alice\r\nPASS secret\r\n")
    request = link.session.next_request()
    assert isinstance(request, p.CheckPassword)
    assert request.username == "alice" and request.password == "secret"
    assert "secret" not in repr(request)
    with pytest.raises(p.LocalProtocolError) as info:
        link.session.next_request()
    assert info.value.reason == "request-pending"


@pytest.mark.parametrize(
    ("size", "uid"), [(-1, "a"), (1, ""), (1, "a b"), (1, "x" * 71), (1, "é"), (True, "a")]
)
def test_message_info_is_validated(size: int, uid: str) -> None:
    with pytest.raises(p.LocalProtocolError):
        p.MessageInfo(size, uid)


def test_empty_maildrop() -> None:
    link = Link(FakeBackend(messages=[]))
    link.login()
    assert link.do(p.Stat()) == [p.Ok("0 0")]
    assert link.do(p.List()) == [p.Ok("0 messages (0 octets)"), p.EndOfResponse()]
    assert link.do(p.Uidl()) == [p.Ok("unique-id listing follows"), p.EndOfResponse()]
    assert link.session.messages == ()


def test_empty_chunks_from_the_backend_send_nothing() -> None:
    link = Link()
    link.login()
    link.session.receive_data(link.client.send(p.Top(1, 0)))
    request = link.session.next_request()
    assert isinstance(request, p.ReadMessage) and request.lines == 0
    assert link.session.message_data(b"")
    assert link.session.data_to_send() == b"+OK top of message follows\r\n"
    assert not link.session.message_data(MESSAGES[0])
    link.session.message_end()
    assert link.session.data_to_send() == b"Subject: one\r\n\r\n.\r\n"


def test_garbage_keywords_are_not_echoed() -> None:
    # A TLS ClientHello sent to a plaintext port: the -ERR must not repeat it.
    link = Link()
    link.session.receive_data(b"\x16\x03\x01\x00HELLO\x00x\r\n" + b"A" * 50 + b"\r\n")
    link.backend.serve(link.session)
    assert link.session.data_to_send() == b"-ERR syntax error\r\n-ERR unknown command\r\n"


@pytest.mark.parametrize(
    ("before", "line", "kept"),
    [
        (b"USER alice\r\n", b"PASS " + b"s" * 300, b"PASS <redacted>"),
        (b"", b"AUTH PLAIN " + b"A" * 300, b"AUTH <redacted>"),
        (b"", b"NOOP" + b" " * 300, b"NOOP" + b" " * 251),
    ],
)
def test_overlong_lines_keep_no_secret_in_the_error(
    before: bytes, line: bytes, kept: bytes
) -> None:
    conn = p.ServerConnection()
    conn.send(p.Greeting("hi"))
    if before:
        conn.receive_data(before)
        assert isinstance(conn.next_event(), p.User)
        conn.send(p.Ok())
    conn.receive_data(line)
    with pytest.raises(p.RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.line == kept
    assert b"sss" not in repr(info.value).encode() and b"AAA" not in (info.value.line or b"")


def test_an_overlong_sasl_line_keeps_no_secret_in_the_error() -> None:
    conn = p.ServerConnection(max_sasl_line_length=64)
    conn.send(p.Greeting("hi"))
    conn.receive_data(b"AUTH PLAIN\r\n")
    assert isinstance(conn.next_event(), p.Auth)
    conn.send(p.SaslChallenge(b""))
    conn.receive_data(b"A" * 100)
    with pytest.raises(p.RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.line == b"<SASL response>"


def _scram_server_first(link: Link, user: str) -> bytes:
    mech = p.ScramSHA256Client(user, "wrong password", "clientnonce")
    events = link.do(p.Auth(mech.name, mech.initial_response()))
    assert len(events) == 1 and isinstance(events[0], p.SaslChallenge), events
    assert events[0].data is not None
    return events[0].data


def test_scram_does_not_tell_which_users_exist() -> None:
    link = Link(mechanisms=["SCRAM-SHA-256"], random_bytes=_random, max_failed_logins=9)
    known = _scram_server_first(link, "alice")
    link.pump(link.client.send(p.SaslCancel()))
    unknown = _scram_server_first(link, "nobody")
    link.pump(link.client.send(p.SaslCancel()))
    again = _scram_server_first(link, "alice")
    link.pump(link.client.send(p.SaslCancel()))

    def salt_and_rounds(server_first: bytes) -> tuple[bytes, bytes]:
        fields = dict(part.split(b"=", 1) for part in server_first.split(b","))
        return fields[b"s"], fields[b"i"]

    # An unknown user gets a challenge like a known one (the exchange fails
    # only at the end), with the same iteration count; a known user's salt
    # is stable, as a stored salt would be.
    assert salt_and_rounds(unknown)[1] == salt_and_rounds(known)[1] == b"4096"
    assert salt_and_rounds(again)[0] == salt_and_rounds(known)[0]
    assert salt_and_rounds(unknown)[0] != salt_and_rounds(known)[0]
