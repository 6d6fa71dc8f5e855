"""The fuzzing invariants, shared by both atheris harnesses and the smoke tests.

``check_client(data)`` and ``check_server(data)`` raise ``AssertionError`` (or
let an unexpected exception escape) when the core breaks one of its promises:

1. Only ``RemoteProtocolError`` comes out of ``next_event()`` for any input
   (DESIGN.md invariant 3); a ``LocalProtocolError`` is allowed only from a
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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pop3_sansio as p

__all__ = [
    "CLIENT_SCRIPTS",
    "SERVER_SECRET",
    "check_client",
    "check_proxy",
    "check_server",
    "client_trace",
    "merge_data",
    "proxy_trace",
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
    if dataclasses.is_dataclass(event):
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            assert not isinstance(value, bytearray | memoryview), (event, f.name)


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
                command = p.Apop("mrose", p.apop_digest(self.timestamp, SERVER_SECRET))
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
            self.reply(p.Ok("logged in") if ok else p.Err("Authentication failed.", p.AUTH))
        elif isinstance(event, p.Apop):
            stamp = self.server.apop_timestamp
            ok = stamp is not None and p.check_apop_digest(stamp, SERVER_SECRET, event.digest)
            self.reply(p.Ok("maildrop locked") if ok else p.Err("permission denied"))
        elif isinstance(event, p.Auth):
            self.rounds = 0
            if event.mechanism is None:
                self.body("mechanisms", b"PLAIN\r\nLOGIN\r\n")
            elif event.mechanism not in ("PLAIN", "LOGIN", "CRAM-MD5"):
                self.reply(p.Err("unsupported mechanism", p.SYS_PERM))
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
    # Invariant 6 with a limit smaller than a line: bounded, and only
    # RemoteProtocolError (buffer-full) comes out.
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
    parser = p.ProxyParser()
    rest = b""
    try:
        for chunk in [*chunks, b""]:
            if parser.header is not None:
                rest += chunk
                continue
            result = parser.feed(chunk)
            assert result is p.NEED_DATA or result is parser.header, result
    except p.ProxyHeaderError as exc:
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
    parser = p.ProxyParser()
    pos = 0
    try:
        while parser.wanted:
            size = parser.wanted
            assert size <= p.MAX_PROXY_V1_LENGTH + 16 + p.MAX_PROXY_V2_LENGTH
            parser.feed(data[pos : pos + size])
            pos += size
        read = ("header", parser.header, data[pos:])
        assert parser.leftover == b"", "a read of `wanted` octets went past the header"
    except p.ProxyHeaderError as exc:
        read = ("error", exc.reason)
    assert read == whole, f"reading `wanted` octets changed the result: {whole!r} / {read!r}"
