"""Tests for the SASL mechanisms: RFC vectors, client/server pairs, misuse, properties."""

from __future__ import annotations

import base64
import json
import stringprep
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from pop3_sansio._errors import LocalProtocolError, RemoteProtocolError
from pop3_sansio._sasl import (
    SUPPORTED_CLIENT_MECHANISMS,
    SUPPORTED_SERVER_MECHANISMS,
    TOKEN_MECHANISMS,
    CheckPassword,
    CheckToken,
    ClientMechanism,
    CramMD5Client,
    CramMD5Server,
    Failed,
    LoginClient,
    LoginServer,
    LookupScram,
    LookupSecret,
    OAuthBearerClient,
    OAuthBearerServer,
    PlainClient,
    PlainServer,
    ScramClient,
    ScramCredentials,
    ScramServer,
    ScramSHA1Client,
    ScramSHA1Server,
    ScramSHA256Client,
    ScramSHA256Server,
    SendChallenge,
    ServerMechanism,
    Step,
    Succeeded,
    XOAuth2Client,
    XOAuth2Server,
    client_mechanism,
    saslprep,
    server_mechanism,
)

# --------------------------------------------------------------------------------------
# A toy application and a driver loop that plays both sides of one exchange.
# --------------------------------------------------------------------------------------


@dataclass
class App:
    """Answers the server mechanism's requests from in-memory tables."""

    passwords: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user it was issued to
    salt: bytes = b"pop3-sansio-salt"
    iterations: int = 4096

    def answer(self, server: ServerMechanism, step: Step) -> Step:
        if isinstance(step, CheckPassword):
            return server.password_checked(self.passwords.get(step.username) == step.password)
        if isinstance(step, LookupSecret):
            return server.secret_found(self.passwords.get(step.username))
        if isinstance(step, LookupScram):
            password = self.passwords.get(step.username)
            creds = None
            if password is not None:
                creds = ScramCredentials.from_password(
                    server.name[len("SCRAM-") :], password, self.salt, self.iterations
                )
            return server.scram_found(creds)
        assert isinstance(step, CheckToken)
        return server.token_checked(self.tokens.get(step.token) == step.username)


def _complete(client: ClientMechanism) -> bool:
    """``client.is_complete``, read through a call so type checkers do not narrow it."""
    return client.is_complete


def drive(
    client: ClientMechanism, server: ServerMechanism, app: App, *, use_ir: bool = True
) -> Succeeded | Failed:
    """Run one exchange; the client's RemoteProtocolError propagates."""
    initial = client.initial_response() if use_ir else None
    step = server.start(initial)
    for _ in range(10):
        if isinstance(step, (Succeeded, Failed)):
            return step
        if isinstance(step, SendChallenge):
            step = server.receive(client.respond(step.data))
        else:
            step = app.answer(server, step)
    raise AssertionError("the exchange did not end")


# --------------------------------------------------------------------------------------
# SASLprep (RFC 4013). Failures raise ValueError (the mechanisms turn that into
# LocalProtocolError for arguments and Failed("malformed") for client data).
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RFC 4013 section 3, examples 1-5.
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        # Non-ASCII space maps to SPACE (section 2.1); B.1 characters vanish.
        ("a\u00a0b", "a b"),
        ("\u00ad", ""),
        ("", ""),
        # RandALCat-only strings pass the bidi check.
        ("\u0627\u0628", "\u0627\u0628"),
        ("\u0627 1 \u0628", "\u0627 1 \u0628"),
    ],
)
def test_saslprep_examples(text: str, expected: str) -> None:
    assert saslprep(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "\u0007",  # RFC 4013 section 3, example 6: prohibited character
        "\u0627\u0031",  # RFC 4013 section 3, example 7: bidirectional check
        "1\u0627",  # does not start with RandALCat
        "\u0627a\u0628",  # RandALCat mixed with LCat
        "a\x00b",  # C.2.1 ASCII control
        "\ue000",  # C.3 private use
    ],
)
def test_saslprep_errors_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="SASLprep"):
        saslprep(text)


def test_saslprep_unassigned_code_points() -> None:
    # U+0221 was unassigned in Unicode 3.2 (table A.1): a query may hold it, a
    # stored string may not (RFC 3454 section 7).
    assert saslprep("a\u0221", allow_unassigned=True) == "a\u0221"
    with pytest.raises(ValueError, match="unassigned"):
        saslprep("a\u0221")


# --------------------------------------------------------------------------------------
# PLAIN (RFC 4616)
# --------------------------------------------------------------------------------------


def test_plain_rfc4616_examples() -> None:
    # RFC 4616 section 4: "<NUL>tim<NUL>tanstaaftanstaaf" and "Ursel<NUL>Kurt<NUL>xipj3plmq".
    assert PlainClient("tim", "tanstaaftanstaaf").initial_response() == (
        b"\x00tim\x00tanstaaftanstaaf"
    )
    client = PlainClient("Kurt", "xipj3plmq", "Ursel")
    assert not _complete(client)
    assert client.initial_response() == b"Ursel\x00Kurt\x00xipj3plmq"
    assert client.is_complete

    server = PlainServer()
    step = server.start(b"Ursel\x00Kurt\x00xipj3plmq")
    assert step == CheckPassword("Kurt", "xipj3plmq", "Ursel")
    assert "xipj3plmq" not in repr(step)
    assert server.password_checked(True) == Succeeded("Kurt", "Ursel")

    server = PlainServer()
    server.start(b"\x00tim\x00wrong")
    assert server.password_checked(False) == Failed("bad-credentials")


def test_plain_utf8() -> None:
    client = PlainClient("j\u00fcrgen", "p\u00e4ss")
    assert client.initial_response() == "\x00j\u00fcrgen\x00p\u00e4ss".encode()


def test_plain_without_initial_response() -> None:
    client = PlainClient("tim", "pw")
    server = PlainServer()
    assert server.start(None) == SendChallenge(b"")
    assert client.respond(b"") == b"\x00tim\x00pw"
    assert client.is_complete
    assert server.receive(b"\x00tim\x00pw") == CheckPassword("tim", "pw", "")


def test_plain_initial_response_computed_but_not_sent() -> None:
    # RFC 5034 section 4: a driver may withhold a too-long initial response and
    # answer the server's empty challenge instead.
    client = PlainClient("tim", "pw")
    first = client.initial_response()
    assert client.respond(b"") == first
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(b"")
    assert info.value.reason == "sasl-unexpected-challenge"


def test_plain_client_rejects_challenges() -> None:
    client = PlainClient("tim", "pw")
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(b"hello")
    assert info.value.reason == "sasl-bad-challenge"
    # A mechanism that saw a bad challenge is dead.
    with pytest.raises(LocalProtocolError) as local:
        client.respond(b"")
    assert local.value.reason == "sasl-out-of-turn"
    with pytest.raises(LocalProtocolError):
        client.initial_response()

    client = PlainClient("tim", "pw")
    client.initial_response()
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(b"more")
    assert info.value.reason == "sasl-unexpected-challenge"


def test_client_initial_response_only_first() -> None:
    client = PlainClient("tim", "pw")
    client.initial_response()
    with pytest.raises(LocalProtocolError, match="first call"):
        client.initial_response()
    client = PlainClient("tim", "pw")
    client.respond(b"")
    with pytest.raises(LocalProtocolError):
        client.initial_response()


@pytest.mark.parametrize(
    ("username", "password", "authzid"),
    [
        ("", "pw", ""),
        ("tim", "", ""),
        ("t\x00m", "pw", ""),
        ("tim", "p\x00w", ""),
        ("tim", "pw", "a\x00z"),
    ],
)
def test_plain_client_bad_arguments(username: str, password: str, authzid: str) -> None:
    with pytest.raises(LocalProtocolError):
        PlainClient(username, password, authzid)


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"tim\x00pw",
        b"\x00\x00pw",
        b"\x00tim\x00",
        b"\x00tim\x00pw\x00extra",
        b"\x00t\xffm\x00pw",
    ],
)
def test_plain_server_malformed(message: bytes) -> None:
    assert PlainServer().start(message) == Failed("malformed")
    server = PlainServer()
    server.start(None)
    assert server.receive(message) == Failed("malformed")


# --------------------------------------------------------------------------------------
# LOGIN
# --------------------------------------------------------------------------------------


def test_login_client() -> None:
    client = LoginClient("tim", "pw")
    assert client.initial_response() is None
    assert client.respond(b"Username:") == b"tim"
    assert not _complete(client)
    assert client.respond(b"Password:") == b"pw"
    assert client.is_complete
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(b"What?")
    assert info.value.reason == "sasl-unexpected-challenge"


@pytest.mark.parametrize(("username", "password"), [("", "pw"), ("tim", ""), ("t\x00m", "pw")])
def test_login_client_bad_arguments(username: str, password: str) -> None:
    with pytest.raises(LocalProtocolError):
        LoginClient(username, password)


def test_login_server() -> None:
    server = LoginServer()
    assert server.start(None) == SendChallenge(b"Username:")
    assert server.receive(b"tim") == SendChallenge(b"Password:")
    assert server.receive(b"pw") == CheckPassword("tim", "pw", "")
    assert server.password_checked(True) == Succeeded("tim", "")


def test_login_server_rejects_initial_response() -> None:
    # RFC 5034 section 4: LOGIN does not begin with client data.
    assert LoginServer().start(b"tim") == Failed("malformed")
    assert LoginServer().start(b"") == Failed("malformed")


@pytest.mark.parametrize("bad", [b"", b"\xff", b"a\x00b"])
def test_login_server_malformed(bad: bytes) -> None:
    server = LoginServer()
    server.start(None)
    assert server.receive(bad) == Failed("malformed")
    server = LoginServer()
    server.start(None)
    server.receive(b"tim")
    assert server.receive(bad) == Failed("malformed")


# --------------------------------------------------------------------------------------
# CRAM-MD5 (RFC 2195)
# --------------------------------------------------------------------------------------

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_rfc2195_client() -> None:
    client = CramMD5Client("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    assert not _complete(client)
    assert client.respond(RFC2195_CHALLENGE) == RFC2195_RESPONSE
    assert client.is_complete
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(RFC2195_CHALLENGE)
    assert info.value.reason == "sasl-unexpected-challenge"


def test_cram_md5_rfc2195_server() -> None:
    server = CramMD5Server(RFC2195_CHALLENGE)
    assert server.start(None) == SendChallenge(RFC2195_CHALLENGE)
    assert server.receive(RFC2195_RESPONSE) == LookupSecret("tim")
    assert server.secret_found("tanstaaftanstaaf") == Succeeded("tim", "")


@pytest.mark.parametrize(
    ("secret", "expected"),
    [(None, Failed("unknown-user")), ("wrong", Failed("bad-credentials"))],
)
def test_cram_md5_server_failures(secret: str | None, expected: Failed) -> None:
    server = CramMD5Server(RFC2195_CHALLENGE)
    server.start(None)
    server.receive(RFC2195_RESPONSE)
    assert server.secret_found(secret) == expected


def test_cram_md5_server_accepts_upper_case_digest_and_spaces_in_names() -> None:
    server = CramMD5Server(RFC2195_CHALLENGE)
    server.start(None)
    assert server.receive(RFC2195_RESPONSE.upper().replace(b"TIM", b"tim")) == LookupSecret("tim")
    app = App(passwords={"tim smith": "secret"})
    step = drive(CramMD5Client("tim smith", "secret"), CramMD5Server(b"<1.2@h>"), app)
    assert step == Succeeded("tim smith", "")


@pytest.mark.parametrize(
    "bad",
    [
        b"tim",
        b"tim xyz",
        b" b913a602c7eda7a495b4e6e7334d3890",
        b"tim b913a602c7eda7a495b4e6e7334d389",
        b"t\xffm b913a602c7eda7a495b4e6e7334d3890",
    ],
)
def test_cram_md5_server_malformed(bad: bytes) -> None:
    server = CramMD5Server(RFC2195_CHALLENGE)
    server.start(None)
    assert server.receive(bad) == Failed("malformed")


def test_cram_md5_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        CramMD5Server(b"")
    with pytest.raises(LocalProtocolError):
        CramMD5Client("", "pw")
    assert CramMD5Server(RFC2195_CHALLENGE).start(RFC2195_RESPONSE) == Failed("malformed")
    with pytest.raises(RemoteProtocolError) as info:
        CramMD5Client("tim", "pw").respond(b"")
    assert info.value.reason == "sasl-bad-challenge"


# --------------------------------------------------------------------------------------
# XOAUTH2
# --------------------------------------------------------------------------------------

TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="


def test_xoauth2_client_message() -> None:
    client = XOAuth2Client("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg")
    assert client.error is None
    assert client.initial_response() == (
        b"user=someuser@example.com\x01"
        b"auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01"
    )
    assert client.is_complete


@pytest.mark.parametrize(
    ("challenge", "error"),
    [
        (
            b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}',
            {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"},
        ),
        (b"not json", {"raw": "not json"}),
        (b"[1, 2]", {"raw": "[1, 2]"}),
        (b"\xff{}", {"raw": "\ufffd{}"}),
        (b"[" * 100_000, {"raw": "[" * 100_000}),
    ],
)
def test_xoauth2_client_error_challenge(challenge: bytes, error: dict[str, object]) -> None:
    client = XOAuth2Client("u", TOKEN)
    client.initial_response()
    assert client.respond(challenge) == b""
    assert client.error == error
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(challenge)
    assert info.value.reason == "sasl-unexpected-challenge"


@pytest.mark.parametrize(("username", "token"), [("", TOKEN), ("a\x01b", TOKEN), ("u", "a b")])
def test_xoauth2_client_bad_arguments(username: str, token: str) -> None:
    with pytest.raises(LocalProtocolError):
        XOAuth2Client(username, token)


def test_xoauth2_server_success_and_identity_override() -> None:
    server = XOAuth2Server()
    assert server.start(None) == SendChallenge(b"")
    step = server.receive(b"user=u\xc3\xa9\x01auth=bearer  tok\x01\x01")
    assert step == CheckToken("u\u00e9", "tok", "")
    assert "tok" not in repr(step)
    assert server.token_checked(True, username="canonical") == Succeeded("canonical", "")


def test_xoauth2_server_rejected_token() -> None:
    server = XOAuth2Server(scope="https://mail.google.com/")
    server.start(b"user=u\x01auth=Bearer tok\x01\x01")
    step = server.token_checked(False)
    assert isinstance(step, SendChallenge)
    assert json.loads(step.data) == {"status": "invalid_token", "scope": "https://mail.google.com/"}
    assert server.receive(b"") == Failed("bad-credentials")


def test_xoauth2_server_non_bearer_auth_gets_error_challenge() -> None:
    server = XOAuth2Server()
    assert server.start(b"user=u\x01auth=Basic dTpw\x01\x01") == SendChallenge(
        b'{"status":"invalid_token"}'
    )
    assert server.receive(b"") == Failed("bad-credentials")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x01",
        b"\xff",
        b"auth=Bearer tok\x01user=u\x01\x01",  # fixed order: user first
        b"user=\x01auth=Bearer tok\x01\x01",  # empty user
        b"user=u\x00v\x01auth=Bearer tok\x01\x01",
        b"user=u\x01auth=Bearer tok\x01",  # missing final ^A
        b"user=u\x01auth=Bearer tok\x01\x01x",
        b"user=u\x01\x01",  # no auth
        b"user=u\x01auth=Bearer a\x01auth=Bearer b\x01\x01",  # duplicate key
        b"user=u\x01user=v\x01auth=Bearer tok\x01\x01",
        b"user=u\x01bad key=1\x01auth=Bearer tok\x01\x01",
    ],
)
def test_xoauth2_server_malformed(message: bytes) -> None:
    assert XOAuth2Server().start(message) == Failed("malformed")


# --------------------------------------------------------------------------------------
# OAUTHBEARER (RFC 7628)
# --------------------------------------------------------------------------------------

RFC7628_IR_143 = (
    b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
    b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
)
RFC7628_ERROR = (
    b'{"status":"invalid_token","scope":"example_scope",'
    b'"openid-configuration":"https://example.com/.well-known/openid-configuration"}'
)


def test_oauthbearer_rfc7628_section_4_1() -> None:
    client = OAuthBearerClient(TOKEN, "user@example.com", "server.example.com", 143)
    initial = client.initial_response()
    assert initial == RFC7628_IR_143
    # The base64 the RFC shows for the IMAP exchange.
    assert base64.b64encode(initial or b"") == (
        b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9"
        b"QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )
    smtp = OAuthBearerClient(TOKEN, "user@example.com", "server.example.com", 587)
    assert base64.b64encode(smtp.initial_response() or b"") == (
        b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9"
        b"QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )

    server = OAuthBearerServer()
    assert server.start(initial) == CheckToken(
        "user@example.com", TOKEN, "user@example.com", "server.example.com", 143
    )
    assert server.token_checked(True) == Succeeded("user@example.com", "user@example.com")


def test_oauthbearer_rfc7628_section_4_3_failed_exchange() -> None:
    server = OAuthBearerServer(
        scope="example_scope",
        openid_configuration="https://example.com/.well-known/openid-configuration",
    )
    initial = base64.b64decode(
        b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9AQE="
    )
    assert initial == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=\x01\x01"
    )
    step = server.start(initial)
    assert step == SendChallenge(RFC7628_ERROR)
    assert base64.b64encode(RFC7628_ERROR) == (
        b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxl"
        b"X3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4"
        b"YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9u"
        b"In0="
    )

    client = OAuthBearerClient(TOKEN, "user@example.com")
    client.initial_response()
    # RFC 7628 section 3.2.3: the client answers the error with a single ^A ("AQ==").
    assert client.respond(RFC7628_ERROR) == b"\x01"
    assert client.error == json.loads(RFC7628_ERROR)
    assert server.receive(b"\x01") == Failed("bad-credentials")


def test_oauthbearer_client_variants() -> None:
    assert OAuthBearerClient("tok").initial_response() == b"n,,\x01auth=Bearer tok\x01\x01"
    client = OAuthBearerClient("tok", authzid="a,b=c", port=993)
    message = client.initial_response()
    assert message == b"n,a=a=2Cb=3Dc,\x01port=993\x01auth=Bearer tok\x01\x01"
    step = OAuthBearerServer().start(message)
    assert step == CheckToken("a,b=c", "tok", "a,b=c", None, 993)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": ""},
        {"token": "tok en"},
        {"token": "tok", "authzid": "a\x01"},
        {"token": "tok", "authzid": "a\x00"},
        {"token": "tok", "host": ""},
        {"token": "tok", "host": "a b"},
        {"token": "tok", "port": 0},
        {"token": "tok", "port": 65536},
    ],
)
def test_oauthbearer_client_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        OAuthBearerClient(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        b"\x01",  # only valid as the reply to an error (RFC 7628 section 3.1)
        b"p=tls-unique,,\x01auth=Bearer tok\x01\x01",
        b"n,a=x=2Xy,\x01auth=Bearer tok\x01\x01",
        b"n,a=,\x01auth=Bearer tok\x01\x01",
        b"n,\x01auth=Bearer tok\x01\x01",
        b"n,,\x01port=0143\x01auth=Bearer tok\x01\x01",
        b"n,,\x01port=http\x01auth=Bearer tok\x01\x01",
        b"n,,\x01host=h\x01\x01",
        b"n,,\x01auth=Bearer tok\x01",
        b"n,,\xff\x01auth=Bearer tok\x01\x01",
    ],
)
def test_oauthbearer_server_malformed(message: bytes) -> None:
    assert OAuthBearerServer().start(message) == Failed("malformed")


def test_oauthbearer_server_rejected_token_and_unknown_keys() -> None:
    server = OAuthBearerServer()
    assert server.start(None) == SendChallenge(b"")
    step = server.receive(b"y,,\x01qs=x\x01auth=Bearer tok\x01\x01")
    assert step == CheckToken("", "tok", "")
    assert server.token_checked(False) == SendChallenge(b'{"status":"invalid_token"}')
    assert server.receive(b"\x01") == Failed("bad-credentials")


# --------------------------------------------------------------------------------------
# SCRAM (RFC 5802, RFC 7677)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    """One published SCRAM example exchange (user "user", password "pencil", i=4096)."""

    hash_name: str
    client_nonce: str
    server_nonce: str
    salt: bytes
    client_first: bytes
    server_first: bytes
    client_final: bytes
    server_final: bytes


# RFC 5802 section 5.
RFC5802 = Vector(
    hash_name="sha1",
    client_nonce="fyko+d2lbbFgONRv9qkxdawL",
    server_nonce="3rfcNHYJY1ZVvWVs7j",
    salt=base64.b64decode("QSXCR+Q6sek8bf92"),
    client_first=b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    server_first=b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    client_final=(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    ),
    server_final=b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
)
# RFC 7677 section 3.
RFC7677 = Vector(
    hash_name="sha256",
    client_nonce="rOprNGfwEbeRWgbNEkqO",
    server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="),
    client_first=b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    server_first=(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    ),
    client_final=(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    ),
    server_final=b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
)
VECTORS = pytest.mark.parametrize("vector", [RFC5802, RFC7677], ids=["rfc5802", "rfc7677"])


@VECTORS
def test_scram_client_rfc_vectors(vector: Vector) -> None:
    client = ScramClient(vector.hash_name, "user", "pencil", vector.client_nonce)
    assert client.name == {"sha1": "SCRAM-SHA-1", "sha256": "SCRAM-SHA-256"}[vector.hash_name]
    assert client.initial_response() == vector.client_first
    assert client.respond(vector.server_first) == vector.client_final
    assert not _complete(client)
    assert client.respond(vector.server_final) == b""
    assert client.is_complete
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(b"")
    assert info.value.reason == "sasl-unexpected-challenge"


@VECTORS
def test_scram_server_rfc_vectors(vector: Vector) -> None:
    server = ScramServer(vector.hash_name, vector.server_nonce)
    assert server.start(vector.client_first) == LookupScram("user")
    creds = ScramCredentials.from_password(vector.hash_name, "pencil", vector.salt, 4096)
    assert server.scram_found(creds) == SendChallenge(vector.server_first)
    assert server.receive(vector.client_final) == SendChallenge(vector.server_final)
    assert server.receive(b"") == Succeeded("user", "")


def test_scram_subclasses_and_generic_class_agree() -> None:
    assert ScramSHA1Client.name == "SCRAM-SHA-1"
    assert ScramSHA256Client.name == "SCRAM-SHA-256"
    assert ScramSHA1Server("n").name == ScramServer("SHA-1", "n").name == "SCRAM-SHA-1"
    assert ScramSHA256Server.name == "SCRAM-SHA-256"
    a = ScramSHA256Client("user", "pencil", "abc").initial_response()
    b = ScramClient("SHA-256", "user", "pencil", "abc").initial_response()
    assert a == b == b"n,,n=user,r=abc"


def test_scram_without_initial_response() -> None:
    client = ScramSHA1Client("user", "pencil", RFC5802.client_nonce)
    server = ScramSHA1Server(RFC5802.server_nonce)
    assert server.start(None) == SendChallenge(b"")
    assert client.respond(b"") == RFC5802.client_first
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(b"")  # a second empty challenge is not server-first
    assert info.value.reason == "sasl-bad-challenge"


def test_scram_initial_response_withheld() -> None:
    client = ScramSHA1Client("user", "pencil", RFC5802.client_nonce)
    first = client.initial_response()
    assert client.respond(b"") == first
    assert client.respond(RFC5802.server_first) == RFC5802.client_final


def test_scram_username_escaping_and_authzid() -> None:
    app = App(passwords={"a,b=c": "pw"})
    client = ScramSHA256Client("a,b=c", "pw", "cnonce", authzid="ad,min")
    assert client.initial_response() == b"n,a=ad=2Cmin,n=a=2Cb=3Dc,r=cnonce"
    client = ScramSHA256Client("a,b=c", "pw", "cnonce", authzid="ad,min")
    step = drive(client, ScramSHA256Server("snonce"), app)
    assert step == Succeeded("a,b=c", "ad,min")
    assert client.is_complete


def test_scram_saslprep_applies_to_password_and_username() -> None:
    # The server stores "IX" prepared; a client typing U+2168 or a soft hyphen matches.
    app = App(passwords={"IX": "IX"})
    client = ScramSHA256Client("\u2168", "I\u00adX", "cnonce")
    assert drive(client, ScramSHA256Server("snonce"), app) == Succeeded("IX", "")


def _server_first(client_nonce: str = "cnonce", rest: str = ",s=QSXCR+Q6sek8bf92,i=4096") -> bytes:
    return f"r={client_nonce}snonce{rest}".encode()


@pytest.mark.parametrize(
    ("challenge", "reason"),
    [
        (b"\xff", "sasl-bad-challenge"),
        (b"r=cnoncesnonce,s=QSXCR+Q6sek8bf92", "sasl-bad-challenge"),
        (b"m=ext,r=cnoncesnonce,s=QSXCR+Q6sek8bf92,i=4096", "sasl-bad-challenge"),
        (b"s=QSXCR+Q6sek8bf92,r=cnoncesnonce,i=4096", "sasl-bad-challenge"),
        (b"r=cnoncesnonce,s=QSXCR+Q6sek8bf92,x=4096", "sasl-bad-challenge"),
        (b"r=cnoncesnonce,i=4096,s=QSXCR+Q6sek8bf92", "sasl-bad-challenge"),
        (b"r=othernonce,s=QSXCR+Q6sek8bf92,i=4096", "sasl-bad-nonce"),
        (b"r=cnonce,s=QSXCR+Q6sek8bf92,i=4096", "sasl-bad-nonce"),
        (b"r=cnonce s,s=QSXCR+Q6sek8bf92,i=4096", "sasl-bad-nonce"),
        (_server_first(rest=",s=,i=4096"), "sasl-bad-challenge"),
        (_server_first(rest=",s=!!!!,i=4096"), "sasl-bad-challenge"),
        (_server_first(rest=",s=QR==,i=4096"), "sasl-bad-challenge"),  # non-canonical
        (_server_first(rest=",s=\u00e9,i=4096"), "sasl-bad-challenge"),
        (_server_first(rest=",s=QSXCR+Q6sek8bf92,i="), "sasl-bad-challenge"),
        (_server_first(rest=",s=QSXCR+Q6sek8bf92,i=04096"), "sasl-bad-challenge"),
        (_server_first(rest=",s=QSXCR+Q6sek8bf92,i=-1"), "sasl-bad-challenge"),
        (_server_first(rest=",s=QSXCR+Q6sek8bf92,i=1000000000"), "sasl-bad-challenge"),
        (_server_first(rest=",s=QSXCR+Q6sek8bf92,i=4095"), "sasl-bad-iterations"),
        (_server_first(rest=",s=QSXCR+Q6sek8bf92,i=10000001"), "sasl-bad-iterations"),
    ],
)
def test_scram_client_rejects_server_first(challenge: bytes, reason: str) -> None:
    client = ScramSHA1Client("user", "pencil", "cnonce")
    client.initial_response()
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(challenge)
    assert info.value.reason == reason
    assert not _complete(client)


def test_scram_client_iteration_bounds_are_configurable() -> None:
    client = ScramSHA1Client("user", "pencil", "cnonce", min_iterations=1, max_iterations=2)
    client.initial_response()
    assert client.respond(_server_first(rest=",s=QSXCR+Q6sek8bf92,i=2,ext=1")).startswith(
        b"c=biws,r=cnoncesnonce,p="
    )
    client = ScramSHA1Client("user", "pencil", "cnonce", min_iterations=1, max_iterations=2)
    client.initial_response()
    with pytest.raises(RemoteProtocolError, match=r"outside \[1, 2\]"):
        client.respond(_server_first(rest=",s=QSXCR+Q6sek8bf92,i=3"))


def _scram_client_after_final() -> ScramClient:
    client = ScramSHA1Client("user", "pencil", RFC5802.client_nonce)
    client.initial_response()
    client.respond(RFC5802.server_first)
    return client


@pytest.mark.parametrize(
    ("challenge", "reason", "text"),
    [
        (b"e=invalid-proof", "sasl-server-error", "invalid-proof"),
        (b"e=other-error,x=1", "sasl-server-error", "other-error"),
        (b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "sasl-bad-server-signature", "mismatch"),
        (b"v=rmF9pqV8S7suAoZWja4dJRkF", "sasl-bad-server-signature", "mismatch"),
        (b"v=!!", "sasl-bad-challenge", "malformed"),
        (b"x=rmF9pqV8S7suAoZWja4dJRkFsKQ=", "sasl-bad-challenge", "malformed"),
        (b"", "sasl-bad-challenge", "malformed"),
    ],
)
def test_scram_client_rejects_server_final(challenge: bytes, reason: str, text: str) -> None:
    client = _scram_client_after_final()
    with pytest.raises(RemoteProtocolError, match=text) as info:
        client.respond(challenge)
    assert info.value.reason == reason
    assert not _complete(client)
    with pytest.raises(LocalProtocolError):
        client.respond(RFC5802.server_final)


def test_scram_client_accepts_server_final_extensions() -> None:
    client = _scram_client_after_final()
    assert client.respond(RFC5802.server_final + b",ext=1") == b""
    assert client.is_complete


def test_scram_client_first_challenge_must_be_empty() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        ScramSHA1Client("user", "pencil", "cnonce").respond(RFC5802.server_first)
    assert info.value.reason == "sasl-bad-challenge"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("md5", "user", "pw", "n"), {}),
        (("sha1", "", "pw", "n"), {}),
        (("sha1", "\u00ad", "pw", "n"), {}),  # prepares to the empty string
        (("sha1", "us\u0007er", "pw", "n"), {}),
        (("sha1", "user", "\u0627a", "n"), {}),
        (("sha1", "user", "pw", ""), {}),
        (("sha1", "user", "pw", "a,b"), {}),
        (("sha1", "user", "pw", "n"), {"authzid": "a\x00"}),
        (("sha1", "user", "pw", "n"), {"min_iterations": 0}),
        (("sha1", "user", "pw", "n"), {"min_iterations": 10, "max_iterations": 9}),
    ],
)
def test_scram_client_bad_arguments(args: tuple[str, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        ScramClient(*args, **kwargs)  # type: ignore[arg-type]


def test_scram_credentials_from_password() -> None:
    creds = ScramCredentials.from_password("SHA-256", "pencil", b"salt", 1)
    assert len(creds.stored_key) == len(creds.server_key) == 32
    assert creds.salt == b"salt"
    assert creds.iterations == 1
    # SASLprep makes equivalent spellings of a password derive the same keys.
    assert ScramCredentials.from_password("sha256", "\u2168", b"salt", 1) == (
        ScramCredentials.from_password("sha256", "IX", b"salt", 1)
    )
    for args in [
        ("md5", "pw", b"salt", 1),
        ("sha1", "pw", b"", 1),
        ("sha1", "pw", b"salt", 0),
        ("sha1", "\u0007", b"salt", 1),
    ]:
        with pytest.raises(LocalProtocolError):
            ScramCredentials.from_password(*args)


def _started_scram_server(client_first: bytes = b"n,,n=user,r=cnonce") -> ScramServer:
    server = ScramSHA1Server("snonce")
    assert server.start(client_first) == LookupScram("user")
    return server


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\xff", "malformed"),
        (b"", "malformed"),
        (b"n,,", "malformed"),
        (b"x,,n=user,r=cnonce", "malformed"),
        (b"p=tls-unique,,n=user,r=cnonce", "unsupported-channel-binding"),
        (b"n,a=,n=user,r=cnonce", "malformed"),
        (b"n,a=x=2Dy,n=user,r=cnonce", "malformed"),
        (b"n,,m=ext,n=user,r=cnonce", "malformed"),
        (b"n,,r=cnonce,n=user", "malformed"),
        (b"n,,n=user", "malformed"),
        (b"n,,n=user,x=cnonce", "malformed"),
        (b"n,,n=,r=cnonce", "malformed"),
        (b"n,,n=us=er,r=cnonce", "malformed"),
        (b"n,,n=user,r=", "malformed"),
        (b"n,,n=user,r=c\x7fnonce", "malformed"),
        (b"n,,n=us\x07er,r=cnonce", "malformed"),  # fails SASLprep
        (b"n,,n=\xc2\xad,r=cnonce", "malformed"),  # prepares to the empty string
    ],
)
def test_scram_server_rejects_client_first(message: bytes, reason: str) -> None:
    assert ScramSHA1Server("snonce").start(message) == Failed(reason)


def test_scram_server_accepts_y_flag_and_extensions() -> None:
    server = ScramSHA1Server("snonce")
    assert server.start(b"y,,n=user,r=cnonce,ext=1") == LookupScram("user")


def _scram_server_waiting_for_final(password: str = "pencil") -> ScramServer:
    server = _started_scram_server()
    server.scram_found(ScramCredentials.from_password("sha1", password, b"salt", 4096))
    return server


def _client_final(password: str = "pencil") -> bytes:
    """A valid client-final for _scram_server_waiting_for_final's exchange."""
    client = ScramSHA1Client("user", password, "cnonce")
    client.initial_response()
    return client.respond(b"r=cnoncesnonce,s=" + base64.b64encode(b"salt") + b",i=4096")


def test_scram_server_full_exchange_and_bad_password() -> None:
    server = _scram_server_waiting_for_final()
    step = server.receive(_client_final())
    assert isinstance(step, SendChallenge)
    assert step.data.startswith(b"v=")
    assert server.receive(b"junk") == Failed("malformed")

    server = _scram_server_waiting_for_final()
    assert server.receive(_client_final(password="wrong")) == Failed("bad-credentials")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda m: b"\xff" + m,
        lambda m: m.replace(b",p=", b",q="),
        lambda m: m.replace(b"c=biws", b"c=eSws"),  # channel binding data differs
        lambda m: m.replace(b"c=biws", b"c=!!!!"),
        lambda m: m.replace(b"c=biws", b"x=biws"),
        lambda m: m.replace(b"r=cnoncesnonce", b"r=cnoncesnoncf"),
        lambda m: m.split(b",r=")[0] + b",p=" + m.split(b",p=")[1],
        lambda m: m.split(b",p=")[0] + b",p=!!!!",
        lambda m: m.split(b",p=")[0] + b",p=AAAA",  # proof of the wrong length
    ],
)
def test_scram_server_rejects_client_final(mangle: object) -> None:
    server = _scram_server_waiting_for_final()
    assert server.receive(mangle(_client_final())) == Failed("malformed")  # type: ignore[operator]


def test_scram_server_detects_unsigned_client_final_insertion() -> None:
    server = _scram_server_waiting_for_final()
    # An extension between nonce and proof is part of AuthMessage, which the proof
    # signs: inserting one in transit makes the proof wrong.
    final = _client_final()
    without_proof, _, proof = final.partition(b",p=")
    assert server.receive(without_proof + b",ext=1,p=" + proof) == Failed("bad-credentials")


def test_scram_server_unknown_user() -> None:
    server = _started_scram_server()
    assert server.scram_found(None) == Failed("unknown-user")


def test_scram_server_mock_exchange_for_unknown_users() -> None:
    def server_first(user: str) -> bytes:
        server = ScramSHA1Server("snonce", mock_key=b"k", mock_iterations=4096)
        server.start(f"n,,n={user},r=cnonce".encode())
        step = server.scram_found(None)
        assert isinstance(step, SendChallenge)
        return step.data

    # The fake salt is stable per user and differs between users.
    assert server_first("ghost") == server_first("ghost")
    assert server_first("ghost") != server_first("spook")
    assert server_first("ghost").endswith(b",i=4096")

    app = App()
    server = ScramSHA1Server("snonce", mock_key=b"k")
    assert drive(ScramSHA1Client("ghost", "pw", "cnonce"), server, app) == Failed("unknown-user")


def test_scram_server_rejects_bad_credentials_from_app() -> None:
    good = ScramCredentials.from_password("sha1", "pw", b"salt", 1)
    for creds in [
        ScramCredentials(b"", 1, good.stored_key, good.server_key),
        ScramCredentials(b"s", 0, good.stored_key, good.server_key),
        ScramCredentials(b"s", 1, good.stored_key + b"x", good.server_key),
        ScramCredentials(b"s", 1, good.stored_key, b"short"),
        ScramCredentials.from_password("sha256", "pw", b"salt", 1),
    ]:
        server = _started_scram_server()
        with pytest.raises(LocalProtocolError):
            server.scram_found(creds)


def test_scram_server_bad_arguments() -> None:
    for args, kwargs in [
        (("md5", "n"), {}),
        (("sha1", ""), {}),
        (("sha1", "a,b"), {}),
        (("sha1", "n"), {"mock_iterations": 0}),
    ]:
        with pytest.raises(LocalProtocolError):
            ScramServer(*args, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Server state machine misuse
# --------------------------------------------------------------------------------------


def test_server_calls_out_of_turn() -> None:
    server = PlainServer()
    with pytest.raises(LocalProtocolError, match=r"expected start\(\)") as info:
        server.receive(b"")
    assert info.value.reason == "sasl-out-of-turn"
    server.start(None)
    with pytest.raises(LocalProtocolError):
        server.start(None)
    with pytest.raises(LocalProtocolError):
        server.password_checked(True)
    server.receive(b"\x00u\x00p")
    calls: list[Callable[[], object]] = [
        lambda: server.receive(b""),
        lambda: server.secret_found("x"),
        lambda: server.token_checked(True),
        lambda: server.scram_found(None),
    ]
    for call in calls:
        with pytest.raises(LocalProtocolError):
            call()
    server.password_checked(True)
    with pytest.raises(LocalProtocolError, match="exchange over"):
        server.password_checked(True)
    failed = PlainServer()
    failed.start(b"junk")
    with pytest.raises(LocalProtocolError):
        failed.receive(b"\x00u\x00p")


# --------------------------------------------------------------------------------------
# Factories and registries
# --------------------------------------------------------------------------------------


def test_registries() -> None:
    assert SUPPORTED_CLIENT_MECHANISMS == (
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
    )
    assert TOKEN_MECHANISMS == ("OAUTHBEARER", "XOAUTH2")
    assert set(SUPPORTED_SERVER_MECHANISMS) == {*SUPPORTED_CLIENT_MECHANISMS, *TOKEN_MECHANISMS}


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("scram-sha-256", ScramSHA256Client),
        ("SCRAM-SHA-1", ScramSHA1Client),
        ("cram-md5", CramMD5Client),
        ("Plain", PlainClient),
        ("LOGIN", LoginClient),
        ("oauthbearer", OAuthBearerClient),
        ("XOAUTH2", XOAuth2Client),
    ],
)
def test_client_mechanism_factory(name: str, cls: type[ClientMechanism]) -> None:
    mech = client_mechanism(name, username="u", password="pw", token="tok", nonce="n")
    assert type(mech) is cls
    assert mech.name == name.upper()


def test_client_mechanism_factory_arguments() -> None:
    mech = client_mechanism("OAUTHBEARER", username="me@example.com", token="tok")
    assert mech.initial_response() == b"n,a=me@example.com,\x01auth=Bearer tok\x01\x01"
    for name, kwargs in [
        ("DIGEST-MD5", {"password": "pw"}),
        ("XOAUTH2", {"password": "pw"}),
        ("OAUTHBEARER", {}),
        ("PLAIN", {"token": "tok"}),
        ("SCRAM-SHA-1", {"password": "pw"}),
    ]:
        with pytest.raises(LocalProtocolError):
            client_mechanism(name, username="u", **kwargs)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("scram-sha-256", ScramSHA256Server),
        ("SCRAM-SHA-1", ScramSHA1Server),
        ("cram-md5", CramMD5Server),
        ("Plain", PlainServer),
        ("LOGIN", LoginServer),
        ("oauthbearer", OAuthBearerServer),
        ("XOAUTH2", XOAuth2Server),
    ],
)
def test_server_mechanism_factory(name: str, cls: type[ServerMechanism]) -> None:
    mech = server_mechanism(name, nonce="n", challenge=b"<1@h>")
    assert type(mech) is cls
    assert mech.name == name.upper()
    assert mech.allows_initial_response is (cls not in (LoginServer, CramMD5Server))


def test_server_mechanism_factory_arguments() -> None:
    for name, kwargs in [
        ("DIGEST-MD5", {}),
        ("SCRAM-SHA-256", {"challenge": b"<1@h>"}),
        ("CRAM-MD5", {"nonce": "n"}),
    ]:
        with pytest.raises(LocalProtocolError):
            server_mechanism(name, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Every client against its server
# --------------------------------------------------------------------------------------

PAIRS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]


def _pair(name: str, username: str, password: str) -> tuple[ClientMechanism, ServerMechanism]:
    client = client_mechanism(name, username=username, password=password, nonce="c-nonce")
    server = server_mechanism(name, nonce="s-nonce", challenge=b"<42.1@pop.example>")
    return client, server


@pytest.mark.parametrize("use_ir", [True, False])
@pytest.mark.parametrize("name", PAIRS)
def test_pairs(name: str, use_ir: bool) -> None:
    app = App(passwords={"alice": "s3cret"})
    client, server = _pair(name, "alice", "s3cret")
    assert drive(client, server, app, use_ir=use_ir) == Succeeded("alice", "")
    assert client.is_complete

    client, server = _pair(name, "alice", "wrong")
    assert drive(client, server, app, use_ir=use_ir) == Failed("bad-credentials")

    client, server = _pair(name, "bob", "s3cret")
    expected = {"CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"}
    reason = "unknown-user" if name in expected else "bad-credentials"
    assert drive(client, server, app, use_ir=use_ir) == Failed(reason)


@pytest.mark.parametrize("use_ir", [True, False])
@pytest.mark.parametrize("name", TOKEN_MECHANISMS)
def test_token_pairs(name: str, use_ir: bool) -> None:
    app = App(tokens={"good-token": "alice"})
    client = client_mechanism(name, username="alice", token="good-token")
    result = drive(client, server_mechanism(name), app, use_ir=use_ir)
    assert result.__class__ is Succeeded
    assert client.is_complete

    client = client_mechanism(name, username="alice", token="bad-token")
    assert isinstance(client, (XOAuth2Client, OAuthBearerClient))
    assert drive(client, server_mechanism(name), app, use_ir=use_ir) == Failed("bad-credentials")
    assert client.error == {"status": "invalid_token"}


def test_scram_tampered_server_signature() -> None:
    app = App(passwords={"alice": "s3cret"})
    client = ScramSHA256Client("alice", "s3cret", "c-nonce")
    server = ScramSHA256Server("s-nonce")
    step = server.start(client.initial_response())
    step = app.answer(server, step)
    assert isinstance(step, SendChallenge)
    step = server.receive(client.respond(step.data))
    assert isinstance(step, SendChallenge)
    forged = base64.b64encode(bytes(32)).decode()
    with pytest.raises(RemoteProtocolError) as info:
        client.respond(f"v={forged}".encode())
    assert info.value.reason == "sasl-bad-server-signature"


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------


def _char_ok(ch: str) -> bool:
    """A character that survives SASLprep on its own and is not right-to-left."""
    try:
        return saslprep(ch) != "" and not stringprep.in_table_d1(ch)
    except ValueError:
        return False


def _prepares(text: str) -> bool:
    try:
        return saslprep(text) != ""
    except ValueError:
        return False


CHARS = st.characters(categories=("L", "N", "P", "S", "Zs")).filter(_char_ok)
NAMES = st.text(CHARS, min_size=1, max_size=16).filter(_prepares)
TOKENS = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,40}={0,2}", fullmatch=True)
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@PROPERTY
@given(name=st.sampled_from(PAIRS), username=NAMES, password=NAMES, use_ir=st.booleans())
def test_property_password_pairs(name: str, username: str, password: str, use_ir: bool) -> None:
    app = App(passwords={saslprep(username, allow_unassigned=True): password}, iterations=4096)
    if name in ("PLAIN", "LOGIN", "CRAM-MD5"):
        app.passwords = {username: password}
    client, server = _pair(name, username, password)
    result = drive(client, server, app, use_ir=use_ir)
    assert isinstance(result, Succeeded)
    assert client.is_complete

    client, server = _pair(name, username, password + "x")
    assert drive(client, server, app, use_ir=use_ir) == Failed("bad-credentials")


@PROPERTY
@given(name=st.sampled_from(TOKEN_MECHANISMS), username=NAMES, token=TOKENS, other=TOKENS)
def test_property_token_pairs(name: str, username: str, token: str, other: str) -> None:
    assume(token != other)
    app = App(tokens={token: username})
    client = client_mechanism(name, username=username, token=token)
    assert drive(client, server_mechanism(name), app) == Succeeded(
        username, "" if name == "XOAUTH2" else username
    )
    client = client_mechanism(name, username=username, token=other)
    assert drive(client, server_mechanism(name), app) == Failed("bad-credentials")
