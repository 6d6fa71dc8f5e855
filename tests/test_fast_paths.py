"""The connections' fast paths agree with their general paths, everywhere.

The fast paths (``ClientConnection.send`` for RETR/DELE in TRANSACTION,
``_projected_state``'s TRANSACTION short cut, the client's ``+OK`` to
RETR/TOP/LIST/UIDL, the server's ``+OK`` to the same, the constructor
bypasses, ``BodyDecoder.feed``'s no-dot path) each repeat checks made
elsewhere. Each scenario below is replayed twice, once as shipped and once
with the fast paths switched off by ``general_paths``, and everything
observable must be the same: bytes or exception (type, ``reason``), events,
and the state properties after every step.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

import pop3_sansio as p
from pop3_sansio import _connection
from pop3_sansio._multiline import BodyDecoder

# ---------------------------------------------------------------------------------
# The one place that knows how the fast paths are switched off. When the
# globals are renamed (the command table derives them), only this changes.
# ---------------------------------------------------------------------------------


def _projected_state_general(self: p.ClientConnection) -> p.State:
    # ClientConnection._projected_state without its TRANSACTION short cut:
    # the short cut tests the state, not a global, so it is replaced whole.
    state = self._state
    for command in self._in_flight:
        state = _connection.state_after_ok(state, command)
    return state


def _ok_event_general(text: str, code: p.ResponseCode | None) -> p.Ok:
    return p.Ok(text, code)  # through __init__ and its validation


@contextmanager
def general_paths() -> Iterator[None]:
    """Within this block the connections take their general paths only.

    - ``ClientConnection.send``: ``FAST_LINES`` empty.
    - ``ClientConnection._status_line`` and ``ServerConnection.send``:
      ``PLAIN_TRANSACTION`` empty.
    - ``ClientConnection._projected_state``: replaced by the loop alone.
    - ``_ok_event``: built through ``Ok.__init__``.
    ``Data`` via ``object.__new__``, the shared ``EndOfResponse`` and the
    parser's shared bare commands cannot be switched off this way: their
    results are compared to constructor-built events instead (below).
    ``BodyDecoder.feed``'s no-dot path tests ``bytes.find``, not a global: it
    is switched off per chunk by ``_DotSomewhere`` (below).
    """
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_connection, "FAST_LINES", {})
        m.setattr(_connection, "PLAIN_TRANSACTION", frozenset())
        m.setattr(_connection, "_ok_event", _ok_event_general)
        m.setattr(p.ClientConnection, "_projected_state", _projected_state_general)
        yield


# A function of _connection that only the general path calls, per fast path:
# the switch tests below spy on it to show that general_paths() turns the
# fast path off (else the comparisons would compare the fast path with itself).
GENERAL_ONLY = {
    "client-send": "encode_command",
    "projected-state": "state_after_ok",
    "client-status-line": "split_response_code",
    "server-send": "state_after_ok",
}


# ---------------------------------------------------------------------------------
# Replaying a script and recording everything observable
# ---------------------------------------------------------------------------------

Step = tuple[str, Any]  # ("send", event), ("recv", bytes), ("next", None)


def _outcome(call: Callable[[], object]) -> tuple[object, ...]:
    try:
        value = call()
    except p.ProtocolError as exc:
        return ("raise", type(exc).__name__, exc.reason)
    if isinstance(value, p.Sentinel):
        return ("value", value)
    return ("value", type(value), value)


# Everything a binding can read off a connection (attrgetter: this runs per step).
_client_view = operator.attrgetter(
    "our_state", "their_state", "in_flight", "utf8", "tls_pending", "tls_active", "buffered"
)
_server_view = operator.attrgetter(
    "our_state",
    "their_state",
    "current_command",
    "utf8",
    "tls_pending",
    "tls_active",
    "apop_timestamp",
    "buffered",
)


def replay(
    conn: p.ClientConnection | p.ServerConnection, steps: list[Step], setup: int = 0
) -> list[tuple[object, ...]]:
    """Run ``steps`` on ``conn``: the outcome of each, and the state view after each
    step past the first ``setup`` ones (a difference in the set-up shows in its
    outcomes or in the views that follow)."""
    view = _client_view if isinstance(conn, p.ClientConnection) else _server_view
    log: list[tuple[object, ...]] = []
    for i, (action, arg) in enumerate(steps):
        if action == "send":
            outcome = _outcome(lambda arg=arg: conn.send(arg))
        elif action == "recv":
            outcome = _outcome(lambda arg=arg: conn.receive_data(arg))
        else:
            outcome = _outcome(conn.next_event)
        log.append((action, outcome, view(conn) if i >= setup else None))  # type: ignore[arg-type]
    return log


Script = tuple[int, list[Step]]  # (how many steps are set-up, the steps)


def both_ways(
    make: Callable[[], p.ClientConnection | p.ServerConnection], scripts: list[Script]
) -> None:
    """Replay each script on a fresh connection, fast and general; assert the same logs."""
    fast = [replay(make(), steps, setup) for setup, steps in scripts]
    with general_paths():
        general = [replay(make(), steps, setup) for setup, steps in scripts]
    for (_, steps), a, b in zip(scripts, fast, general, strict=True):
        if a != b:
            for step, x, y in zip(steps, a, b, strict=True):
                assert x == y, f"differs at {step!r} in {steps!r}"


# ---------------------------------------------------------------------------------
# Client: every command x every state x in-flight prefixes x status lines
# ---------------------------------------------------------------------------------

_GREETED: list[Step] = [("recv", b"+OK hi\r\n"), ("next", None)]
_USER: list[Step] = [*_GREETED, ("send", p.User("alice")), ("recv", b"+OK\r\n"), ("next", None)]
_TRANSACTION: list[Step] = [*_USER, ("send", p.Pass("s")), ("recv", b"+OK in\r\n"), ("next", None)]
_CHALLENGED: list[Step] = [
    *_GREETED,
    ("send", p.Auth("PLAIN")),
    ("recv", b"+ \r\n"),
    ("next", None),
]

# name -> (constructor arguments, the script that reaches the state)
CLIENT_STATES: dict[str, tuple[dict[str, Any], list[Step]]] = {
    "greeting": ({}, []),
    "authorization": ({}, _GREETED),
    "after-user": ({}, _USER),
    "utf8": ({}, [*_GREETED, ("send", p.Utf8()), ("recv", b"+OK\r\n"), ("next", None)]),
    "transaction": ({}, _TRANSACTION),
    "transaction-short-lines": ({"max_command_length": 14}, _TRANSACTION),
    "in-body": ({}, [*_TRANSACTION, ("send", p.Retr(1)), ("recv", b"+OK\r\nab\r\n")]),
    "challenged": ({}, _CHALLENGED),
    "cancelled": ({}, [*_CHALLENGED, ("send", p.SaslCancel())]),
    "tls-pending": ({}, [*_GREETED, ("send", p.Stls()), ("recv", b"+OK\r\n"), ("next", None)]),
    "closed": ({}, [*_TRANSACTION, ("send", p.Quit()), ("recv", b"+OK\r\n"), ("next", None)]),
    "refused": ({}, [("recv", b"-ERR busy\r\n"), ("next", None)]),
    "our-error": ({}, [*_TRANSACTION, ("send", p.User("bob"))]),
    "their-error": (
        {},
        [*_TRANSACTION, ("send", p.Noop()), ("recv", b"bogus\r\n"), ("next", None)],
    ),
}

# The states in which a prefix can be sent; in the others its first command
# fails (the connection is then in ERROR), so a prefix adds nothing there.
_CAN_SEND = {
    "authorization",
    "after-user",
    "utf8",
    "transaction",
    "transaction-short-lines",
    "in-body",
    "their-error",  # the server broke the protocol; we may still send (QUIT)
}

IN_FLIGHT_PREFIXES: dict[str, list[p.Command]] = {
    "none": [],
    "retr": [p.Retr(1)],
    "quit": [p.Quit()],
    "auth": [p.Auth("PLAIN")],
    "stls": [p.Stls()],
    # A login in flight: what a command sent now finds is projected.
    "user-pass": [p.User("alice"), p.Pass("s")],
}

COMMANDS: list[object] = [
    p.User("alice"),
    p.Pass("secret"),
    p.Apop("alice", "0" * 32),
    p.Auth(),
    p.Auth("PLAIN"),
    p.SaslResponse(b"x"),
    p.SaslCancel(),
    p.Capa(),
    p.Stls(),
    p.Utf8(),
    p.Stat(),
    p.List(),
    p.List(1),
    p.Uidl(),
    p.Uidl(1),
    p.Retr(1),
    p.Retr(123456789),  # over max_command_length=14 with CRLF
    p.Top(1, 0),
    p.Dele(1),
    p.Noop(),
    p.Rset(),
    p.Quit(),
    p.Ok(),  # not a command
]

STATUS_LINES = [
    b"+OK\r\n",
    b"+OK text\r\n",
    b"+OK [SYS/TEMP] text\r\n",
    b"+OK [text\r\n",
    b"-ERR\r\n",
    b"+OKx\r\n",
    b"+OK \0\r\n",
    b"+ \r\n",
]
# What follows the line: nothing yet, or (after three +OK lines) a body with a
# stuffed dot and the next answer.
_OPENS_BODY = {b"+OK\r\n", b"+OK text\r\n", b"+OK [SYS/TEMP] text\r\n"}
BODIES = [b"", b"one\r\n..two\r\n.\r\n+OK next\r\n"]


def _client_scripts(command: object) -> list[tuple[dict[str, Any], Script]]:
    scripts = []
    for (name, (kwargs, setup)), prefix, line, body in itertools.product(
        CLIENT_STATES.items(), IN_FLIGHT_PREFIXES.values(), STATUS_LINES, BODIES
    ):
        if (body and line not in _OPENS_BODY) or (prefix and name not in _CAN_SEND):
            continue
        steps: list[Step] = [*setup, *(("send", c) for c in prefix)]
        steps += [("send", command), ("recv", line + body)]
        steps += [("next", None)] * 4
        steps += [("recv", b""), ("next", None)]
        scripts.append((kwargs, (len(setup), steps)))
    return scripts


def test_prefixes_fail_outside_can_send() -> None:
    """What leaving prefixes out of most states relies on (and _CAN_SEND is not too wide)."""
    for name, (kwargs, setup) in CLIENT_STATES.items():
        sent = []
        for prefix in filter(None, IN_FLIGHT_PREFIXES.values()):
            conn = p.ClientConnection(**kwargs)
            replay(conn, setup)
            sent.append(_outcome(lambda conn=conn, c=prefix[0]: conn.send(c))[0] == "value")
        assert any(sent) is (name in _CAN_SEND), name


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_client_fast_paths_agree(command: object) -> None:
    """``ClientConnection``: same bytes, events, errors and states either way."""
    by_kwargs: dict[tuple[tuple[str, Any], ...], list[Script]] = {}
    for kwargs, script in _client_scripts(command):
        by_kwargs.setdefault(tuple(sorted(kwargs.items())), []).append(script)
    for kwargs_items, scripts in by_kwargs.items():
        kwargs = dict(kwargs_items)
        both_ways(lambda kwargs=kwargs: p.ClientConnection(**kwargs), scripts)


# ---------------------------------------------------------------------------------
# Server: every command line x every state x every response, then what follows
# ---------------------------------------------------------------------------------


def _answered(line: bytes, *responses: p.Response) -> list[Step]:
    return [("recv", line + b"\r\n"), ("next", None), *(("send", r) for r in responses)]


_S_GREETED: list[Step] = [("send", p.Greeting("hi", timestamp="<1@x>"))]
_S_USER = [*_S_GREETED, *_answered(b"USER alice", p.Ok())]
_S_TRANSACTION = [*_S_USER, *_answered(b"PASS s", p.Ok())]
_S_CHALLENGED = [*_S_GREETED, *_answered(b"AUTH PLAIN", p.SaslChallenge(b""))]

SERVER_STATES: dict[str, tuple[dict[str, Any], list[Step]]] = {
    "greeting": ({}, []),
    "authorization": ({}, _S_GREETED),
    "after-user": ({}, _S_USER),
    "utf8": ({}, [*_S_GREETED, *_answered(b"UTF8", p.Ok())]),
    "transaction": ({}, _S_TRANSACTION),
    "transaction-tls": ({"tls": True}, _S_TRANSACTION),
    "update": ({}, [*_S_TRANSACTION, ("recv", b"QUIT\r\n"), ("next", None)]),
    "in-body": ({}, [*_S_TRANSACTION, *_answered(b"RETR 1", p.Ok(), p.Data(b"ab"))]),
    "challenged": ({}, _S_CHALLENGED),
    "sasl-failed": ({}, [*_S_CHALLENGED, ("recv", b"*\r\n"), ("next", None)]),
    "tls-pending": ({}, [*_S_GREETED, *_answered(b"STLS", p.Ok())]),
    "closed": ({}, [*_S_TRANSACTION, *_answered(b"QUIT", p.Ok())]),
    "refused": ({}, [("send", p.Err("busy"))]),
    "our-error": ({}, [*_S_TRANSACTION, ("send", p.Data(b"x"))]),
    "their-error": ({}, [*_S_TRANSACTION, ("recv", b"X" * 300 + b"\r\n"), ("next", None)]),
}

COMMAND_LINES = [
    b"USER alice",
    b"PASS secret",
    b"APOP alice " + b"0" * 32,
    b"AUTH",
    b"AUTH PLAIN",
    b"AUTH PLAIN AGFAYg==",
    b"*",
    b"CAPA",
    b"STLS",
    b"UTF8",
    b"STAT",
    b"LIST",
    b"LIST 1",
    b"UIDL",
    b"UIDL 1",
    b"RETR 1",
    b"retr 1",
    b"TOP 1 0",
    b"DELE 1",
    b"NOOP",
    b"RSET",
    b"QUIT",
    b"RETR x",
    b"XYZZY",
]

RESPONSES: list[p.Response] = [
    p.Ok(),
    p.Ok("text"),
    p.Ok("text", p.SYS_TEMP),
    p.Ok("x" * 600),
    p.Err(),
    p.Err("no", p.IN_USE),
    p.Greeting("again"),
    p.SaslChallenge(b"c"),
    p.Data(b".a\r\n"),
    p.EndOfResponse(),
]


@pytest.mark.parametrize("line", COMMAND_LINES, ids=repr)
def test_server_fast_paths_agree(line: bytes) -> None:
    """``ServerConnection.send``: same bytes, errors and states either way."""
    for kwargs, setup in SERVER_STATES.values():
        scripts: list[Script] = []
        for response in RESPONSES:
            steps: list[Step] = [*setup, ("recv", line + b"\r\nNOOP\r\n"), ("next", None)]
            steps += [("send", response), ("send", p.Data(b".b\nc")), ("send", p.EndOfResponse())]
            steps += [("next", None), ("send", p.Ok()), ("recv", b""), ("next", None)]
            scripts.append((len(setup), steps))
        both_ways(lambda kwargs=kwargs: p.ServerConnection(**kwargs), scripts)


# ---------------------------------------------------------------------------------
# Each switch in general_paths() really turns its fast path off.
# ---------------------------------------------------------------------------------


def _client_in_transaction() -> p.ClientConnection:
    conn = p.ClientConnection()
    replay(conn, _TRANSACTION)
    assert conn.our_state is p.State.TRANSACTION
    return conn


def _refuse(*args: object) -> Any:
    raise AssertionError("general path taken")


def test_switch_client_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """RETR in TRANSACTION skips the encoder, unless switched off."""
    fast, general = _client_in_transaction(), _client_in_transaction()
    monkeypatch.setattr(_connection, GENERAL_ONLY["client-send"], _refuse)
    assert fast.send(p.Retr(7)) == b"RETR 7\r\n"
    with general_paths(), pytest.raises(AssertionError, match="general path"):
        general.send(p.Retr(7))


def test_switch_projected_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """In TRANSACTION the in-flight commands are not folded in, unless switched off."""
    conn = _client_in_transaction()
    conn.send(p.Stat())
    monkeypatch.setattr(_connection, GENERAL_ONLY["projected-state"], _refuse)
    assert conn.send(p.Noop()) == b"NOOP\r\n"
    with general_paths(), pytest.raises(AssertionError, match="general path"):
        conn.send(p.Noop())


def test_switch_client_status_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """``+OK text`` to RETR in TRANSACTION skips the code parser, unless switched off."""
    fast, general = _client_in_transaction(), _client_in_transaction()
    for conn in (fast, general):
        conn.send(p.Retr(1))
        conn.receive_data(b"+OK 3 octets\r\n")
    monkeypatch.setattr(_connection, GENERAL_ONLY["client-status-line"], _refuse)
    assert fast.next_event() == p.Ok("3 octets")
    with general_paths(), pytest.raises(AssertionError, match="general path"):
        general.next_event()


def test_switch_server_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """``+OK`` to RETR in TRANSACTION skips the state change, unless switched off."""
    fast, general = p.ServerConnection(), p.ServerConnection()
    for conn in (fast, general):
        replay(conn, [*_S_TRANSACTION, ("recv", b"RETR 1\r\n"), ("next", None)])
        assert conn.current_command == p.Retr(1)
    monkeypatch.setattr(_connection, GENERAL_ONLY["server-send"], _refuse)
    assert fast.send(p.Ok()) == b"+OK\r\n"
    with general_paths(), pytest.raises(AssertionError, match="general path"):
        general.send(p.Ok())


def test_fast_sets_are_todays() -> None:
    """The fast paths' sets, written out; each entry changes no state in TRANSACTION.

    ``FAST_LINES`` gives the same bytes as ``encode_command``.
    """
    assert {p.Retr, p.Top, p.List, p.Uidl} == _connection.PLAIN_TRANSACTION
    samples = [p.Retr(7), p.Top(7, 0), p.List(), p.List(7), p.Uidl(), p.Uidl(7), p.Dele(7)]
    for command in samples:
        assert _connection.state_after_ok(p.State.TRANSACTION, command) is p.State.TRANSACTION
    assert set(_connection.FAST_LINES) == {p.Retr, p.Dele}
    for command in (p.Retr(7), p.Dele(10**19)):
        line = _connection.FAST_LINES[type(command)] % command.msg
        assert line == p.encode_command(command) + b"\r\n"


# ---------------------------------------------------------------------------------
# Constructor bypasses: what the connections build without __init__ is what
# __init__ would build (equal, same repr and type, accepted by __init__).
# ---------------------------------------------------------------------------------

_STATUS_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\0"), max_size=40
)
_CODES = st.sampled_from([None, "SYS/TEMP", "IN-USE", "AUTH", "X-Y/Z", "bad code", "]"])


def _same_as_constructed(event: object) -> None:
    assert event is not p.NEED_DATA
    fields = [getattr(event, name) for name in type(event).__match_args__]
    rebuilt = type(event)(*fields)
    assert event == rebuilt
    assert repr(event) == repr(rebuilt)
    assert hash(event) == hash(rebuilt)


@settings(deadline=None, max_examples=150)
@given(text=_STATUS_TEXT, code=_CODES, command=st.sampled_from([p.Retr(1), p.Noop(), p.Stat()]))
def test_client_ok_bypass(text: str, code: str | None, command: p.Command) -> None:
    """``_ok_event`` (fast and general status paths) makes the ``Ok`` that ``Ok()`` makes."""
    conn = _client_in_transaction()
    conn.send(command)
    line = "+OK" + (f" [{code}]" if code else "") + (f" {text}" if text or code else "")
    conn.receive_data(line.encode() + b"\r\n")
    event = conn.next_event()
    assert type(event) is p.Ok
    _same_as_constructed(event)
    expected_code, expected_text = p.split_response_code(line[4:])
    assert event == p.Ok(expected_text, expected_code)


@settings(deadline=None, max_examples=100)
@given(body=st.binary(max_size=60).map(lambda b: b.replace(b"\n.", b"\nx")), cut=st.integers(0, 80))
def test_client_data_and_end_bypass(body: bytes, cut: int) -> None:
    """``Data`` made with ``object.__new__`` and the shared ``EndOfResponse`` equal built ones."""
    conn = _client_in_transaction()
    conn.send(p.Retr(1))
    wire = b"+OK\r\n" + body.lstrip(b".") + b"\r\n.\r\n"
    conn.receive_data(wire[:cut] or wire)
    if cut and wire[cut:]:
        conn.receive_data(wire[cut:])
    events = []
    while (event := conn.next_event()) is not p.NEED_DATA:
        events.append(event)
        if type(event) is p.EndOfResponse:
            break
    assert type(events[-1]) is p.EndOfResponse
    for event in events:
        _same_as_constructed(event)
    assert events[-1] == p.EndOfResponse()
    assert b"".join(e.data for e in events if type(e) is p.Data) == body.lstrip(b".") + b"\r\n"


def test_server_shared_bare_commands() -> None:
    """The parser's shared command instances equal freshly built ones, of the same type."""
    for keyword, expected in [
        (b"CAPA", p.Capa()),
        (b"STLS", p.Stls()),
        (b"UTF8", p.Utf8()),
        (b"AUTH", p.Auth()),
        (b"QUIT", p.Quit()),
    ]:
        conn = p.ServerConnection()
        conn.send(p.Greeting())
        conn.receive_data(keyword + b"\r\n")
        event = conn.next_event()
        assert type(event) is type(expected)
        assert event == expected
        _same_as_constructed(event)
    for keyword, expected in [
        (b"STAT", p.Stat()),
        (b"LIST", p.List()),
        (b"UIDL", p.Uidl()),
        (b"RSET", p.Rset()),
        (b"NOOP", p.Noop()),
    ]:
        conn = p.ServerConnection()
        replay(conn, _S_TRANSACTION)
        conn.receive_data(keyword + b"\r\n")
        event = conn.next_event()
        assert type(event) is type(expected)
        assert event == expected
        _same_as_constructed(event)


# ---------------------------------------------------------------------------------
# BodyDecoder.feed: the no-dot (memchr) path against the line-dot search and
# a reference decoder, with dots at chunk edges.
# ---------------------------------------------------------------------------------


class _DotSomewhere(bytes):
    """Bytes whose ``find(b".")`` claims a dot: ``feed`` cannot take its memchr path."""

    def find(self, sub: Any, *args: Any) -> int:
        found = bytes.find(self, sub, *args)
        return 0 if sub == b"." and found < 0 else found


def reference_decode(wire: bytes) -> tuple[bytes, int | None]:
    """RFC 1939 section 3, line by line: ``(body, end offset or None if unfinished)``.

    A line ends after LF; ``.`` CRLF (or ``.`` LF) ends the body; any other
    line loses a leading dot.
    """
    out, pos = [], 0
    while (nl := wire.find(b"\n", pos)) >= 0:
        line, pos = wire[pos : nl + 1], nl + 1
        if line in (b".\r\n", b".\n"):
            return b"".join(out), pos
        out.append(line[1:] if line[:1] == b"." else line)
    return b"".join(out) + (wire[pos + 1 :] if wire[pos : pos + 1] == b"." else wire[pos:]), None


def _decode(chunks: list[bytes]) -> tuple[list[tuple[bytes, int, bool]], bytes, int | None]:
    decoder = BodyDecoder()
    steps, body, offset = [], [], 0
    for chunk in chunks:
        start = 0
        while start < len(chunk):
            data, end, finished = decoder.feed(chunk, start)
            steps.append((bytes(data), end, finished))
            body.append(bytes(data))
            if finished:
                return steps, b"".join(body), offset + end
            start = end
        offset += len(chunk)
    return steps, b"".join(body), None


@st.composite
def wire_and_cuts(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    wire = draw(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b".."]), max_size=30))
    data = b"".join(wire) + draw(st.sampled_from([b".\r\n", b"\r\n.\r\n", b"\n.\n", b""]))
    dots = [i + d for i, byte in enumerate(data) if byte == 0x2E for d in (0, 1)]
    cuts = draw(st.lists(st.sampled_from(dots) if dots else st.just(0), max_size=4))
    cuts += draw(st.lists(st.integers(0, len(data)), max_size=3))
    return data, sorted(set(cuts))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(deadline=None, max_examples=200)
@given(wire_and_cuts())
def test_body_decoder_fast_path_and_reference(case: tuple[bytes, list[int]]) -> None:
    """Any chunking, dots at the edges: memchr path, dot-search path and reference agree."""
    data, cuts = case
    chunks = _split(data, cuts)
    fast_steps, fast_body, fast_end = _decode(chunks)
    slow_steps, _, _ = _decode([_DotSomewhere(c) for c in chunks])
    assert fast_steps == slow_steps
    body, end = reference_decode(data)
    assert fast_end == end
    if end is not None:
        assert fast_body == body
    else:
        # Unfinished: a trailing "." or "." CR at a line start is held back.
        assert body.startswith(fast_body)
        assert len(body) - len(fast_body) <= 1


def test_dot_somewhere_disables_the_memchr_path() -> None:
    """The switch is real: without a dot, the result is the input itself, else a copy."""
    chunk = b"no dots here\r\n"
    data, _, _ = BodyDecoder().feed(chunk)
    assert data is chunk
    slow = _DotSomewhere(chunk)
    data, end, finished = BodyDecoder().feed(slow)
    assert (data, end, finished) == (chunk, len(chunk), False)
