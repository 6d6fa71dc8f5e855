"""Properties of the core, checked with Hypothesis.

(a) chunking invariance: any split of the same bytes gives the same events
    (adjacent ``Data`` merged), for generated server sessions read by a client
    and generated command streams read by a server;
(b) multi-line bodies survive ServerConnection -> wire -> ClientConnection in any
    chunking on both sides, with CRLF line ends, and ``message_size`` is the
    length the client reads (docs/architecture.md, invariant 5);
(c) the listing parsers invert the listing format;
(d) any bytes into either role's ``next_event`` raise nothing but ``ProtocolError``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import HealthCheck, example, given, settings, strategies as st

import pop3_sansio as p

FAST = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

Trace = list[tuple[Any, ...]]


# --- helpers ---------------------------------------------------------------------------


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length), no empty pieces."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


cuts_strategy = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40)


def merged(trace: Sequence[tuple[Any, ...]]) -> Trace:
    out: Trace = []
    for item in trace:
        if item[0] == "data" and out and out[-1][0] == "data":
            out[-1] = ("data", out[-1][1] + item[1])
        else:
            out.append(item)
    return out


def wire_body(lines: Sequence[bytes]) -> bytes:
    """The wire form of a body given as lines without line ends (RFC 1939 section 3)."""
    return b"".join((b"." + line if line[:1] == b"." else line) + b"\r\n" for line in lines)


def normalised(body: bytes) -> bytes:
    """What a client reads for ``body``: every LF or CRLF line end as CRLF, and a
    final line end if it had none (a lone CR at the very end becomes that CRLF)."""
    if not body:
        return b""
    out = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out.endswith(b"\r\n"):
        return out
    return out + (b"\n" if out.endswith(b"\r") else b"\r\n")


# A body line as the server's user means it (no line end inside).
line_strategy = st.one_of(
    st.sampled_from([b"", b".", b"..", b"...", b". ", b".x", b"..x", b"x.", b"\t."]),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
lines_strategy = st.lists(line_strategy, max_size=12)


# --- (a) chunking invariance: the client -----------------------------------------------

# Commands the client pipelines after USER/PASS, with what each answer looks like.
_TRANSACTION_COMMANDS: list[p.Command] = [
    p.Stat(),
    p.List(),
    p.List(1),
    p.Uidl(),
    p.Uidl(2),
    p.Retr(1),
    p.Top(1, 3),
    p.Dele(1),
    p.Noop(),
    p.Rset(),
    p.Capa(),
]


@st.composite
def client_sessions(draw: st.DrawFn) -> tuple[list[p.Command], bytes, list[Any]]:
    """A server's side of a session and the events a client must read from it."""
    commands: list[p.Command] = [p.User("alice"), p.Pass("secret")]
    commands += draw(st.lists(st.sampled_from(_TRANSACTION_COMMANDS), max_size=8))
    if draw(st.booleans()):
        commands.append(p.Quit())
    wire = [b"+OK ready <1.2@host>\r\n"]
    expected: list[Any] = [p.Greeting("ready <1.2@host>", None, "<1.2@host>")]
    for i, command in enumerate(commands):
        ok = i < 2 or draw(st.booleans())
        text = draw(st.sampled_from(["", "fine", "[SYS/TEMP] later", "2 320", "caf\u00e9"]))
        code, rest = p.split_response_code(text)
        status = b"+OK" if ok else b"-ERR"
        wire.append(status + (b" " + text.encode() if text else b"") + b"\r\n")
        expected.append(p.Ok(rest, code) if ok else p.Err(rest, code))
        multi = ok and (
            isinstance(command, p.Capa | p.Retr | p.Top)
            or (isinstance(command, p.List | p.Uidl) and command.msg is None)
        )
        if multi:
            lines = draw(lines_strategy)
            wire.append(wire_body(lines) + b".\r\n")
            if lines:
                expected.append(("data", b"".join(line + b"\r\n" for line in lines)))
            expected.append(p.EndOfResponse())
    wire_bytes = b"".join(wire)
    if draw(st.booleans()):
        # Trailing junk: whatever error it causes must not depend on chunking.
        wire_bytes += draw(st.binary(max_size=40))
    return commands, wire_bytes, expected


def run_client(commands: Sequence[p.Command], chunks: Iterable[bytes]) -> Trace:
    client = p.ClientConnection()
    trace: Trace = []

    def drain() -> bool:
        while True:
            try:
                event = client.next_event()
            except p.RemoteProtocolError as exc:
                trace.append(("error", exc.reason, exc.line))
                return False
            if event is p.NEED_DATA:
                return True
            if isinstance(event, p.Data):
                assert type(event.data) is bytes
                trace.append(("data", event.data))
                continue
            trace.append(("event", event))
            if isinstance(event, p.ConnectionClosed):
                return False
            if isinstance(event, p.Greeting):
                for command in commands:
                    client.send(command)

    for chunk in [*chunks, b""]:
        client.receive_data(chunk)
        if not drain():
            break
    return merged(trace)


@FAST
@given(client_sessions(), cuts_strategy)
def test_client_chunking_invariance(
    session: tuple[list[p.Command], bytes, list[Any]], cuts: list[int]
) -> None:
    commands, wire, expected = session
    whole = run_client(commands, [wire])
    assert run_client(commands, split(wire, cuts)) == whole
    # Where the wire is a well-formed session, the events are the expected ones.
    events = [item[1] if item[0] == "event" else item for item in whole]
    assert events[: len(expected)] == expected


@settings(deadline=None, max_examples=30)
@given(client_sessions())
def test_client_byte_at_a_time(session: tuple[list[p.Command], bytes, list[Any]]) -> None:
    commands, wire, _ = session
    assert run_client(commands, [bytes([b]) for b in wire]) == run_client(commands, [wire])


# --- (a) chunking invariance: the server ------------------------------------------------

_COMMAND_LINES = [
    b"USER alice",
    b"PASS secret",
    b"pass secret",
    b"APOP alice 0123456789abcdef0123456789abcdef",
    b"AUTH",
    b"AUTH PLAIN",
    b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=",
    b"AUTH PLAIN =",
    b"AUTH LOGIN",
    b"dGVzdA==",
    b"*",
    b"CAPA",
    b"STAT",
    b"LIST",
    b"LIST 1",
    b"LIST 0",
    b"UIDL",
    b"UIDL 2",
    b"RETR 1",
    b"TOP 1 0",
    b"DELE 1",
    b"NOOP",
    b"RSET",
    b"UTF8",
    b"QUIT",
    b"STLS",
    b"",
    b"X-UNKNOWN arg",
    b"USER " + b"x" * 260,
]

command_stream = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(_COMMAND_LINES),
            st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")),
        ),
        st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]),
    ),
    max_size=14,
).map(lambda pairs: b"".join(line + end for line, end in pairs))


def answer(server: p.ServerConnection, event: object) -> list[bytes]:
    """A canned answer that the server must accept for any command it hands out."""
    if isinstance(event, p.UnknownCommand | p.SaslCancel):
        return [server.send(p.Err("no"))]
    if isinstance(event, p.Auth) and event.mechanism is not None:
        if event.initial_response is None:
            return [server.send(p.SaslChallenge(b""))]
        return [server.send(p.Ok())]
    if isinstance(event, p.Pass):
        return [server.send(p.Ok() if event.password == "secret" else p.Err("bad"))]
    out = [server.send(p.Ok("2 320" if isinstance(event, p.Stat) else ""))]
    if server.current_command is not None:  # a multi-line answer is open
        out.append(server.send(p.Data(b"line\n.dot\n")))
        out.append(server.send(p.EndOfResponse()))
    return out


def run_server(chunks: Iterable[bytes], *, tls: bool = False) -> Trace:
    server = p.ServerConnection(tls=tls)
    server.send(p.Greeting("ready"))
    trace: Trace = []

    def drain() -> bool:
        while True:
            try:
                event = server.next_event()
            except p.RemoteProtocolError as exc:
                trace.append(("error", exc.reason, exc.line))
                return False
            if event is p.NEED_DATA or event is p.PAUSED:
                return True
            trace.append(("event", event))
            if isinstance(event, p.ConnectionClosed):
                return False
            trace.extend(("sent", out) for out in answer(server, event))
            if server.tls_pending:
                # Whether plaintext follows STLS before the handshake depends on
                # the chunking; the point in the session does not.
                trace.append(("tls",))
                return False

    for chunk in [*chunks, b""]:
        server.receive_data(chunk)
        if not drain():
            break
    return trace


@FAST
@given(command_stream, cuts_strategy, st.booleans())
def test_server_chunking_invariance(stream: bytes, cuts: list[int], tls: bool) -> None:
    assert run_server(split(stream, cuts), tls=tls) == run_server([stream], tls=tls)


@FAST
@given(
    st.binary(min_size=1, max_size=6).filter(lambda w: not w.isascii()),
    st.sampled_from([b"", b" secret", b" 1", b" PLAIN"]),
)
@example(b"PA\xdf", b" secret")  # "PA\xdf".upper() == "PASS" once it is Latin-1
def test_server_non_ascii_keyword_is_unknown(word: bytes, rest: bytes) -> None:
    # str.upper() of a Latin-1 word can be ASCII ("PA\xdf" -> "PASS"): such a
    # line must stay an unknown command, never become one the server acts on.
    word = word.replace(b"\n", b"").replace(b"\r", b"").replace(b" ", b"") or b"\xdf"
    server = p.ServerConnection()
    server.send(p.Greeting("hi"))
    server.receive_data(b"USER a\r\n")
    assert server.next_event() == p.User("a")
    server.send(p.Ok())
    server.receive_data(word + rest + b"\r\n")
    event = server.next_event()
    assert isinstance(event, p.UnknownCommand), event


# --- (b) bodies: server encoder -> wire -> client decoder --------------------------------

body_piece = st.one_of(
    st.sampled_from(
        [b".", b"..", b"...", b"\r\n", b"\n", b"\r", b".\r\n", b"..x", b"\r\n.\r\n", b"\n.\n"]
    ),
    st.sampled_from([b"\r\n..\r\n", b"\n..", b"\r.", b"x", b"\r\n.", b".\r", b"\n\n"]),
    st.binary(max_size=20),
)
body_strategy = st.one_of(
    st.lists(body_piece, max_size=16).map(b"".join),
    st.binary(max_size=200),
    lines_strategy.map(lambda lines: b"\r\n".join(lines)),  # no final line end
    lines_strategy.map(lambda lines: b"\n".join(lines) + b"\n"),  # bare LF
)


def read_body(wire_chunks: Iterable[bytes]) -> bytes:
    client = p.ClientConnection()
    client.receive_data(b"+OK hi\r\n")
    assert isinstance(client.next_event(), p.Greeting)
    client.send(p.User("u"))
    client.send(p.Pass("p"))
    client.send(p.Retr(1))
    client.receive_data(b"+OK\r\n+OK\r\n")
    assert isinstance(client.next_event(), p.Ok)
    assert isinstance(client.next_event(), p.Ok)
    body: list[bytes] = []
    ended = False
    for chunk in wire_chunks:
        client.receive_data(chunk)
        while True:
            event = client.next_event()
            if event is p.NEED_DATA:
                break
            if isinstance(event, p.Ok):
                continue
            if isinstance(event, p.EndOfResponse):
                ended = True
                continue
            assert isinstance(event, p.Data) and type(event.data) is bytes
            assert not ended
            body.append(event.data)
    assert ended
    assert client.in_flight == ()
    return b"".join(body)


@settings(deadline=None, max_examples=300)
@given(body_strategy, cuts_strategy, cuts_strategy)
def test_body_round_trip(body: bytes, send_cuts: list[int], wire_cuts: list[int]) -> None:
    server = p.ServerConnection()
    server.send(p.Greeting("hi"))
    server.receive_data(b"USER u\r\nPASS p\r\nRETR 1\r\n")
    for expected in (p.User("u"), p.Pass("p")):
        assert server.next_event() == expected
        server.send(p.Ok())
    assert server.next_event() == p.Retr(1)
    wire = [server.send(p.Ok())]
    wire += [server.send(p.Data(chunk)) for chunk in split(body, send_cuts)]
    wire.append(server.send(p.EndOfResponse()))
    assert all(type(w) is bytes for w in wire)
    wire_bytes = b"".join(wire)
    assert wire_bytes.endswith(b"\r\n.\r\n")

    expected = normalised(body)
    assert read_body(split(wire_bytes, wire_cuts)) == expected
    assert p.message_size(body) == len(expected)
    assert p.message_size(split(body, send_cuts)) == len(expected)


@FAST
@given(lines_strategy, cuts_strategy)
def test_stuffed_wire_decodes_to_lines(lines: list[bytes], cuts: list[int]) -> None:
    # The other direction: a body stuffed by hand (RFC 1939 section 3), read back.
    wire = b"+OK\r\n" + wire_body(lines) + b".\r\n"
    assert read_body(split(wire, cuts)) == b"".join(line + b"\r\n" for line in lines)


# --- (c) listings ----------------------------------------------------------------------

numbers = st.integers(min_value=0, max_value=10**20 - 1)
msgnos = st.integers(min_value=1, max_value=10**20 - 1)
uids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=70)
line_end = st.sampled_from(["\r\n", "\n"])


@FAST
@given(st.dictionaries(msgnos, numbers, max_size=20), line_end, st.booleans())
def test_scan_listing_round_trip(listing: dict[int, int], end: str, extra: bool) -> None:
    # RFC 1939 section 5 allows more text after the size; a parser skips it.
    tail = " (info)" if extra else ""
    body = "".join(f"{n} {size}{tail}{end}" for n, size in listing.items()).encode()
    assert p.parse_scan_listing(body) == listing
    for n, size in listing.items():
        assert p.parse_scan_line(f"{n} {size}") == (n, size)


@FAST
@given(st.dictionaries(msgnos, uids, max_size=20), line_end)
def test_uid_listing_round_trip(listing: dict[int, str], end: str) -> None:
    body = "".join(f"{n} {uid}{end}" for n, uid in listing.items()).encode()
    assert p.parse_uid_listing(body) == listing
    for n, uid in listing.items():
        assert p.parse_uid_line(f"{n} {uid}") == (n, uid)


@FAST
@given(st.binary(max_size=200))
def test_listing_parsers_only_raise_remote_errors(body: bytes) -> None:
    for parse in (p.parse_scan_listing, p.parse_uid_listing):
        with contextlib.suppress(p.RemoteProtocolError):
            parse(body)


# --- (d) any bytes: only ProtocolError --------------------------------------------------

_SERVER_TOKENS = [b"+OK", b"-ERR", b"+ ", b"+", b" ", b"\r\n", b"\n", b"\r", b".", b"..", b"["]
protocolish = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.one_of(
            st.sampled_from(_SERVER_TOKENS + [line + b"\r\n" for line in _COMMAND_LINES]),
            st.binary(max_size=12),
        ),
        max_size=40,
    ).map(b"".join),
)


@settings(deadline=None, max_examples=300)
@given(protocolish, cuts_strategy, st.integers(min_value=0, max_value=255))
def test_client_any_bytes(data: bytes, cuts: list[int], script: int) -> None:
    client = p.ClientConnection(tls=bool(script & 1), max_buffer_size=256)
    commands: list[p.Command] = [
        [p.Auth("PLAIN"), p.Capa(), p.Stls(), p.Utf8(), p.Auth()][script % 5],
        p.User("u"),
        p.Pass("p"),
        p.List(),
        p.Retr(1),
        p.Top(1, 1),
        p.Uidl(),
    ]
    try:
        for chunk in [*split(data, cuts), b""]:
            client.receive_data(chunk)
            while True:
                event = client.next_event()
                if event is p.NEED_DATA or isinstance(event, p.ConnectionClosed):
                    break
                if isinstance(event, p.SaslChallenge):
                    client.send(p.SaslCancel() if event.data is None else p.SaslResponse(b"x"))
                elif not isinstance(event, p.Data) and not client.in_flight:
                    # The first command the state refuses ends the batch.
                    with contextlib.suppress(p.LocalProtocolError):
                        for command in commands:
                            client.send(command)
            if client.tls_pending:
                break
    except p.RemoteProtocolError:
        pass


@settings(deadline=None, max_examples=300)
@given(protocolish, cuts_strategy, st.booleans())
def test_server_any_bytes(data: bytes, cuts: list[int], tls: bool) -> None:
    server = p.ServerConnection(tls=tls, max_buffer_size=256)
    server.send(p.Greeting("hi", timestamp="<1.2@h>"))
    try:
        for chunk in [*split(data, cuts), b""]:
            server.receive_data(chunk)
            while True:
                event = server.next_event()
                if event in (p.NEED_DATA, p.PAUSED) or isinstance(event, p.ConnectionClosed):
                    break
                answer(server, event)
                if server.tls_pending:
                    server.start_tls()
    except p.RemoteProtocolError:
        pass
