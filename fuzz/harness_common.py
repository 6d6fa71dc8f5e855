"""The fuzzing invariants, shared by the atheris harnesses and the smoke tests.

``check_client(data)`` and ``check_server(data)`` raise ``AssertionError`` (or
let an unexpected exception escape) when the core breaks one of its promises:

1. Only ``RemoteProtocolError`` comes out of ``next_event()`` for any input
   (docs/architecture.md, invariant 3); a ``LocalProtocolError`` is allowed only from a
   client ``send()``, whose script is fixed and may misfire.
2. Feeding the input whole and byte by byte gives the same trace: events (with
   adjacent ``Data`` merged), the bytes we sent, and the error type and
   ``reason`` if one was raised (invariant 2).
3. ``conn.buffered`` never exceeds ``max_buffer_size`` plus the size of the one
   receive just made (invariant 6); checked with a small limit as well.

The first byte of the input picks the options; the rest is what the peer sends.
Client: bits 0-2 the script (CLIENT_SCRIPTS), 8 pipelining, 16 implicit TLS,
32 cancel SASL challenges, 64 leave them unanswered. Server: 1 a non-empty
first challenge, 16 implicit TLS, 64 the RFC 1939 APOP greeting, 128 Dovecot's.

``check_proxy``, ``check_sasl`` and ``check_parsers`` (the SASL mechanisms; the
capability, listing, response-code, base64 and Maildir file-name parsers) are
described at their sections below and in fuzz/README.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pop3_sansio as p
from pop3_maildrop._base import is_valid_uid, make_unique
from pop3_maildrop._maildir import _base_uid, _twin_uid, _unique_part
from pop3_sansio._listing import MAX_NUMBER_DIGITS, MAX_UID_LENGTH
from pop3_sansio.client import Capabilities
from pop3_sansio.codec import (
    AUTH,
    SYS_PERM,
    apop_digest,
    b64decode_strict,
    b64encode,
    check_apop_digest,
    parse_scan_line,
    parse_scan_listing,
    parse_stat,
    parse_uid_line,
    parse_uid_listing,
    split_response_code,
)
from pop3_sansio.proxy import (
    MAX_PROXY_V1_LENGTH,
    MAX_PROXY_V2_LENGTH,
    ProxyHeaderError,
    ProxyParser,
)
from pop3_sansio.sasl import (
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
    ScramCredentials,
    ScramSHA1Client,
    ScramSHA1Server,
    ScramSHA256Client,
    ScramSHA256Server,
    SendChallenge,
    ServerMechanism,
    Succeeded,
    XOAuth2Client,
    XOAuth2Server,
    server_mechanism,
)

__all__ = [
    "CLIENT_SCRIPTS",
    "PARSERS",
    "SASL_MECHANISMS",
    "SASL_SEPARATOR",
    "SERVER_SECRET",
    "check_client",
    "check_parsers",
    "check_proxy",
    "check_sasl",
    "check_server",
    "client_trace",
    "merge_data",
    "proxy_trace",
    "sasl_client_trace",
    "sasl_server_trace",
    "server_trace",
]

SERVER_SECRET = "tanstaaf"  # RFC 1939 section 7's example secret for mrose
_SMALL_BUFFER = 40  # below every line limit: the bounded pass exercises "buffer-full"
_SMALL_CHUNK = 7

Trace = list[tuple[Any, ...]]

# --- the client's scripts ---------------------------------------------------------
#
# "apop" stands for an APOP command built from the greeting's timestamp. Every
# script is tried in order; a command that is not valid once the commands in
# flight are answered is skipped (see _ClientDriver.pump).

_APOP = "apop"

CLIENT_SCRIPTS: tuple[tuple[Any, ...], ...] = (
    # 0: RFC 1939 section 10 with USER/PASS.
    (
        p.User("mrose"),
        p.Pass(SERVER_SECRET),
        p.Stat(),
        p.List(),
        p.Retr(1),
        p.Dele(1),
        p.Retr(2),
        p.Dele(2),
        p.Quit(),
    ),
    # 1: RFC 5034 section 6's example: CAPA, STLS, CAPA, AUTH PLAIN with a challenge.
    (p.Capa(), p.Stls(), p.Capa(), p.Auth("PLAIN"), p.List(), p.Quit()),
    # 2: AUTH PLAIN with an initial response, then listings.
    (
        p.Auth("PLAIN", b"\0test\0test"),
        p.Uidl(),
        p.Uidl(1),
        p.List(1),
        p.Top(1, 0),
        p.Quit(),
    ),
    # 3: Dovecot-like: CAPA, a failed login, a good one, listings, RETR.
    (
        p.Capa(),
        p.User("alice"),
        p.Pass("wrong"),
        p.User("alice"),
        p.Pass("secret"),
        p.List(),
        p.Uidl(),
        p.Retr(1),
        p.Quit(),
    ),
    # 4: RFC 1939 section 10 exactly: APOP.
    (_APOP, p.Stat(), p.List(), p.Retr(1), p.Dele(1), p.Retr(2), p.Dele(2), p.Quit()),
    # 5: bare AUTH (mechanism list), AUTH LOGIN (two challenges), then housekeeping.
    (p.Auth(), p.Auth("LOGIN"), p.Stat(), p.Rset(), p.Noop(), p.Quit()),
    # 6: UTF8 first, then TOP / LIST n / DELE / RSET.
    (
        p.Utf8(),
        p.User("alice"),
        p.Pass("secret"),
        p.Capa(),
        p.Top(2, 5),
        p.List(3),
        p.Dele(2),
        p.Rset(),
        p.Quit(),
    ),
    # 7: AUTH CRAM-MD5, then a fallback to USER/PASS.
    (p.Auth("CRAM-MD5"), p.User("alice"), p.Pass("secret"), p.Retr(1), p.Quit()),
)

_A = frozenset({p.State.AUTHORIZATION})
_T = frozenset({p.State.TRANSACTION})
_VALID: dict[type, frozenset[p.State]] = {
    p.User: _A,
    p.Pass: _A,
    p.Apop: _A,
    p.Auth: _A,
    p.Stls: _A,
    p.Utf8: _A,
    p.Capa: _A | _T,
    p.Quit: _A | _T,
    p.Stat: _T,
    p.List: _T,
    p.Uidl: _T,
    p.Retr: _T,
    p.Top: _T,
    p.Dele: _T,
    p.Noop: _T,
    p.Rset: _T,
}


def _projected(state: p.State, in_flight: Iterable[object]) -> p.State:
    for command in in_flight:
        if isinstance(command, p.Pass | p.Apop) or (
            isinstance(command, p.Auth) and command.mechanism is not None
        ):
            # A bare AUTH's +OK lists mechanisms and logs nobody in.
            state = p.State.TRANSACTION
        elif isinstance(command, p.Quit):
            state = p.State.CLOSED
    return state


def merge_data(trace: Sequence[tuple[Any, ...]]) -> Trace:
    """The trace with adjacent ``("data", bytes)`` items joined."""
    out: Trace = []
    for item in trace:
        if item[0] == "data" and out and out[-1][0] == "data":
            out[-1] = ("data", out[-1][1] + item[1])
        else:
            out.append(item)
    return out


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


_UNEVEN = (2, 3, 1, 5, 8, 2, 13, 4, 21, 1, 34)


def _uneven_chunks(data: bytes) -> list[bytes]:
    out = []
    pos = i = 0
    while pos < len(data):
        size = _UNEVEN[i % len(_UNEVEN)]
        out.append(data[pos : pos + size])
        pos += size
        i += 1
    return out


class _Driver:
    """Feeds chunks, drains events, records the trace, checks the buffer bound."""

    conn: p.ClientConnection | p.ServerConnection

    def __init__(self, budget: int) -> None:
        self.trace: Trace = []
        self.done = False
        self.budget = budget  # events allowed: a loop that never ends is a finding
        self.largest = 0  # the largest single receive so far

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        conn = self.conn
        try:
            conn.receive_data(chunk)
        except p.RemoteProtocolError as exc:
            self.error(exc)
            return
        # receive_data refuses more once over the limit, so one receive can
        # overshoot it, and that overshoot may still be there at the next call.
        self.largest = max(self.largest, len(chunk))
        bound = conn.max_buffer_size + self.largest
        assert conn.buffered <= bound, f"buffered {conn.buffered} > {bound}"
        self.drain()

    def drain(self) -> None:
        while not self.done:
            self.budget -= 1
            assert self.budget >= 0, "next_event() keeps returning events: a hang"
            try:
                event = self.conn.next_event()
            except p.RemoteProtocolError as exc:
                self.error(exc)
                return
            except p.LocalProtocolError as exc:
                raise AssertionError(f"LocalProtocolError from next_event(): {exc!r}") from exc
            if event is p.NEED_DATA or event is p.PAUSED:
                return
            self.handle(event)

    def error(self, exc: p.RemoteProtocolError) -> None:
        assert type(exc.reason) is str
        assert exc.line is None or type(exc.line) is bytes
        self.done = True
        if exc.reason == "stls-injection":
            # Whether plaintext after STLS was already buffered depends on how
            # TCP split it; it is the same point in the session as "tls".
            self.trace.append(("tls",))
            return
        self.trace.append(("error", type(exc).__name__, exc.reason, exc.line))
        # The error is sticky: the next call says so again.
        try:
            self.conn.next_event()
        except p.RemoteProtocolError:
            pass
        else:
            raise AssertionError("next_event() after a RemoteProtocolError did not raise")

    def handle(self, event: object) -> None:
        raise NotImplementedError


def _check_fields(event: object) -> None:
    """Events promise bytes/str/int/None fields, never bytearray or memoryview."""
    for name in type(event).__match_args__:  # every event's fields, in order
        value = getattr(event, name)
        assert not isinstance(value, bytearray | memoryview), (event, name)


# --- client --------------------------------------------------------------------------


class _ClientDriver(_Driver):
    def __init__(self, options: int, budget: int, max_buffer_size: int) -> None:
        super().__init__(budget)
        self.script = CLIENT_SCRIPTS[options & 7]
        self.pipelined = bool(options & 8)
        self.cancel_sasl = bool(options & 32)
        self.ignore_challenges = bool(options & 64)  # the server must wait for us
        self.conn = self.client = p.ClientConnection(
            tls=bool(options & 16), max_buffer_size=max_buffer_size
        )
        self.next = 0
        self.last_sent: object = None
        self.timestamp: str | None = None
        self.challenges = 0

    def send(self, command: object) -> None:
        try:
            out = self.client.send(command)  # type: ignore[arg-type]
        except p.LocalProtocolError as exc:
            self.trace.append(("send-error", exc.reason))
            return
        assert type(out) is bytes and out.endswith(b"\r\n")
        self.last_sent = command
        self.trace.append(("sent", out))

    def pump(self) -> None:
        """Send the script's next commands, as far as the session allows now."""
        client = self.client
        while self.next < len(self.script):
            state = client.our_state
            if state not in (p.State.AUTHORIZATION, p.State.TRANSACTION):
                return
            in_flight = client.in_flight
            if in_flight and (
                not self.pipelined or isinstance(in_flight[-1], p.Auth | p.Stls | p.Quit)
            ):
                return
            command = self.script[self.next]
            if command == _APOP:
                if self.timestamp is None:
                    self.next += 1
                    continue
                command = p.Apop("mrose", apop_digest(self.timestamp, SERVER_SECRET))
            projected = _projected(state, in_flight)
            if (
                projected not in _VALID[type(command)]
                or (isinstance(command, p.Pass) and not isinstance(self.last_sent, p.User))
                or (isinstance(command, p.Stls) and client.tls_active)
            ):
                if in_flight:
                    return  # an answer still to come may make it valid
                self.next += 1
                continue
            self.next += 1
            self.send(command)

    def handle(self, event: object) -> None:
        _check_fields(event)
        if isinstance(event, p.Data):
            assert type(event.data) is bytes and event.data
            self.trace.append(("data", event.data))
            return
        self.trace.append(("event", event))
        if isinstance(event, p.ConnectionClosed):
            self.done = True
        elif isinstance(event, p.SaslChallenge):
            self.challenges += 1
            if self.ignore_challenges:
                return
            if event.data is None or self.cancel_sasl or self.challenges > 3:
                self.send(p.SaslCancel())
            else:
                self.send(p.SaslResponse(b"\0alice\0secret"))
        else:
            if isinstance(event, p.Greeting):
                self.timestamp = event.timestamp
            if self.client.tls_pending:
                # The Ok to STLS: from here the bytes belong to TLS.
                self.trace[-1] = ("tls",)
                self.done = True
                return
            self.pump()


def client_trace(data: bytes, chunks: Iterable[bytes], *, max_buffer_size: int = 1 << 20) -> Trace:
    """Run the client over ``chunks`` (then EOF) with options from ``data[0]``."""
    driver = _ClientDriver(data[0] if data else 0, 4 * len(data) + 64, max_buffer_size)
    for chunk in chunks:
        driver.feed(chunk)
    driver.feed(b"")
    return merge_data(driver.trace)


def check_client(data: bytes) -> None:
    """The client-side invariants for one input; raises ``AssertionError`` on a finding."""
    _check(data, client_trace)


# --- server --------------------------------------------------------------------------

_CAPA_BODY = (
    b"TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\n"
    b"SASL PLAIN LOGIN CRAM-MD5\r\n"
)
_MESSAGES = (
    b"From: a@example.org\r\nSubject: one\r\n\r\n.\r\n..leading dots\r\nlast",
    b"From: b@example.org\nSubject: two\n\nbare LF\n.\n.\r\nlone CR\r end\n",
)


def _greeting(options: int) -> p.Greeting:
    if options & 64:
        return p.Greeting("POP3 server ready", timestamp="<1896.697170952@dbc.mtview.ca.us>")
    if options & 128:
        return p.Greeting("Dovecot (Debian) ready.", timestamp="<1a2b.3c4d=@host>")
    return p.Greeting("POP3 server ready")


class _ServerDriver(_Driver):
    def __init__(self, options: int, budget: int, max_buffer_size: int) -> None:
        super().__init__(budget)
        self.conn = self.server = p.ServerConnection(
            tls=bool(options & 16), max_buffer_size=max_buffer_size
        )
        self.options = options
        self.rounds = 0  # SASL responses so far in this exchange
        self.reply(_greeting(options))

    def reply(self, *events: p.Response) -> None:
        for event in events:
            try:
                out = self.server.send(event)
            except p.LocalProtocolError as exc:
                raise AssertionError(
                    f"server refused {event!r} to {self.server.current_command!r}: {exc!r}"
                ) from exc
            assert type(out) is bytes
            self.trace.append(("sent", out))

    def body(self, text: str, *chunks: bytes) -> None:
        self.reply(p.Ok(text), *(p.Data(c) for c in chunks), p.EndOfResponse())

    def handle(self, event: object) -> None:
        _check_fields(event)
        self.trace.append(("event", event))
        options = self.options
        if isinstance(event, p.ConnectionClosed):
            self.done = True
        elif isinstance(event, p.UnknownCommand):
            assert type(event.line) is bytes and event.reason
            self.reply(p.Err(f"{event.reason}"))
        elif isinstance(event, p.User | p.Utf8 | p.Noop | p.Rset | p.Dele | p.Quit):
            self.reply(p.Ok())
        elif isinstance(event, p.Pass):
            ok = event.password in (SERVER_SECRET, "secret")
            self.reply(p.Ok("logged in") if ok else p.Err("Authentication failed.", AUTH))
        elif isinstance(event, p.Apop):
            stamp = self.server.apop_timestamp
            ok = stamp is not None and check_apop_digest(stamp, SERVER_SECRET, event.digest)
            self.reply(p.Ok("maildrop locked") if ok else p.Err("permission denied"))
        elif isinstance(event, p.Auth):
            self.rounds = 0
            if event.mechanism is None:
                self.body("mechanisms", b"PLAIN\r\nLOGIN\r\n")
            elif event.mechanism not in ("PLAIN", "LOGIN", "CRAM-MD5"):
                self.reply(p.Err("unsupported mechanism", SYS_PERM))
            elif event.initial_response is None:
                self.reply(p.SaslChallenge(b"<1.2@host>" if options & 1 else b""))
            else:
                self.reply(p.Ok("authenticated"))
        elif isinstance(event, p.SaslResponse):
            self.rounds += 1
            current = self.server.current_command
            assert isinstance(current, p.Auth), current
            if current.mechanism == "LOGIN" and self.rounds < 2:
                self.reply(p.SaslChallenge(b"Password:"))
            else:
                self.reply(p.Ok("authenticated"))
        elif isinstance(event, p.SaslCancel):
            self.reply(p.Err("cancelled"))
        elif isinstance(event, p.Capa):
            self.body("Capability list follows", _CAPA_BODY)
        elif isinstance(event, p.Stls):
            self.reply(p.Ok("Begin TLS negotiation"))
            assert self.server.tls_pending
            try:
                self.server.start_tls()
            except p.RemoteProtocolError as exc:
                assert exc.reason == "stls-injection", exc
            self.trace.append(("tls",))
            self.done = True
        elif isinstance(event, p.Stat):
            self.reply(p.Ok("2 320"))
        elif isinstance(event, p.List | p.Uidl):
            listing = event.msg is None
            if listing:
                body = b"1 120\r\n2 200\r\n" if isinstance(event, p.List) else b"1 a\r\n2 b\r\n"
                self.body("2 messages", body)
            elif event.msg is not None and event.msg <= 2:
                self.reply(p.Ok(f"{event.msg} 120"))
            else:
                self.reply(p.Err("no such message"))
        elif isinstance(event, p.Retr | p.Top):
            if event.msg > len(_MESSAGES):
                self.reply(p.Err("no such message"))
            else:
                message = _MESSAGES[event.msg - 1]
                self.body("message follows", message[:9], message[9:])
        else:
            raise AssertionError(f"unexpected event from a server: {event!r}")

    def error(self, exc: p.RemoteProtocolError) -> None:
        super().error(exc)
        if self.server.our_state is not p.State.CLOSED and self.server.current_command is None:
            self.trace.append(("sent", self.server.send_failure("protocol error")))


def server_trace(data: bytes, chunks: Iterable[bytes], *, max_buffer_size: int = 1 << 20) -> Trace:
    """Run the server over ``chunks`` (then EOF) with options from ``data[0]``."""
    driver = _ServerDriver(data[0] if data else 0, 4 * len(data) + 64, max_buffer_size)
    for chunk in chunks:
        driver.feed(chunk)
    driver.feed(b"")
    return merge_data(driver.trace)


def check_server(data: bytes) -> None:
    """The server-side invariants for one input; raises ``AssertionError`` on a finding."""
    _check(data, server_trace)


# --- the shared check ------------------------------------------------------------------


def _check(data: bytes, run: Callable[..., Trace]) -> None:
    payload = data[1:]
    whole = run(data, [payload] if payload else [])
    bytewise = run(data, _chunks(payload, 1))
    if whole != bytewise:
        raise AssertionError(_diff(whole, bytewise))
    # Uneven chunks reach states that one-byte chunks cannot (a held "." or
    # ".\r" followed by more than one byte, a line end inside a chunk).
    mixed = run(data, _uneven_chunks(payload))
    if whole != mixed:
        raise AssertionError("uneven chunks: " + _diff(whole, mixed))
    # docs/architecture.md, invariant 6, with a limit smaller than a line:
    # bounded, and only RemoteProtocolError (buffer-full) comes out.
    run(data, _chunks(payload, _SMALL_CHUNK), max_buffer_size=_SMALL_BUFFER)


def _diff(whole: Trace, other: Trace) -> str:
    for i, (a, b) in enumerate(zip(whole, other, strict=False)):
        if a != b:
            return f"chunking changed the trace at item {i}: whole {a!r}, chunked {b!r}"
    return (
        f"chunking changed the trace length: whole {len(whole)} items, "
        f"chunked {len(other)}; tails {whole[-2:]!r} / {other[-2:]!r}"
    )


# --- the PROXY header ----------------------------------------------------------------------


def proxy_trace(chunks: Iterable[bytes]) -> tuple[Any, ...]:
    """Feed ``chunks`` (then EOF) to a ProxyParser: the header and what followed it, or the error.

    Only ``ProxyHeaderError`` may escape ``feed()``; anything else is a finding.
    """
    parser = ProxyParser()
    rest = b""
    try:
        for chunk in [*chunks, b""]:
            if parser.header is not None:
                rest += chunk
                continue
            result = parser.feed(chunk)
            assert result is p.NEED_DATA or result is parser.header, result
    except ProxyHeaderError as exc:
        assert exc.reason in _PROXY_REASONS, exc.reason
        assert parser.wanted == 0
        return ("error", exc.reason)
    assert parser.header is not None
    assert type(parser.leftover) is bytes
    return ("header", parser.header, parser.leftover + rest)


_PROXY_REASONS = {"proxy-signature", "proxy-too-long", "proxy-malformed", "proxy-incomplete"}


def check_proxy(data: bytes) -> None:
    """The PROXY parser's invariants for ``data``, what a proxy (or anyone) sends first.

    The result is the same fed whole, byte by byte and in uneven chunks; read as a
    binding reads it (``wanted`` octets at a time) it is the same again, and not one
    octet after the header is consumed.
    """
    whole = proxy_trace([data] if data else [])
    for chunks in (_chunks(data, 1), _uneven_chunks(data)):
        other = proxy_trace(chunks)
        assert other == whole, f"chunking changed the result: {whole!r} / {other!r}"
    parser = ProxyParser()
    pos = 0
    try:
        while parser.wanted:
            size = parser.wanted
            assert size <= MAX_PROXY_V1_LENGTH + 16 + MAX_PROXY_V2_LENGTH
            parser.feed(data[pos : pos + size])
            pos += size
        read = ("header", parser.header, data[pos:])
        assert parser.leftover == b"", "a read of `wanted` octets went past the header"
    except ProxyHeaderError as exc:
        read = ("error", exc.reason)
    assert read == whole, f"reading `wanted` octets changed the result: {whole!r} / {read!r}"


# --- SASL mechanisms -----------------------------------------------------------------------
#
# Byte 0: bits 0-2 the mechanism (SASL_MECHANISMS; 7 wraps to PLAIN), bit 3 the client
# side (else the server side). Server: 16 the users exist, 32 the first response is an
# initial response, 64 SCRAM's mock_key / OAuth's scope and openid-configuration, 128
# token_checked() names the token's owner. Client: 16 initial_response() first, 32 an
# authzid, 64 OAUTHBEARER's host and port. The rest, split on SASL_SEPARATOR, is the
# decoded responses (server side) or challenges (client side), at most SASL_MAX_MESSAGES.

SASL_MECHANISMS = (
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "XOAUTH2",
    "OAUTHBEARER",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
)
SASL_SEPARATOR = b"\xff"  # never in UTF-8, and every mechanism reads its messages as UTF-8
SASL_MAX_MESSAGES = 16
SASL_CLIENT = 8

# RFC 2195 and RFC 4616 use tim's secret; RFC 5802 and RFC 7677 use user's.
SASL_USERS = {"tim": "tanstaaftanstaaf", "user": "pencil"}
CRAM_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
# (client nonce, server nonce, salt) of RFC 5802 section 5 and RFC 7677 section 3.
SCRAM_EXAMPLES = {
    "SCRAM-SHA-1": ("fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j", "QSXCR+Q6sek8bf92"),
    "SCRAM-SHA-256": (
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
    ),
}
SCRAM_ITERATIONS = 4096
# RFC 7628 section 4.1's token, and an XOAUTH2-shaped one.
OAUTH_TOKENS = (
    "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
)
_SCRAM_HASH = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
_SERVER_REASONS = {"malformed", "unknown-user", "bad-credentials", "unsupported-channel-binding"}
_CLIENT_REASONS = {
    "sasl-bad-challenge",
    "sasl-unexpected-challenge",
    "sasl-bad-nonce",
    "sasl-bad-iterations",
    "sasl-server-error",
    "sasl-bad-server-signature",
}


def _hmac(hash_name: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hash_name).digest()


def _salted(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    # RFC 5802 section 3: Hi() is PBKDF2; the passwords here are ASCII, SASLprep's identity.
    return hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)


def _scram_credentials(mechanism: str, password: str) -> ScramCredentials:
    """The credentials computed here from RFC 5802 section 3, not by the library."""
    hash_name = _SCRAM_HASH[mechanism]
    salt = base64.b64decode(SCRAM_EXAMPLES[mechanism][2])
    salted = _salted(hash_name, password, salt, SCRAM_ITERATIONS)
    stored = hashlib.new(hash_name, _hmac(hash_name, salted, b"Client Key")).digest()
    server = _hmac(hash_name, salted, b"Server Key")
    return ScramCredentials(salt, SCRAM_ITERATIONS, stored, server)


_SCRAM_CREDS = {
    mechanism: {user: _scram_credentials(mechanism, pw) for user, pw in SASL_USERS.items()}
    for mechanism in SCRAM_EXAMPLES
}


def _sasl_messages(data: bytes) -> list[bytes]:
    return data[1:].split(SASL_SEPARATOR)[:SASL_MAX_MESSAGES]


def _sasl_mechanism(options: int) -> str:
    return SASL_MECHANISMS[(options & 7) % len(SASL_MECHANISMS)]


def _new_server_mechanism(options: int, *, factory: bool) -> ServerMechanism:
    name = _sasl_mechanism(options)
    nonce = SCRAM_EXAMPLES[name][1] if name in SCRAM_EXAMPLES else None
    if factory:
        # The case-insensitive factory must build the same machine as the classes.
        return server_mechanism(name.lower(), nonce=nonce, challenge=CRAM_CHALLENGE)
    extra = bool(options & 64)
    if name == "SCRAM-SHA-1":
        assert nonce is not None
        return ScramSHA1Server(nonce, mock_key=b"mock" if extra else None)
    if name == "SCRAM-SHA-256":
        assert nonce is not None
        return ScramSHA256Server(nonce, mock_key=b"mock" if extra else None)
    if name == "CRAM-MD5":
        return CramMD5Server(CRAM_CHALLENGE)
    if name in ("XOAUTH2", "OAUTHBEARER"):
        oauth = XOAuth2Server if name == "XOAUTH2" else OAuthBearerServer
        if extra:
            return oauth(scope="mail", openid_configuration="https://example.com/.well-known/x")
        return oauth()
    return PlainServer() if name == "PLAIN" else LoginServer()


def _check_scram_success(name: str, exchange: list[bytes], username: str) -> None:
    """An independent check (RFC 5802 section 3) of a SCRAM exchange the server accepted."""
    hash_name = _SCRAM_HASH[name]
    client_nonce_server = SCRAM_EXAMPLES[name][1]
    first, server_first, final, server_final, last = (m.decode() for m in exchange[-5:])
    assert last == "", "SCRAM succeeded before the client's empty reply to server-final"
    flag, authzid, bare = first.split(",", 2)
    assert flag in ("n", "y"), f"SCRAM accepted the gs2 flag {flag!r}"
    client_nonce = bare.split(",")[1][2:]
    creds = _SCRAM_CREDS[name][username]
    salt = base64.b64encode(creds.salt).decode()
    nonce = client_nonce + client_nonce_server
    assert server_first == f"r={nonce},s={salt},i={creds.iterations}", server_first
    without_proof, _, proof = final.rpartition(",p=")
    attrs = without_proof.split(",")
    gs2 = base64.b64encode(f"{flag},{authzid},".encode()).decode()
    assert attrs[0] == f"c={gs2}" and attrs[1] == f"r={nonce}", f"accepted {without_proof!r}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    salted = _salted(hash_name, SASL_USERS[username], creds.salt, creds.iterations)
    key = _hmac(hash_name, salted, b"Client Key")
    signature = _hmac(hash_name, creds.stored_key, auth_message)
    expected = base64.b64encode(bytes(a ^ b for a, b in zip(key, signature, strict=True)))
    assert proof.encode() == expected, "SCRAM accepted a wrong proof"
    verifier = base64.b64encode(_hmac(hash_name, creds.server_key, auth_message)).decode()
    assert server_final == f"v={verifier}", "SCRAM sent a wrong server signature"


def sasl_server_trace(data: bytes, *, factory: bool = False) -> Trace:
    """Drive the server mechanism of ``data[0]`` with the responses in ``data[1:]``.

    Lookups are answered from SASL_USERS and the SCRAM credentials; only well-typed
    steps may come out, and a success is checked against the mechanism's RFC.
    """
    options = data[0] if data else 0
    name = _sasl_mechanism(options)
    known = bool(options & 16)
    owner = "token-owner" if options & 128 else None
    mech = _new_server_mechanism(options, factory=factory)
    responses = _sasl_messages(data)
    trace: Trace = []
    exchange: list[bytes] = []  # the messages both ways, for the success checks
    if options & 32:
        exchange.append(responses[0])
        step = mech.start(responses.pop(0))
    else:
        step = mech.start(None)
    previous: object = None
    budget = 3 * len(responses) + 8
    while True:
        budget -= 1
        assert budget >= 0, "the server mechanism keeps asking: a hang"
        trace.append(("step", step))
        if isinstance(step, SendChallenge):
            assert type(step.data) is bytes
            if not responses:
                break
            exchange += [step.data, responses[0]]
            previous, step = step, mech.receive(responses.pop(0))
        elif isinstance(step, CheckPassword):
            ok = known and SASL_USERS.get(step.username) == step.password
            previous, step = (step, ok), mech.password_checked(ok)
        elif isinstance(step, LookupSecret):
            secret = SASL_USERS.get(step.username) if known else None
            previous, step = (step, secret), mech.secret_found(secret)
        elif isinstance(step, CheckToken):
            ok = known and step.token in OAUTH_TOKENS
            assert step.port is None or 0 < step.port < 65536, step.port
            previous, step = (step, ok), mech.token_checked(ok, username=owner)
        elif isinstance(step, LookupScram):
            creds = _SCRAM_CREDS[name].get(step.username) if known else None
            previous, step = (step, creds), mech.scram_found(creds)
        elif isinstance(step, Failed):
            assert step.reason in _SERVER_REASONS, step.reason
            break
        else:
            assert isinstance(step, Succeeded), f"not a step: {step!r}"
            _check_server_success(name, step, previous, exchange)
            break
    if isinstance(step, Failed | Succeeded):
        # The exchange is over: any further call is the application's mistake.
        _refused(lambda: mech.receive(b""))
        _refused(lambda: mech.start(None))
    return trace


def _refused(call: Callable[[], object]) -> None:
    try:
        call()
    except p.LocalProtocolError as exc:
        assert exc.reason == "sasl-out-of-turn", exc.reason
    else:
        raise AssertionError("a mechanism took a call out of turn")


def _check_server_success(
    name: str, step: Succeeded, previous: object, exchange: list[bytes]
) -> None:
    assert type(step.username) is str and type(step.authzid) is str
    if name in ("PLAIN", "LOGIN"):
        assert isinstance(previous, tuple) and isinstance(previous[0], CheckPassword)
        asked, ok = previous
        assert ok, f"{name} succeeded after a refused password"
        assert (step.username, step.authzid) == (asked.username, asked.authzid)
    elif name == "CRAM-MD5":
        assert isinstance(previous, tuple) and isinstance(previous[0], LookupSecret)
        asked, secret = previous
        assert secret is not None and step.username == asked.username
        user, _, digest = exchange[-1].decode().rpartition(" ")
        expected = hmac.new(secret.encode(), CRAM_CHALLENGE, "md5").hexdigest()
        assert user == step.username and digest.lower() == expected, "CRAM-MD5 forged"
    elif name in ("XOAUTH2", "OAUTHBEARER"):
        assert isinstance(previous, tuple) and isinstance(previous[0], CheckToken)
        asked, ok = previous
        assert ok, f"{name} succeeded after a refused token"
        assert step.authzid == asked.authzid
        assert step.username in ("token-owner", asked.username)
    else:
        assert len(exchange) >= 5
        assert step.username in SASL_USERS, f"SCRAM succeeded for {step.username!r}"
        _check_scram_success(name, exchange, step.username)


def _new_client_mechanism(options: int) -> ClientMechanism:
    name = _sasl_mechanism(options)
    authzid = "admin" if options & 32 else ""
    password = SASL_USERS["tim"]
    if name == "PLAIN":
        return PlainClient("tim", password, authzid)
    if name == "LOGIN":
        return LoginClient("tim", password)
    if name == "CRAM-MD5":
        return CramMD5Client("tim", password)
    if name == "XOAUTH2":
        return XOAuth2Client("someuser@example.com", OAUTH_TOKENS[1])
    if name == "OAUTHBEARER":
        where = {"host": "server.example.com", "port": 143} if options & 64 else {}
        return OAuthBearerClient(OAUTH_TOKENS[0], "user@example.com" if authzid else "", **where)
    scram = ScramSHA1Client if name == "SCRAM-SHA-1" else ScramSHA256Client
    # Iterations are capped at the RFC examples' 4096: the default cap of ten million
    # is a hostile server's way to burn CPU, which a harness cannot afford per input.
    return scram(
        "user",
        SASL_USERS["user"],
        SCRAM_EXAMPLES[name][0],
        authzid=authzid,
        min_iterations=1,
        max_iterations=SCRAM_ITERATIONS,
    )


def sasl_client_trace(data: bytes) -> Trace:
    """Feed the challenges in ``data[1:]`` to the client mechanism of ``data[0]``.

    Only ``RemoteProtocolError`` may come out of ``respond()``; after it every call
    raises ``LocalProtocolError``. Responses are checked against the mechanism's RFC.
    """
    options = data[0] if data else 0
    name = _sasl_mechanism(options)
    mech = _new_client_mechanism(options)
    trace: Trace = []
    sent: list[bytes] = []
    if options & 16:
        first = mech.initial_response()
        assert first is None or type(first) is bytes
        trace.append(("initial", first))
        if first is not None:
            sent.append(first)
    seen: list[bytes] = []
    for challenge in _sasl_messages(data):
        seen.append(challenge)
        try:
            response = mech.respond(challenge)
        except p.RemoteProtocolError as exc:
            assert exc.reason in _CLIENT_REASONS, exc.reason
            trace.append(("error", exc.reason))
            try:
                mech.respond(challenge)
            except p.LocalProtocolError as again:
                assert again.reason == "sasl-out-of-turn", again.reason
            else:
                raise AssertionError("a failed client mechanism answered again") from exc
            break
        assert type(response) is bytes
        complete = mech.is_complete
        assert type(complete) is bool
        trace.append(("response", response, complete))
        sent.append(response)
        _check_client_response(name, options, seen, response, complete, sent)
    if trace:
        try:
            mech.initial_response()
        except p.LocalProtocolError as exc:
            assert exc.reason == "sasl-out-of-turn", exc.reason
        else:
            raise AssertionError("initial_response() worked after the exchange began")
    return trace


def _check_client_response(
    name: str, options: int, seen: list[bytes], response: bytes, complete: bool, sent: list[bytes]
) -> None:
    challenge = seen[-1]
    password = SASL_USERS["tim"].encode()
    if name == "PLAIN":
        assert response == (b"admin" if options & 32 else b"") + b"\0tim\0" + password
    elif name == "LOGIN":
        assert response == (b"tim", password)[len(sent) - 1]
        assert complete == (len(sent) == 2)
    elif name == "CRAM-MD5":
        digest = hmac.new(password, challenge, "md5").hexdigest()
        assert challenge and response == b"tim " + digest.encode() and complete
    elif name in SCRAM_EXAMPLES and complete:
        # Complete only once server-final carried the right signature (RFC 5802 3).
        assert response == b"" and len(sent) >= 3 and len(seen) >= 2
        first, final, server_first = sent[-3].decode(), sent[-2].decode(), seen[-2].decode()
        bare = first.split(",", 2)[2]
        without_proof = final.rpartition(",p=")[0]
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        attrs = dict(item.split("=", 1) for item in server_first.split(",")[:3])
        hash_name = _SCRAM_HASH[name]
        salt = base64.b64decode(attrs["s"])
        salted = _salted(hash_name, SASL_USERS["user"], salt, int(attrs["i"]))
        verifier = _hmac(hash_name, _hmac(hash_name, salted, b"Server Key"), auth_message)
        text = challenge.decode("utf-8", "replace").split(",", 1)[0]
        assert text == "v=" + base64.b64encode(verifier).decode(), "forged server-final accepted"


def check_sasl(data: bytes) -> None:
    """The SASL invariants for one input; raises ``AssertionError`` on a finding.

    Run twice, the exchange is the same (the server side built the second time by
    ``server_mechanism()`` when the options allow it).
    """
    options = data[0] if data else 0
    if options & SASL_CLIENT:
        first, again = sasl_client_trace(data), sasl_client_trace(data)
    else:
        first = sasl_server_trace(data)
        again = sasl_server_trace(data, factory=not options & 64)
    assert first == again, f"not deterministic: {first!r} / {again!r}"


# --- parsers ---------------------------------------------------------------------------------
#
# Byte 0 (modulo len(PARSERS)) picks the parser; the rest is its input, decoded as
# Latin-1 and as UTF-8 (with U+FFFD) for the parsers of text.

PARSERS = (
    "capabilities",
    "lines",
    "scan-listing",
    "uid-listing",
    "response-code",
    "base64",
    "maildir-name",
)
_NUMBER_CAP = 10**MAX_NUMBER_DIGITS
# The grammar of RFC 1939 sections 5 and 7 as the parsers document it, written again.
_DIGITS = f"[0-9]{{1,{MAX_NUMBER_DIGITS}}}"
_STAT_LINE = re.compile(f"({_DIGITS}) ({_DIGITS})(?: .*)?", re.S)
_UID_LINE = re.compile(f"({_DIGITS}) ([!-~]{{1,{MAX_UID_LENGTH}}})")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_POP3_UID = re.compile(r"[\x21-\x7e]{1,70}")  # RFC 1939 section 7
_MAILDIR_INFO = (":2,", ":2,S", ":2,RS", ":2,FRS", ":1,x", "")


def _texts(payload: bytes) -> tuple[str, str]:
    return payload.decode("latin-1"), payload.decode("utf-8", "replace")


def _outcome(parse: Callable[[Any], Any], value: Any, reasons: set[str]) -> tuple[Any, ...]:
    """``("ok", result)`` or ``("error", reason)``; only ``RemoteProtocolError`` may escape."""
    try:
        return ("ok", parse(value))
    except p.RemoteProtocolError as exc:
        assert exc.reason in reasons, exc.reason
        return ("error", exc.reason)


def _check_capabilities(payload: bytes) -> None:
    outcome = _outcome(Capabilities.parse, payload, {"bad-capability"})
    if outcome[0] == "error":
        return
    caps = outcome[1]
    for tag, args in caps.tags.items():
        assert tag and tag == tag.upper() and not any(c.isspace() for c in tag), tag
        assert all(arg and not any(c.isspace() for c in arg) for arg in args), args
        assert caps.args(tag.lower()) == args and tag.lower() in caps
    # Every typed field reads without raising once parse() accepted the body.
    flags = (caps.top, caps.user, caps.uidl, caps.stls, caps.pipelining, caps.resp_codes)
    assert all(type(flag) is bool for flag in (*flags, caps.auth_resp_code, caps.utf8))
    assert all(m == m.upper() for m in caps.sasl)
    assert caps.implementation is None or type(caps.implementation) is str
    for field in (caps.login_delay, caps.expire):
        if field is not None:
            amount, per_user = field
            assert type(per_user) is bool
            assert amount is None or 0 <= amount < 10**10
    # CRLF and bare LF bodies mean the same, and what encode() writes parses back.
    assert Capabilities.parse(payload.replace(b"\r\n", b"\n")) == caps
    encoded = caps.encode()
    if all(len(line) + 2 <= 512 for line in encoded.split(b"\r\n")):
        assert Capabilities.parse(encoded) == caps


def _check_lines(payload: bytes) -> None:
    for text in _texts(payload):
        stat = _outcome(parse_stat, text, {"bad-listing", "bad-number"})
        assert _outcome(parse_scan_line, text, {"bad-listing", "bad-number"}) == stat
        match = _STAT_LINE.fullmatch(text)
        expected = (int(match[1]), int(match[2])) if match else None
        assert (stat[1] if stat[0] == "ok" else None) == expected, (text, stat)
        uid = _outcome(parse_uid_line, text, {"bad-listing", "bad-number", "bad-uid"})
        match = _UID_LINE.fullmatch(text)
        expected_uid = (int(match[1]), match[2]) if match else None
        assert (uid[1] if uid[0] == "ok" else None) == expected_uid, (text, uid)


def _by_lines(payload: bytes, parse_line: Callable[[str], tuple[int, Any]]) -> dict[int, Any]:
    """A listing parsed one line at a time (RFC 1939 sections 5 and 7)."""
    if payload and not payload.endswith(b"\n"):
        raise p.RemoteProtocolError("no line end", reason="bad-listing")
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise p.RemoteProtocolError("not ASCII", reason="bad-listing") from None
    # Every line is parsed first: a malformed line is reported before a repeated number.
    pairs = [parse_line(line.removesuffix("\r")) for line in text.split("\n")[:-1]]
    result = dict(pairs)
    if len(result) != len(pairs):
        raise p.RemoteProtocolError("repeated", reason="bad-listing")
    return result


def _check_listing(payload: bytes, uid: bool) -> None:
    reasons = {"bad-listing", "bad-number", "bad-uid"}
    parse_whole = parse_uid_listing if uid else parse_scan_listing
    parse_line: Callable[[str], tuple[int, Any]] = parse_uid_line if uid else parse_scan_line
    whole = _outcome(parse_whole, payload, reasons)
    lines = _outcome(lambda body: _by_lines(body, parse_line), payload, reasons)
    # The regex fast path and the line-by-line path agree, errors included.
    assert whole == lines, f"whole {whole!r}, line by line {lines!r}"
    if whole[0] == "ok":
        for msg, value in whole[1].items():
            assert type(msg) is int and 0 <= msg < _NUMBER_CAP
            if uid:
                assert type(value) is str and 0 < len(value) <= MAX_UID_LENGTH
            else:
                assert type(value) is int and 0 <= value < _NUMBER_CAP


def _check_response_code(payload: bytes) -> None:
    for text in _texts(payload):
        code, rest = split_response_code(text)
        assert type(rest) is str
        if code is None:
            assert rest == text
        else:
            inner, _, after = text[1:].partition("]")
            assert text.startswith("[") and str(code) == inner.upper(), (text, code)
            assert rest == after.removeprefix(" ")
            assert p.ResponseCode.parse(str(code)) == code and code.matches(str(code))
        try:
            parsed = p.ResponseCode.parse(text)
        except ValueError:
            continue
        assert str(parsed) == text.upper() and all(parsed.levels)
        # RFC 2449 section 3: rchar = %x21-2E / %x30-5C / %x5E-7F.
        assert all(0x21 <= ord(c) <= 0x7F and c not in "/]" for c in "".join(parsed.levels))


def _check_base64(payload: bytes) -> None:
    decoded = b64decode_strict(payload)
    try:
        reference = binascii.a2b_base64(payload, strict_mode=True)
    except binascii.Error:
        reference = None
    if len(payload) % 4 or any(c not in _B64_ALPHABET + b"=" for c in payload):
        reference = None
    if reference is not None and binascii.b2a_base64(reference, newline=False) != payload:
        reference = None  # not canonical: non-zero pad bits
    assert decoded == reference, f"{payload!r}: {decoded!r}, reference {reference!r}"
    if decoded is not None:
        assert type(decoded) is bytes
        encoded = b64encode(decoded)
        assert type(encoded) is bytes and b64decode_strict(encoded) == decoded
        # Only the canonical form is accepted, so re-encoding gives the input back
        # (non-zero pad bits, RFC 4648 section 3.5, are refused: fuzz/README.md).
        assert encoded == payload, (payload, encoded)


def _check_maildir_name(payload: bytes) -> None:
    # A file name is any bytes but "/" and NUL; os.scandir() decodes it with
    # surrogateescape, and Latin-1 gives every code point below 256.
    raw = payload.replace(b"/", b"").replace(b"\0", b"")
    for name in (os.fsdecode(raw), raw.decode("latin-1")):
        unique = _unique_part(name)
        uid = _base_uid(unique)
        assert type(uid) is str and _POP3_UID.fullmatch(uid), f"{name!r} gives uid {uid!r}"
        assert is_valid_uid(uid)
        if _POP3_UID.fullmatch(unique):
            assert uid == unique, "a valid unique part is the uid itself"
        # Renames by flag changes (and the move from new/ to cur/) keep the uid.
        stem = name.partition(":")[0]
        for info in _MAILDIR_INFO:
            assert _unique_part(stem + info) == _unique_part(stem)
            assert _base_uid(_unique_part(stem + info)) == _base_uid(_unique_part(stem))
        # A second file with the same unique part: the uid and a content digest.
        twin = _twin_uid(uid, hashlib.sha256(raw).hexdigest())
        assert twin != uid and _POP3_UID.fullmatch(twin), f"{name!r} gives twin uid {twin!r}"
        # Repeats get distinct ids, still valid (make_unique's ".<n>" suffix).
        uids = make_unique([uid, uid, uid, uid])
        assert len(set(uids)) == 4 and all(_POP3_UID.fullmatch(u) for u in uids), uids


def check_parsers(data: bytes) -> None:
    """The parsers' invariants for one input; raises ``AssertionError`` on a finding."""
    if not data:
        return
    kind = PARSERS[data[0] % len(PARSERS)]
    payload = data[1:]
    if kind == "capabilities":
        _check_capabilities(payload)
    elif kind == "lines":
        _check_lines(payload)
    elif kind in ("scan-listing", "uid-listing"):
        _check_listing(payload, uid=kind == "uid-listing")
    elif kind == "response-code":
        _check_response_code(payload)
    elif kind == "base64":
        _check_base64(payload)
    else:
        _check_maildir_name(payload)
