"""Byte-exact replays of the example sessions in the RFCs.

Each dialogue is played through a ``Link``: the client's ``send`` must produce
exactly the RFC's ``C:`` lines and the server's ``send`` exactly its ``S:``
lines; the other side must read them back into the same events. The RFC
text is quoted in each test (indentation removed, CRLF added).
"""

from __future__ import annotations

import base64

import pytest

from helpers import Link, answer_generically, feed_three_ways
from pop3_sansio import (
    NEED_DATA,
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
    Ok,
    Quit,
    Retr,
    SaslChallenge,
    SaslResponse,
    ServerConnection,
    Stat,
    State,
    Stls,
    UnknownCommand,
    apop_digest,
    check_apop_digest,
    message_size,
    parse_scan_listing,
    parse_stat,
)


def script(text: str) -> tuple[bytes, bytes]:
    """The client's and the server's bytes of an RFC dialogue (``C:`` / ``S:`` lines)."""
    client, server = bytearray(), bytearray()
    for raw in text.strip().splitlines():
        who, _, line = raw.strip().partition(":")
        line = line[1:] if line.startswith(" ") else line
        target = client if who == "C" else server
        target += line.encode() + b"\r\n"
    return bytes(client), bytes(server)


# ======================================================================================
# RFC 1939 section 10: the example session, and section 7: the APOP example
# ======================================================================================

TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"


def _message(size: int, first: bytes) -> bytes:
    head = b"Subject: " + first + b"\r\n\r\n"
    body = head + b"x" * (size - len(head) - 2) + b"\r\n"
    assert len(body) == size
    return body


MESSAGE_1 = _message(120, b"one")
MESSAGE_2 = _message(200, b"two")

RFC1939_SESSION = """
S: +OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>
C: APOP mrose c4c9334bac560ecc979e58001b3e22fb
S: +OK mrose's maildrop has 2 messages (320 octets)
C: STAT
S: +OK 2 320
C: LIST
S: +OK 2 messages (320 octets)
S: 1 120
S: 2 200
S: .
C: RETR 1
S: +OK 120 octets
S: <message 1>
S: .
C: DELE 1
S: +OK message 1 deleted
C: RETR 2
S: +OK 200 octets
S: <message 2>
S: .
C: DELE 2
S: +OK message 2 deleted
C: QUIT
S: +OK dewey POP3 server signing off (maildrop empty)
"""


def _rfc1939_bytes() -> tuple[bytes, bytes]:
    client, server = script(RFC1939_SESSION)
    server = server.replace(b"<message 1>\r\n", MESSAGE_1)
    server = server.replace(b"<message 2>\r\n", MESSAGE_2)
    return client, server


def test_rfc1939_apop_example() -> None:
    # RFC 1939 section 7: MD5("<1896.697170952@dbc.mtview.ca.us>tanstaaf").
    digest = apop_digest(TIMESTAMP, "tanstaaf")
    assert digest == "c4c9334bac560ecc979e58001b3e22fb"
    assert check_apop_digest(TIMESTAMP, "tanstaaf", digest)
    assert check_apop_digest(TIMESTAMP, "tanstaaf", digest.upper())
    assert not check_apop_digest(TIMESTAMP, "tanstaaF", digest)
    assert not check_apop_digest(TIMESTAMP.replace("1896", "1897"), "tanstaaf", digest)
    client = ClientConnection()
    client.receive_data(b"+OK POP3 server ready " + TIMESTAMP.encode() + b"\r\n")
    greeting = client.next_event()
    assert isinstance(greeting, Greeting) and greeting.timestamp == TIMESTAMP
    wire = client.send(Apop("mrose", apop_digest(greeting.timestamp, "tanstaaf")))
    assert wire == b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"


def test_rfc1939_example_session_through_the_link() -> None:
    link = Link(Greeting("POP3 server ready", timestamp=TIMESTAMP))
    assert link.greeting == Greeting(f"POP3 server ready {TIMESTAMP}", None, TIMESTAMP)
    digest = apop_digest(link.greeting.timestamp, "tanstaaf")  # type: ignore[arg-type]
    assert link.exchange(Apop("mrose", digest), Ok("mrose's maildrop has 2 messages (320 octets)"))
    assert link.client.our_state is link.server.our_state is State.TRANSACTION

    (stat,) = link.exchange(Stat(), Ok("2 320"))
    assert parse_stat(stat.text) == (2, 320)  # type: ignore[union-attr]

    _, listing, _ = link.exchange(
        List(), Ok("2 messages (320 octets)"), Data(b"1 120\r\n2 200\r\n"), EndOfResponse()
    )
    assert parse_scan_listing(listing.data) == {1: 120, 2: 200}  # type: ignore[union-attr]

    for number, message in ((1, MESSAGE_1), (2, MESSAGE_2)):
        size = message_size(message)
        events = link.exchange(
            Retr(number),
            Ok(f"{size} octets"),
            Data(message[:50]),
            Data(message[50:]),
            EndOfResponse(),
        )
        assert events == [Ok(f"{size} octets"), Data(message), EndOfResponse()]
        assert len(events[1].data) == size  # type: ignore[union-attr]
        assert link.exchange(Dele(number), Ok(f"message {number} deleted")) == [
            Ok(f"message {number} deleted")
        ]

    link.client_send(Quit())
    assert link.server_event() == Quit()
    assert link.server.our_state is State.UPDATE
    link.server_send(Ok("dewey POP3 server signing off (maildrop empty)"))
    assert link.client_events() == [Ok("dewey POP3 server signing off (maildrop empty)")]
    assert link.client.our_state is link.server.our_state is State.CLOSED

    client_bytes, server_bytes = _rfc1939_bytes()
    assert bytes(link.to_server) == client_bytes
    assert bytes(link.to_client) == server_bytes


def test_rfc1939_server_lines_read_by_a_client_any_chunking() -> None:
    _, server_bytes = _rfc1939_bytes()
    greeting_end = server_bytes.index(b"\r\n") + 2

    def make() -> ClientConnection:
        client = ClientConnection()
        client.receive_data(server_bytes[:greeting_end])
        client.next_event()
        for command in (
            Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"),
            Stat(),
            List(),
            Retr(1),
            Dele(1),
            Retr(2),
            Dele(2),
            Quit(),
        ):
            client.send(command)
        return client

    events, error = feed_three_ways(make, server_bytes[greeting_end:], close=True)
    assert error is None
    assert events == [
        Ok("mrose's maildrop has 2 messages (320 octets)"),
        Ok("2 320"),
        Ok("2 messages (320 octets)"),
        Data(b"1 120\r\n2 200\r\n"),
        EndOfResponse(),
        Ok("120 octets"),
        Data(MESSAGE_1),
        EndOfResponse(),
        Ok("message 1 deleted"),
        Ok("200 octets"),
        Data(MESSAGE_2),
        EndOfResponse(),
        Ok("message 2 deleted"),
        Ok("dewey POP3 server signing off (maildrop empty)"),
        ConnectionClosed(),
    ]


def test_rfc1939_client_lines_read_by_a_server_any_chunking() -> None:
    client_bytes, _ = _rfc1939_bytes()

    def make() -> ServerConnection:
        server = ServerConnection()
        server.send(Greeting("POP3 server ready", timestamp=TIMESTAMP))
        return server

    events, error = feed_three_ways(make, client_bytes, respond=answer_generically)
    assert error is None
    assert events == [
        Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"),
        Stat(),
        List(),
        Retr(1),
        Dele(1),
        Retr(2),
        Dele(2),
        Quit(),
    ]


# ======================================================================================
# RFC 2449 section 5: the CAPA example
# ======================================================================================

RFC2449_CAPA = """
C: CAPA
S: +OK Capability list follows
S: TOP
S: USER
S: SASL CRAM-MD5 KERBEROS_V4
S: RESP-CODES
S: LOGIN-DELAY 900
S: PIPELINING
S: EXPIRE 60
S: UIDL
S: IMPLEMENTATION Shlemazle-Plotz-v302
S: .
"""

RFC2449_CAPABILITIES = Capabilities(
    {
        "TOP": (),
        "USER": (),
        "SASL": ("CRAM-MD5", "KERBEROS_V4"),
        "RESP-CODES": (),
        "LOGIN-DELAY": ("900",),
        "PIPELINING": (),
        "EXPIRE": ("60",),
        "UIDL": (),
        "IMPLEMENTATION": ("Shlemazle-Plotz-v302",),
    }
)


@pytest.mark.parametrize("state", [State.AUTHORIZATION, State.TRANSACTION])
def test_rfc2449_capa_example(link: Link, state: State) -> None:
    if state is State.TRANSACTION:  # RFC 2449 section 5: CAPA is valid in both states
        link.exchange(Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"), Ok())
        link.to_server.clear()
        link.to_client.clear()
    else:
        link.to_client.clear()  # drop the greeting
    events = link.exchange(
        Capa(), Ok("Capability list follows"), Data(RFC2449_CAPABILITIES.encode()), EndOfResponse()
    )
    assert (bytes(link.to_server), bytes(link.to_client)) == script(RFC2449_CAPA)
    caps = Capabilities.parse(events[1].data)  # type: ignore[union-attr]
    assert caps == RFC2449_CAPABILITIES
    assert caps.top and caps.user and caps.uidl and caps.pipelining and caps.resp_codes
    assert caps.sasl == ("CRAM-MD5", "KERBEROS_V4")
    assert caps.login_delay == (900, False)
    assert caps.expire == (60, False)
    assert caps.implementation == "Shlemazle-Plotz-v302"
    assert not caps.stls and not caps.utf8 and not caps.auth_resp_code


# ======================================================================================
# RFC 5034 section 6 (and RFC 1734): AUTH dialogues
# ======================================================================================

RFC5034_PLAIN_INITIAL = """
S: +OK pop.example.com BlurdyBlurp POP3 server ready
C: CAPA
S: +OK List of capabilities follows
S: SASL DIGEST-MD5 GSSAPI ANONYMOUS
S: STLS
S: IMPLEMENTATION BlurdyBlurp POP3 server
S: .
C: STLS
S: +OK Begin TLS negotiation now
C: CAPA
S: +OK List of capabilities follows
S: SASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS
S: IMPLEMENTATION BlurdyBlurp POP3 server
S: .
C: AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=
S: +OK Maildrop locked and ready
"""

BEFORE_TLS = Capabilities(
    {
        "SASL": ("DIGEST-MD5", "GSSAPI", "ANONYMOUS"),
        "STLS": (),
        "IMPLEMENTATION": ("BlurdyBlurp", "POP3", "server"),
    }
)
AFTER_TLS = Capabilities(
    {
        "SASL": ("PLAIN", "DIGEST-MD5", "GSSAPI", "ANONYMOUS"),
        "IMPLEMENTATION": ("BlurdyBlurp", "POP3", "server"),
    }
)


def _capa(link: Link, caps: Capabilities) -> Capabilities:
    events = link.exchange(
        Capa(), Ok("List of capabilities follows"), Data(caps.encode()), EndOfResponse()
    )
    return Capabilities.parse(events[1].data)  # type: ignore[union-attr]


def test_rfc5034_plain_with_initial_response_after_stls() -> None:
    link = Link(Greeting("pop.example.com BlurdyBlurp POP3 server ready"))
    caps = _capa(link, BEFORE_TLS)
    assert caps.stls and "PLAIN" not in caps.sasl
    assert caps.implementation == "BlurdyBlurp POP3 server"
    assert link.exchange(Stls(), Ok("Begin TLS negotiation now")) == [
        Ok("Begin TLS negotiation now")
    ]
    link.client.start_tls()
    link.server.start_tls()
    caps = _capa(link, AFTER_TLS)  # RFC 2595 section 4: ask again after TLS
    assert caps.sasl[0] == "PLAIN" and not caps.stls
    assert link.exchange(Auth("PLAIN", b"test\0test\0test"), Ok("Maildrop locked and ready")) == [
        Ok("Maildrop locked and ready")
    ]
    assert link.client.our_state is link.server.our_state is State.TRANSACTION
    assert (bytes(link.to_server), bytes(link.to_client)) == script(RFC5034_PLAIN_INITIAL)


RFC5034_PLAIN_CHALLENGE = """
C: AUTH PLAIN
S: +
C: dGVzdAB0ZXN0AHRlc3Q=
S: +OK Maildrop locked and ready
"""


def test_rfc5034_plain_after_an_empty_challenge(link: Link) -> None:
    link.to_client.clear()
    # "(note that there is a space following the '+' on the following line)"
    assert link.exchange(Auth("PLAIN"), SaslChallenge(b"")) == [SaslChallenge(b"")]
    assert link.to_client.endswith(b"+ \r\n")
    link.client_send(SaslResponse(b"test\0test\0test"))
    assert link.server_event() == SaslResponse(b"test\0test\0test")
    link.server_send(Ok("Maildrop locked and ready"))
    assert link.client_events() == [Ok("Maildrop locked and ready")]
    client, server = script(RFC5034_PLAIN_CHALLENGE)
    assert bytes(link.to_server) == client
    assert bytes(link.to_client) == server.replace(b"+\r\n", b"+ \r\n")


RFC5034_DIGEST_MD5 = """
C: AUTH DIGEST-MD5
S: + cmVhbG09ImVsd29vZC5pbm5vc29mdC5jb20iLG5vbmNlPSJPQTZNRzl0RVFHbTJoaCIscW9wPSJhdXRoIixhbGdvcml0aG09bWQ1LXNlc3MsY2hhcnNldD11dGYtOA==
C: Y2hhcnNldD11dGYtOCx1c2VybmFtZT0iY2hyaXMiLHJlYWxtPSJlbHdvb2QuaW5ub3NvZnQuY29tIixub25jZT0iT0E2TUc5dEVRR20yaGgiLG5jPTAwMDAwMDAxLGNub25jZT0iT0E2TUhYaDZWcVRyUmsiLGRpZ2VzdC11cmk9InBvcC9lbHdvb2QuaW5ub3NvZnQuY29tIixyZXNwb25zZT1iMGQ1NmQyZjA1NGMyNGI2MjA3MjMyMjEwNjQ2OGRiOSxxb3A9YXV0aA==
S: + cnNwYXV0aD0wYjk3MTQ2MmNlZjVlOGY5MzBkYjlhMzNiMDJmYzlhMA==
C:
S: +OK Maildrop locked and ready
"""  # noqa: E501 (the RFC breaks these lines "for editorial clarity only")

DIGEST_CHALLENGE = (
    b'realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",'
    b"algorithm=md5-sess,charset=utf-8"
)
DIGEST_RESPONSE = (
    b'charset=utf-8,username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",'
    b'nc=00000001,cnonce="OA6MHXh6VqTrRk",digest-uri="pop/elwood.innosoft.com",'
    b"response=b0d56d2f054c24b62072322106468db9,qop=auth"
)
DIGEST_RSPAUTH = b"rspauth=0b971462cef5e8f930db9a33b02fc9a0"


def _sasl_dialogue(
    link: Link, command: Auth, steps: list[tuple[bytes, bytes]], outcome: Ok | Err
) -> None:
    """Client sends ``command``; for each (challenge, response) the server challenges
    and the client responds; then the server ends with ``outcome``."""
    link.client_send(command)
    assert link.server_event() == command
    for challenge, response in steps:
        link.server_send(SaslChallenge(challenge))
        assert link.client_events() == [SaslChallenge(challenge)]
        link.client_send(SaslResponse(response))
        assert link.server_event() == SaslResponse(response)
    link.server_send(outcome)
    assert link.client_events() == [outcome]


def test_rfc5034_digest_md5_framing(link: Link) -> None:
    link.to_client.clear()
    _sasl_dialogue(
        link,
        Auth("DIGEST-MD5"),
        [(DIGEST_CHALLENGE, DIGEST_RESPONSE), (DIGEST_RSPAUTH, b"")],
        Ok("Maildrop locked and ready"),
    )
    assert (bytes(link.to_server), bytes(link.to_client)) == script(RFC5034_DIGEST_MD5)
    assert link.to_server.endswith(b"==\r\n\r\n")  # the empty response is an empty line


RFC1734_KERBEROS = """
C: AUTH KERBEROS_V4
S: + AmFYig==
C: BAcAQU5EUkVXLkNNVS5FRFUAOCAsho84kLN3/IJmrMG+25a4DT+nZImJjnTNHJUtxAA+o0KPKfHEcAFs9a3CL5Oebe/ydHJUwYFdWwuQ1MWiy6IesKvjL5rL9WjXUb9MwT9bpObYLGOKi1Qh
S: + or//EoAADZI=
C: DiAF5A4gA+oOIALuBkAAmw==
S: +OK Kerberos V4 authentication successful
"""  # noqa: E501


def test_rfc1734_kerberos_v4_framing() -> None:
    client_bytes, server_bytes = script(RFC1734_KERBEROS)
    lines = client_bytes.split(b"\r\n")
    link = Link(Greeting("POP3 server ready"))
    link.to_client.clear()
    _sasl_dialogue(
        link,
        Auth("KERBEROS_V4"),
        [
            (b"\x02aX\x8a", base64.b64decode(lines[1])),
            (base64.b64decode(b"or//EoAADZI="), base64.b64decode(lines[2])),
        ],
        Ok("Kerberos V4 authentication successful"),
    )
    assert (bytes(link.to_server), bytes(link.to_client)) == (client_bytes, server_bytes)
    # "C: AUTH FOOBAR / S: -ERR Unrecognized authentication type"
    link = Link(Greeting("POP3 server ready"))
    assert link.exchange(Auth("FOOBAR"), Err("Unrecognized authentication type")) == [
        Err("Unrecognized authentication type")
    ]
    assert link.to_server == b"AUTH FOOBAR\r\n"
    assert link.to_client.endswith(b"-ERR Unrecognized authentication type\r\n")
    assert link.client.our_state is State.AUTHORIZATION


def test_rfc5034_empty_initial_response(link: Link) -> None:
    # RFC 5034 section 4: "=" stands for an initial response of zero length.
    assert link.exchange(Auth("EXTERNAL", b""), Ok("welcome")) == [Ok("welcome")]
    assert link.to_server == b"AUTH EXTERNAL =\r\n"


def test_rfc5034_initial_response_on_the_server_side() -> None:
    events, error = feed_three_ways(
        _greeted_server,
        b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\nAUTH EXTERNAL =\r\n",
        respond=_err_to_all,
    )
    assert error is None
    assert events == [Auth("PLAIN", b"test\0test\0test"), Auth("EXTERNAL", b"")]


def _greeted_server() -> ServerConnection:
    server = ServerConnection()
    server.send(Greeting("pop.example.com BlurdyBlurp POP3 server ready"))
    return server


def _err_to_all(server: ServerConnection, event: object) -> None:
    server.send(Err("Unrecognized authentication type"))


# ======================================================================================
# RFC 2595 section 4: the STLS example
# ======================================================================================

RFC2595_STLS = """
C: STLS
S: +OK Begin TLS negotiation
C: STLS
S: -ERR Command not permitted when TLS active
"""


def test_rfc2595_stls_example() -> None:
    client_bytes, server_bytes = script(RFC2595_STLS)
    link = Link(Greeting("POP3 ready"))
    link.to_client.clear()
    assert link.exchange(Stls(), Ok("Begin TLS negotiation")) == [Ok("Begin TLS negotiation")]
    link.client.start_tls()
    link.server.start_tls()
    # "<TLS negotiation, further commands are under TLS layer>": our client
    # refuses to send the second STLS, so the example's client line is fed raw.
    with pytest.raises(LocalProtocolError) as info:
        link.client.send(Stls())
    assert info.value.reason == "tls-active"
    link.server.receive_data(b"STLS\r\n")
    link.to_server += b"STLS\r\n"
    assert link.server_event() == UnknownCommand("STLS", b"STLS", "tls-active")
    link.to_client += link.server.send(Err("Command not permitted when TLS active"))
    assert (bytes(link.to_server), bytes(link.to_client)) == (client_bytes, server_bytes)
    assert link.server.our_state is State.AUTHORIZATION
    assert link.server.next_event() is NEED_DATA
