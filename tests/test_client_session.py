"""ClientSession (the client's high-level operations) against ServerSession, without sockets."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

import pop3_sansio as p
from helpers import MESSAGES, FakeBackend, crlf


class Wire:
    """Runs ClientSession operations against a ServerSession answered by a FakeBackend."""

    def __init__(
        self,
        backend: FakeBackend | None = None,
        *,
        allow_plaintext_login: bool = True,
        client_tls: bool = False,
        random: bool = True,
        **options: Any,
    ) -> None:
        options.setdefault("allow_plaintext", True)
        options.setdefault("random_bytes", lambda n: bytes(n))
        self.backend = backend or FakeBackend()
        self.server = p.ServerSession(**options)
        self.client = p.ClientSession(
            tls=client_tls,
            allow_plaintext_login=allow_plaintext_login,
            random_bytes=(lambda n: b"\x07" * n) if random else None,
        )
        self.sent: list[bytes] = []
        self.tls_started = 0
        self.closed: p.CloseConnection | None = None
        self._serve()

    def _serve(self) -> None:
        last = self.backend.serve(self.server)
        if isinstance(last, p.CloseConnection):
            self.closed = last

    def run(self, op: Generator[p.Instruction, None, Any]) -> tuple[Any, list[bytes]]:
        chunks: list[bytes] = []
        try:
            instruction = next(op)
            while True:
                if isinstance(instruction, p.Write):
                    self.sent.append(instruction.data)
                    self.server.receive_data(instruction.data)
                    self._serve()
                elif instruction is p.READ:
                    data = self.server.data_to_send()
                    if not data:
                        assert self.closed is not None, "client waits for nothing: deadlock"
                    self.client.receive_data(data)
                elif isinstance(instruction, p.StartTls):
                    assert isinstance(self.backend.requests[-1], p.StartTls)
                    self.tls_started += 1
                    self.server.tls_established()
                    self._serve()
                else:
                    assert isinstance(instruction, p.Chunk)
                    chunks.append(instruction.data)
                instruction = op.send(None)
        except StopIteration as stop:
            return stop.value, chunks

    def result(self, op: Generator[p.Instruction, None, Any]) -> Any:
        return self.run(op)[0]


def test_start_reads_the_greeting() -> None:
    wire = Wire(apop_timestamp="<1@h>")
    greeting = wire.result(wire.client.start())
    assert greeting == p.Greeting("POP3 server ready <1@h>", None, "<1@h>")
    assert wire.client.greeting is greeting


def test_a_refusing_greeting_raises() -> None:
    wire = Wire(refuse="busy")
    with pytest.raises(p.TemporaryError) as info:
        wire.result(wire.client.start())
    assert info.value.code == p.SYS_TEMP and info.value.text == "busy"


def test_full_session() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    assert wire.result(wire.client.utf8()) == "UTF8 enabled"
    assert wire.result(wire.client.login("alice", "secret")).startswith("maildrop has 3")
    sizes = {i: p.message_size(m) for i, m in enumerate(MESSAGES, 1)}
    assert wire.result(wire.client.stat()) == (3, sum(sizes.values()))
    assert wire.result(wire.client.list()) == sizes
    assert wire.result(wire.client.list(2)) == {2: sizes[2]}
    assert wire.result(wire.client.uidl()) == {1: "uid0", 2: "uid1", 3: "uid2"}
    assert wire.result(wire.client.uidl(3)) == {3: "uid2"}
    _, chunks = wire.run(wire.client.retr(2))
    assert b"".join(chunks) == crlf(MESSAGES[1])
    _, chunks = wire.run(wire.client.top(2, 1))
    assert b"".join(chunks) == b"Subject: two\r\nX: y\r\n\r\nline 1\r\n"
    assert wire.result(wire.client.dele(1)) == "message 1 deleted"
    assert wire.result(wire.client.rset()).startswith("maildrop has 3")
    assert wire.result(wire.client.noop()) == ""
    wire.result(wire.client.dele(3))
    assert wire.result(wire.client.quit()).startswith("POP3 server signing off")
    assert wire.backend.committed == [(3,)]
    assert wire.result(wire.client.quit()) == ""  # already closed: nothing to send


def test_errors_carry_their_codes() -> None:
    wire = Wire(FakeBackend(locked=True))
    wire.result(wire.client.start())
    with pytest.raises(p.InUseError) as info:
        wire.result(wire.client.login("alice", "secret", mechanism="USER"))
    assert info.value.code == p.IN_USE and info.value.command == "PASS"
    assert "[IN-USE]" in str(info.value)


def test_retr_of_a_missing_message_is_a_plain_pop3_error() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    with pytest.raises(p.Pop3Error) as info:
        wire.run(wire.client.retr(9))
    assert type(info.value) is p.Pop3Error and info.value.code is None
    assert wire.sent[-1] == b"LIST 9\r\nRETR 9\r\n"  # the size, asked for in the same write
    assert wire.result(wire.client.noop()) == ""  # still in step: RETR's -ERR was read too


@pytest.mark.parametrize(
    ("mechanisms", "plaintext", "expected"),
    [
        (["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN"], False, b"AUTH SCRAM-SHA-256 "),
        (["SCRAM-SHA-1", "PLAIN"], True, b"AUTH SCRAM-SHA-1 "),
        (["CRAM-MD5", "PLAIN", "LOGIN"], True, b"AUTH PLAIN "),
        (["LOGIN", "CRAM-MD5"], True, b"AUTH LOGIN\r\n"),
        (["CRAM-MD5", "PLAIN"], False, b"AUTH CRAM-MD5\r\n"),
        ([], True, b"USER alice\r\n"),
    ],
)
def test_login_picks_the_strongest_safe_method(
    mechanisms: list[str], plaintext: bool, expected: bytes
) -> None:
    wire = Wire(mechanisms=mechanisms, allow_plaintext_login=plaintext)
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    assert wire.sent[1].startswith(expected)  # sent[0] is CAPA
    assert wire.server.state is p.State.TRANSACTION


def test_apop_is_used_on_an_insecure_link_and_password_never_sent() -> None:
    wire = Wire(mechanisms=["PLAIN"], allow_plaintext_login=False, apop_timestamp="<7@host>")
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    assert wire.sent[1].startswith(b"APOP alice ")
    assert not any(b"secret" in data for data in wire.sent)


def test_no_safe_method_is_an_auth_error_and_nothing_is_sent() -> None:
    wire = Wire(mechanisms=["PLAIN", "LOGIN"], allow_plaintext_login=False)
    wire.result(wire.client.start())
    with pytest.raises(p.AuthError, match="no authentication method"):
        wire.result(wire.client.login("alice", "secret"))
    assert wire.sent == [b"CAPA\r\n"]
    for forced in ("USER", "PLAIN"):
        with pytest.raises(p.AuthError, match="in the clear"):
            wire.result(wire.client.login("alice", "secret", mechanism=forced))
    assert wire.sent == [b"CAPA\r\n"]


def test_scram_is_skipped_without_randomness() -> None:
    wire = Wire(mechanisms=["SCRAM-SHA-256", "PLAIN"], random=False)
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    assert wire.sent[1].startswith(b"AUTH PLAIN ")


def test_wrong_password_raises_auth_error() -> None:
    wire = Wire(mechanisms=[])
    wire.result(wire.client.start())
    with pytest.raises(p.AuthError) as info:
        wire.result(wire.client.login("alice", "nope"))
    assert info.value.code == p.AUTH


def test_user_pass_without_pipelining_waits_for_user() -> None:
    wire = Wire(mechanisms=[])
    wire.result(wire.client.start())
    # A server without CAPA: the client must not pipeline (RFC 2449 section 6.6).
    wire.client._capa_known = True
    wire.client._capabilities = None
    wire.result(wire.client.login("alice", "secret"))
    assert wire.sent == [b"USER alice\r\n", b"PASS secret\r\n"]


def test_user_refused_stops_before_pass() -> None:
    wire = Wire(user_pass=False, mechanisms=[])
    wire.result(wire.client.start())
    wire.client._capa_known = True
    wire.client._capabilities = None
    with pytest.raises(p.AuthError) as info:
        wire.result(wire.client.login("alice", "secret", mechanism="USER"))
    assert info.value.command == "USER"
    assert wire.sent == [b"USER alice\r\n"]


def test_pipelined_user_refused() -> None:
    wire = Wire(user_pass=False, mechanisms=[])
    wire.result(wire.client.start())
    wire.client._capa_known = True
    wire.client._capabilities = p.Capabilities({"PIPELINING": ()})
    with pytest.raises(p.AuthError) as info:
        wire.result(wire.client.login("alice", "secret", mechanism="USER"))
    assert info.value.command == "USER"


def test_user_pass_needs_a_password() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    with pytest.raises(p.LocalProtocolError):
        wire.result(wire.client.login("alice", mechanism="USER"))


def test_apop_needs_a_timestamp() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    with pytest.raises(p.AuthError, match="APOP"):
        wire.result(wire.client.login("alice", "secret", mechanism="APOP"))


def test_token_login() -> None:
    wire = Wire(mechanisms=["XOAUTH2", "OAUTHBEARER"])
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", token="tok-1"))
    assert wire.sent[1].startswith(b"AUTH OAUTHBEARER ")


def test_auth_with_a_mechanism_object_and_a_long_initial_response() -> None:
    # RFC 5034 section 4: an initial response that does not fit in 255
    # octets goes after the server's empty challenge.
    wire = Wire(mechanisms=["XOAUTH2"])
    wire.backend.tokens["t" * 300] = "alice"
    wire.result(wire.client.start())
    wire.result(wire.client.auth(p.XOAuth2Client("alice", "t" * 300)))
    assert wire.sent[0] == b"AUTH XOAUTH2\r\n"
    assert wire.server.state is p.State.TRANSACTION


def test_undecodable_challenge_is_cancelled() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    client = wire.client
    op = client.auth("LOGIN", "alice", password="secret")
    assert isinstance(next(op), p.Write)
    assert next(op) is p.READ
    client.receive_data(b"+ !!notbase64\r\n")
    instruction = op.send(None)
    assert instruction == p.Write(b"*\r\n")
    assert op.send(None) is p.READ
    client.receive_data(b"-ERR cancelled\r\n")
    with pytest.raises(p.AuthError):
        op.send(None)


def test_forged_scram_server_is_cancelled_and_raises() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    client = wire.client
    op = client.auth("SCRAM-SHA-256", "alice", password="secret")
    first = next(op)
    assert isinstance(first, p.Write)
    assert next(op) is p.READ
    client.receive_data(b"+ " + p.b64encode(b"r=wrongnonce,s=QSXCR+Q6sek8bf92,i=4096") + b"\r\n")
    assert op.send(None) == p.Write(b"*\r\n")
    assert op.send(None) is p.READ
    client.receive_data(b"-ERR cancelled\r\n")
    with pytest.raises(p.RemoteProtocolError) as info:
        op.send(None)
    assert info.value.reason == "sasl-bad-nonce"
    assert client.connection.our_state is p.State.AUTHORIZATION  # still usable


def test_ok_before_scram_server_proof_is_refused() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    client = wire.client
    op = client.auth("SCRAM-SHA-256", "alice", password="secret")
    next(op)
    assert next(op) is p.READ
    client.receive_data(b"+OK welcome\r\n")
    with pytest.raises(p.RemoteProtocolError) as info:
        op.send(None)
    assert info.value.reason == "sasl-incomplete"


def test_starttls_upgrade_and_capabilities_reread() -> None:
    wire = Wire(starttls=True, allow_plaintext=False)
    wire.result(wire.client.start(starttls=True))
    assert wire.tls_started == 1
    assert wire.client.connection.tls_active
    caps = wire.result(wire.client.capa())
    assert caps is not None and not caps.stls and caps.user
    assert wire.sent.count(b"CAPA\r\n") == 2  # RFC 2595 section 4: re-read after TLS


def test_starttls_refused_when_not_offered() -> None:
    # A man in the middle removing STLS must not downgrade the session.
    wire = Wire()
    with pytest.raises(p.Pop3Error, match="STLS"):
        wire.result(wire.client.start(starttls=True))
    assert wire.tls_started == 0


def test_capa_not_supported_is_none() -> None:
    client = p.ClientSession()
    op = client.capa()
    client.receive_data(b"+OK hi\r\n")
    client.connection.next_event()
    assert op.send(None) == p.Write(b"CAPA\r\n")
    assert op.send(None) is p.READ
    client.receive_data(b"-ERR what\r\n")
    with pytest.raises(StopIteration) as stop:
        op.send(None)
    assert stop.value.value is None
    # Cached: no second CAPA.
    with pytest.raises(StopIteration):
        next(client.capa())


def test_retr_many_pipelined_with_delete() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    _, chunks = wire.run(wire.client.retr_many([1, 2, 3], delete=True, window=2))
    messages = b"".join(c if c else b"\0END\0" for c in chunks).split(b"\0END\0")[:-1]
    assert messages == [crlf(m) for m in MESSAGES]
    assert wire.server.deleted == frozenset({1, 2, 3})
    # Pipelined: more than one command went out in one write.
    assert any(data.count(b"\r\n") > 1 for data in wire.sent)


@pytest.mark.parametrize("delete", [False, True])
def test_retr_many_refills_its_window_a_quarter_at_a_time(delete: bool) -> None:
    messages = [b"Subject: %d\n\nbody\n" % i for i in range(40)]
    wire = Wire(FakeBackend(messages=messages))
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    _, chunks = wire.run(wire.client.retr_many(range(1, 41), delete=delete, window=8))
    assert chunks.count(b"") == 40
    retr_writes = [w.count(b"RETR") for w in wire.sent if b"RETR" in w]
    assert sum(retr_writes) == 40
    if delete:
        # A DELE goes out after each message; RETRs ride along, up to the window.
        assert sum(w.count(b"DELE") for w in wire.sent) == 40
        assert wire.server.deleted == frozenset(range(1, 41))
    else:
        # 8, then 2 each time 2 are answered: 17 writes, where one per RETR made 33.
        assert retr_writes == [8] + [2] * 16


def test_retr_many_needs_a_window_of_at_least_one() -> None:
    wire = Wire()
    with pytest.raises(ValueError, match="window"):
        next(wire.client.retr_many([1], window=0))


def test_retr_many_one_at_a_time_without_pipelining() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    wire.client._capabilities = p.Capabilities({})
    _, chunks = wire.run(wire.client.retr_many([2, 1]))
    assert chunks.count(b"") == 2
    assert all(data.count(b"\r\n") == 1 for data in wire.sent[-2:])


def test_listing_size_cap() -> None:
    client = p.ClientSession()
    client.receive_data(b"+OK hi\r\n")
    client.connection.next_event()
    client.connection._state = p.State.TRANSACTION
    op = client.uidl()
    op.send(None)
    op.send(None)
    client.receive_data(b"+OK\r\n1 a\r\n")
    op.send(None)
    op.close()
    client.max_listing_size = 4
    op = client._body()
    client.receive_data(b"2 b\r\n")
    with pytest.raises(p.RemoteProtocolError) as info:
        next(op)
    assert info.value.reason == "too-big"


def test_uidl_of_one_message_answered_with_the_uid_alone() -> None:
    """Twisted's server answers ``UIDL n`` with ``+OK <uid>``: that is message n's uid."""

    def uidl(answer: bytes) -> Any:
        client = p.ClientSession()
        client.receive_data(b"+OK hi\r\n")
        client.connection.next_event()
        client.connection._state = p.State.TRANSACTION
        op = client.uidl(2)
        assert next(op) == p.Write(b"UIDL 2\r\n")
        assert op.send(None) is p.READ
        client.receive_data(answer)
        with pytest.raises(StopIteration) as stop:
            op.send(None)
        return stop.value.value

    assert uidl(b"+OK 2 uid-b\r\n") == {2: "uid-b"}
    assert uidl(b"+OK uid-b\r\n") == {2: "uid-b"}
    with pytest.raises(p.RemoteProtocolError) as info:
        uidl(b"+OK \r\n")
    assert info.value.reason == "bad-uid"


def test_server_closing_is_a_remote_error() -> None:
    client = p.ClientSession()
    op = client.start()
    assert next(op) is p.READ
    client.receive_data(b"")
    with pytest.raises(p.RemoteProtocolError) as info:
        op.send(None)
    assert info.value.reason == "closed"


@pytest.mark.parametrize(
    ("line", "cls"),
    [
        (b"-ERR [LOGIN-DELAY] wait\r\n", p.LoginDelayError),
        (b"-ERR [SYS/PERM] broken\r\n", p.PermanentError),
        (b"-ERR [SYS/TEMP/DISK] full\r\n", p.TemporaryError),
        (b"-ERR [X-OTHER] what\r\n", p.AuthError),
    ],
)
def test_codes_map_to_exception_classes(line: bytes, cls: type[p.Pop3Error]) -> None:
    client = p.ClientSession(allow_plaintext_login=True)
    client.receive_data(b"+OK hi\r\n")
    op = client.start()
    with pytest.raises(StopIteration):
        next(op)
    client.connection  # noqa: B018
    client._capa_known = True
    op2 = client.login("alice", "pw", mechanism="PLAIN")
    assert isinstance(next(op2), p.Write)
    assert next(op2) is p.READ
    client.receive_data(line)
    with pytest.raises(cls):
        op2.send(None)


def test_read_instruction_has_a_readable_repr() -> None:
    assert repr(p.READ) == "READ"


def test_user_is_not_tried_when_the_server_offers_only_sasl() -> None:
    wire = Wire(mechanisms=["PLAIN"], user_pass=False)
    wire.result(wire.client.start())
    caps = wire.result(wire.client.capa())
    assert not caps.user
    assert wire.client._methods(caps, False) == ["PLAIN"]


def test_ok_after_our_cancel_still_raises_the_original_error() -> None:
    client = p.ClientSession(allow_plaintext_login=True, random_bytes=lambda n: b"\x01" * n)
    client.receive_data(b"+OK hi\r\n")
    with pytest.raises(StopIteration):
        next(client.start())
    op = client.auth("SCRAM-SHA-1", "alice", password="secret")
    next(op)
    assert next(op) is p.READ
    client.receive_data(b"+ " + p.b64encode(b"r=bogus,s=QSXCR+Q6sek8bf92,i=4096") + b"\r\n")
    assert op.send(None) == p.Write(b"*\r\n")
    assert op.send(None) is p.READ
    client.receive_data(b"+OK whatever\r\n")  # a broken server accepting the cancel
    with pytest.raises(p.RemoteProtocolError) as info:
        op.send(None)
    assert info.value.reason == "sasl-cancel-accepted"


def test_retr_many_failure_keeps_the_session_in_step_and_deletes_only_what_was_taken() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    op = wire.client.retr_many([1, 9, 2], delete=True, window=8)
    with pytest.raises(p.Pop3Error, match="no such message"):
        wire.run(op)
    # Message 1 was taken whole, so it is marked; 2 was read and dropped, never marked.
    assert wire.server.deleted == frozenset({1})
    assert wire.result(wire.client.noop()) == ""  # the next answer is NOOP's own


def test_answers_skipped_after_a_failure_are_not_collected() -> None:
    # RETR 9 fails while RETR 1 is already pipelined behind it: message 1's
    # body is read and dropped as it arrives, whatever its size (the listing
    # cap, here one octet, is for bodies that are collected).
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    caps = wire.result(wire.client.capa())
    assert caps is not None and caps.pipelining
    wire.result(wire.client.list())  # the sizes retr_many holds bodies to
    wire.client.max_listing_size = 1
    with pytest.raises(p.Pop3Error):
        wire.run(wire.client.retr_many([9, 1]))
    assert wire.sent[-1] == b"RETR 9\r\nRETR 1\r\n"
    assert wire.result(wire.client.noop()) == ""  # in step


def test_a_pipelined_dele_behind_a_failed_retr_is_still_marked() -> None:
    # retr_many([1, 9, 2], delete=True): RETR 1, 9 and 2 go out together; once message 1
    # is read, DELE 1 follows them. RETR 9 fails, so the answers behind it are skipped,
    # but the server took DELE 1: the client must count it as marked.
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    caps = wire.result(wire.client.capa())
    assert caps is not None and caps.pipelining
    wire.result(wire.client.list())
    with pytest.raises(p.Pop3Error):
        wire.run(wire.client.retr_many([1, 9, 2], delete=True))
    assert b"DELE 1\r\n" in wire.sent[-1]
    assert wire.client.marked == frozenset({1})
    assert wire.result(wire.client.noop()) == ""  # in step


def test_failed_dele_in_retr_many_is_raised_in_step() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    wire.result(wire.client.dele(2))
    wire.result(wire.client.rset())
    op = wire.client.retr_many([1, 2], delete=True)
    chunks: list[bytes] = []
    instruction = next(op)
    # Run until message 1 is complete, then mark it deleted behind the client's back.
    while instruction != p.Chunk(b""):
        if isinstance(instruction, p.Write):
            wire.server.receive_data(instruction.data)
            wire._serve()
        elif instruction is p.READ:
            wire.client.receive_data(wire.server.data_to_send())
        else:
            chunks.append(instruction.data)  # type: ignore[union-attr]
        instruction = op.send(None)
    wire.server.receive_data(b"DELE 1\r\n")  # the server now refuses the client's DELE 1
    wire._serve()
    wire.server.data_to_send()
    with pytest.raises(p.Pop3Error, match="already deleted"):
        wire.run(op)
    assert wire.result(wire.client.noop()) == ""


def test_quit_before_login_to_a_server_that_hung_up_is_quiet() -> None:
    # Dovecot closes the connection after -ERR [IN-USE]: saying goodbye then
    # must not fail, since nothing could be committed.
    client = p.ClientSession(allow_plaintext_login=True)
    client.receive_data(b"+OK hi\r\n")
    with pytest.raises(StopIteration):
        next(client.start())
    assert not client.quit_commits
    op = client.quit()
    assert next(op) == p.Write(b"QUIT\r\n")
    assert next(op) is p.READ
    client.receive_data(b"")
    with pytest.raises(StopIteration) as stop:
        op.send(None)
    assert stop.value.value == ""


def test_quit_in_transaction_to_a_server_that_hung_up_raises() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    assert wire.client.quit_commits
    op = wire.client.quit()
    assert isinstance(next(op), p.Write)
    assert next(op) is p.READ
    wire.client.receive_data(b"")  # no +OK: whether deletions happened is unknown
    with pytest.raises(p.RemoteProtocolError):
        op.send(None)


def test_tokens_are_not_sent_in_the_clear() -> None:
    wire = Wire(mechanisms=["XOAUTH2", "OAUTHBEARER"], allow_plaintext_login=False)
    wire.result(wire.client.start())
    with pytest.raises(p.AuthError, match="no authentication method"):
        wire.result(wire.client.login("alice", token="tok-1"))
    with pytest.raises(p.AuthError, match="in the clear"):
        wire.result(wire.client.auth("XOAUTH2", "alice", token="tok-1"))
    assert wire.sent == [b"CAPA\r\n"]


# --- body limits: a message may not be much longer than its LIST size ----------------------


def _in_transaction(**kwargs: Any) -> p.ClientSession:
    client = p.ClientSession(**kwargs)
    client.receive_data(b"+OK hi\r\n")
    client.connection.next_event()
    client.connection._state = p.State.TRANSACTION
    return client


def test_body_limit_is_twice_the_announced_size_plus_slack_capped_by_max_message_size() -> None:
    assert p.ClientSession().body_limit(0) == 65536
    assert p.ClientSession().body_limit(100) == 200 + 65536
    # The absolute cap wins only where it is lower.
    assert p.ClientSession(max_message_size=1000).body_limit(100) == 1000
    assert p.ClientSession(max_message_size=10**9).body_limit(100) == 200 + 65536
    assert p.ClientSession(max_message_size=65736).body_limit(100) == 65736
    assert p.ClientSession(max_message_size=0).body_limit(0) == 0


def test_retr_of_an_unlisted_size_asks_list_first_and_stops_a_flood_at_the_limit() -> None:
    client = _in_transaction()
    op = client.retr(3)
    assert next(op) == p.Write(b"LIST 3\r\n")  # the size is not known yet
    assert next(op) is p.READ
    client.receive_data(b"+OK 3 100\r\n")
    assert op.send(None) == p.Write(b"RETR 3\r\n")
    assert next(op) is p.READ
    line = b"x" * 1022 + b"\r\n"
    client.receive_data(b"+OK\r\n" + line * 64)  # exactly the limit: 65536 + 200 would pass
    taken = 0
    reads = 0
    with pytest.raises(p.MessageTooLargeError) as info:
        while True:
            instruction = op.send(None)
            if instruction is p.READ:
                # The server goes on and on (ending after 64 MiB, so that a
                # client without a limit fails here rather than loops).
                reads += 1
                client.receive_data(line * 64 if reads < 1024 else b".\r\n")
            else:
                assert isinstance(instruction, p.Chunk)
                taken += len(instruction.data)
    assert (info.value.msg, info.value.announced, info.value.limit) == (3, 100, 65736)
    assert info.value.reason == "message-too-large"
    assert str(info.value) == (
        "message 3 is announced as 100 octets, but the server sent more than the limit of 65736"
    )
    assert isinstance(info.value, p.RemoteProtocolError)
    assert taken <= 65736  # the caller never got more than the limit
    # The rest of the body is still coming: nothing more is sent, QUIT included.
    quit_op = client.quit()
    with pytest.raises(p.RemoteProtocolError) as later:
        next(quit_op)
    assert later.value.reason == "peer-error"
    assert "message 3" in str(later.value)


def test_retr_and_top_use_the_listed_sizes_without_another_round_trip() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    sizes = wire.result(wire.client.list())
    sent = len(wire.sent)
    _, chunks = wire.run(wire.client.retr(2))
    assert len(b"".join(chunks)) == sizes[2]
    wire.run(wire.client.top(1, 0))
    assert wire.sent[sent:] == [b"RETR 2\r\n", b"TOP 1 0\r\n"]


@pytest.mark.parametrize("pipelining", [True, False])
def test_top_of_an_unlisted_size_asks_list_for_it(pipelining: bool) -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    if not pipelining:
        wire.client._capabilities = p.Capabilities({})
    _, chunks = wire.run(wire.client.top(2, 1))
    assert b"".join(chunks) == b"Subject: two\r\nX: y\r\n\r\nline 1\r\n"
    if pipelining:  # one round trip (RFC 2449 section 6.6)
        assert wire.sent[-1] == b"LIST 2\r\nTOP 2 1\r\n"
    else:
        assert wire.sent[-2:] == [b"LIST 2\r\n", b"TOP 2 1\r\n"]
    wire.run(wire.client.retr(2))  # LIST 2 answered once for both
    assert wire.sent[-1] == b"RETR 2\r\n"


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"short\r\n.\r\n", p.Pop3Error), (b"z" * 70000 + b"\r\n", p.MessageTooLargeError)],
    ids=["in-step", "flood"],
)
def test_a_body_after_a_refused_list_is_dropped_up_to_the_slack(
    body: bytes, error: type[Exception]
) -> None:
    # A server that says message 4 does not exist, then sends its TOP anyway.
    client = _in_transaction()
    client._capabilities = p.Capabilities({"PIPELINING": ()})
    op = client.top(4, 0)
    assert next(op) == p.Write(b"LIST 4\r\nTOP 4 0\r\n")
    client.receive_data(b"-ERR no such message\r\n+OK\r\n" + body)
    with pytest.raises(error) as info:
        while True:
            instruction = op.send(None)
            assert not isinstance(instruction, p.Chunk)  # dropped, never handed out
            assert instruction is not p.READ
    if error is p.Pop3Error:
        assert info.value.command == "LIST"  # type: ignore[attr-defined]
        assert client.connection.in_flight == ()  # in step


def test_a_message_announced_over_max_message_size_is_not_fetched() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    wire.client.max_message_size = 30
    sizes = wire.result(wire.client.list())
    assert sizes[1] <= 30 < sizes[2]
    wire.run(wire.client.retr(1))
    with pytest.raises(p.MessageTooLargeError) as info:
        wire.run(wire.client.retr(2))
    assert (info.value.msg, info.value.announced, info.value.limit) == (2, sizes[2], 30)
    assert str(info.value) == f"message 2 is announced as {sizes[2]} octets, over the limit of 30"
    assert wire.sent[-1] == b"RETR 1\r\n"  # RETR 2 never went out
    with pytest.raises(p.RemoteProtocolError, match="unusable"):
        wire.run(wire.client.noop())


def test_retr_many_lists_once_for_unknown_sizes_and_not_again() -> None:
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.login("alice", "secret"))
    wire.client._capabilities = p.Capabilities({})
    _, chunks = wire.run(wire.client.retr_many([1, 2]))
    assert chunks.count(b"") == 2
    assert wire.sent[-3:] == [b"LIST\r\n", b"RETR 1\r\n", b"RETR 2\r\n"]
    # Message 9 is not in the listing: no LIST again (the server refuses RETR 9).
    with pytest.raises(p.Pop3Error, match="no such message"):
        wire.run(wire.client.retr_many([3, 9]))
    assert wire.sent[-2:] == [b"RETR 3\r\n", b"RETR 9\r\n"]


def _retr_many_against(answers: bytes, **kwargs: Any) -> p.ClientSession:
    """A pipelining session that knows sizes 1: 100, 2: 100 and has ``answers`` waiting."""
    client = _in_transaction(**kwargs)
    client._capabilities = p.Capabilities({"PIPELINING": ()})
    client._capa_known = True  # as after CAPA: retr_many asks for it otherwise
    op = client.list()
    next(op)
    next(op)
    client.receive_data(b"+OK\r\n1 100\r\n2 100\r\n.\r\n")
    with pytest.raises(StopIteration):
        op.send(None)
    client.receive_data(answers)
    return client


def test_retr_many_stops_a_flood_at_the_limit() -> None:
    flood = b"+OK\r\n" + (b"y" * 998 + b"\r\n") * 80  # 80000 octets, announced 100
    client = _retr_many_against(flood)
    op = client.retr_many([1, 2])
    assert next(op) == p.Write(b"RETR 1\r\nRETR 2\r\n")
    with pytest.raises(p.MessageTooLargeError) as info:
        while True:
            assert op.send(None) is not p.READ  # everything needed is buffered
    assert (info.value.msg, info.value.announced, info.value.limit) == (1, 100, 65736)


def test_answers_skipped_after_a_failure_are_dropped_only_up_to_their_limit() -> None:
    # RETR 1 fails; RETR 2, pipelined behind it, answers +OK and never stops.
    flood = b"-ERR no such message\r\n+OK\r\n" + (b"z" * 998 + b"\r\n") * 80
    client = _retr_many_against(flood)
    op = client.retr_many([1, 2])
    assert next(op) == p.Write(b"RETR 1\r\nRETR 2\r\n")
    with pytest.raises(p.MessageTooLargeError) as info:
        while True:
            instruction = op.send(None)
            assert not isinstance(instruction, p.Chunk)  # dropped, never handed out
            assert instruction is not p.READ
    assert (info.value.msg, info.value.limit) == (2, 65736)


def test_retr_many_refuses_a_message_announced_over_the_cap_when_its_turn_comes() -> None:
    client = _retr_many_against(b"+OK\r\nsmall\r\n.\r\n+OK\r\n", max_message_size=100)
    client._sizes[2] = 101
    op = client.retr_many([1, 2])
    assert next(op) == p.Write(b"RETR 1\r\nRETR 2\r\n")
    assert op.send(None) == p.Chunk(b"small\r\n")
    assert op.send(None) == p.Chunk(b"")  # message 1 is taken
    with pytest.raises(p.MessageTooLargeError) as info:
        op.send(None)
    assert (info.value.msg, info.value.announced, info.value.limit) == (2, 101, 100)


def test_retr_many_asks_for_capa_first_when_not_known() -> None:
    """Pipelining depends on CAPA (RFC 2449 section 6.6): every binding gets it the same way."""
    wire = Wire()
    wire.result(wire.client.start())
    wire.result(wire.client.auth("PLAIN", "alice", password="secret"))  # no CAPA so far
    _, chunks = wire.run(wire.client.retr_many([1, 2]))
    assert chunks.count(b"") == 2
    assert wire.sent[1:4] == [b"CAPA\r\n", b"LIST\r\n", b"RETR 1\r\nRETR 2\r\n"]
    _, chunks = wire.run(wire.client.retr_many([3]))  # known now: not again
    assert wire.sent[4:] == [b"RETR 3\r\n"]


def test_secure_is_the_deprecated_name_of_allow_plaintext_login() -> None:
    with pytest.warns(DeprecationWarning, match="allow_plaintext_login"):
        old = p.ClientSession(secure=True)
    assert old.allow_plaintext_login
    with pytest.warns(DeprecationWarning, match="may_send_password"):
        assert old.secure
    with pytest.warns(DeprecationWarning):
        assert not p.ClientSession(secure=False).allow_plaintext_login
    new = p.ClientSession(allow_plaintext_login=False)
    assert (new.allow_plaintext_login, new.may_send_password) == (False, False)
    assert p.ClientSession(tls=True).may_send_password  # TLS: always
