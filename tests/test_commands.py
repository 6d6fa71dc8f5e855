"""The command table (``_commands.py``): its rows, what is derived from them, and its readers."""

from __future__ import annotations

import typing

import pytest

import pop3_sansio as p
from pop3_sansio import _commands as c
from pop3_sansio._parse import parse_command

A, T = p.State.AUTHORIZATION, p.State.TRANSACTION

# The keywords each RFC defines that this package implements, written out by hand.
RFC_KEYWORDS = {
    "RFC 1939": {"USER", "PASS", "APOP", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE"}
    | {"NOOP", "RSET", "QUIT"},
    "RFC 2449": {"CAPA"},
    "RFC 2595": {"STLS"},
    "RFC 5034": {"AUTH"},
    "RFC 6856": {"UTF8"},
}

# One example of every command event, with the states it is valid in.
SAMPLES: list[tuple[p.Command, tuple[p.State, ...]]] = [
    (p.User("alice"), (A,)),
    (p.Pass("a secret"), (A,)),
    (p.Apop("alice", "c4c9334bac560ecc979e58001b3e22fb"), (A,)),
    (p.Auth(), (A,)),
    (p.Auth("PLAIN"), (A,)),
    (p.Auth("PLAIN", b"\0alice\0pw"), (A,)),
    (p.Auth("PLAIN", b""), (A,)),
    (p.Stls(), (A,)),
    (p.Utf8(), (A,)),
    (p.Capa(), (A, T)),
    (p.Quit(), (A, T)),
    (p.Stat(), (T,)),
    (p.List(), (T,)),
    (p.List(3), (T,)),
    (p.Uidl(), (T,)),
    (p.Uidl(3), (T,)),
    (p.Retr(3), (T,)),
    (p.Top(3, 0), (T,)),
    (p.Dele(3), (T,)),
    (p.Noop(), (T,)),
    (p.Rset(), (T,)),
]


def test_keywords_are_the_rfcs() -> None:
    """``BY_KEYWORD`` covers exactly the keywords of RFC 1939, 2449, 2595, 5034 and 6856."""
    assert set(c.BY_KEYWORD) == set().union(*RFC_KEYWORDS.values())
    assert set(c.BY_KEYWORD) == c.KEYWORDS
    for keyword, spec in c.BY_KEYWORD.items():
        assert spec.keyword == keyword
        assert spec.event.__name__.upper() == keyword
        assert c.COMMANDS[spec.event] is spec


def test_every_command_event_has_one_row() -> None:
    """The 16 commands and the two SASL lines, each once; the SASL lines have no keyword."""
    assert set(c.COMMANDS) == set(typing.get_args(p.Command))
    assert len(c.COMMANDS) == 18
    for event in (p.SaslResponse, p.SaslCancel):
        assert c.COMMANDS[event].keyword is None
        assert c.COMMANDS[event].states == ()
        assert c.COMMANDS[event].handler is None


@pytest.mark.parametrize(("command", "states"), SAMPLES, ids=repr)
def test_states(command: p.Command, states: tuple[p.State, ...]) -> None:
    assert c.COMMANDS[type(command)].states == states


def test_derived_sets() -> None:
    """What the fast paths and the parser read, derived from the rows."""
    assert {p.Retr, p.Top, p.List, p.Uidl} == c.PLAIN_TRANSACTION
    assert {p.Retr: b"RETR %d\r\n", p.Dele: b"DELE %d\r\n"} == c.FAST_LINES
    assert {"USER", "PASS", "APOP", "AUTH", "LIST", "UIDL", "RETR"} | {
        "DELE",
        "TOP",
    } == c.TAKES_ARGUMENTS
    assert {
        k: c.BY_KEYWORD[k].event()
        for k in ("CAPA", "STLS", "UTF8", "STAT", "NOOP", "RSET", "QUIT", "LIST", "UIDL", "AUTH")
    } == c.BARE_COMMANDS
    assert {s.keyword for s in c.COMMANDS.values() if s.barrier} == {"AUTH", "STLS", "QUIT"}


@pytest.mark.parametrize(("command", "states"), SAMPLES, ids=repr)
def test_multiline_login_and_state_after_ok(
    command: p.Command, states: tuple[p.State, ...]
) -> None:
    bodies = (p.Capa(), p.Retr(3), p.Top(3, 0), p.List(), p.Uidl(), p.Auth())
    logins = (p.Pass("a secret"), p.Apop("alice", "c4c9334bac560ecc979e58001b3e22fb"))
    logs_in = command in logins or (isinstance(command, p.Auth) and command.mechanism is not None)
    assert c.multiline_on_ok(command) is (command in bodies)
    assert c.completes_login(command) is logs_in
    expected = p.State.CLOSED if command == p.Quit() else (T if logs_in else states[0])
    assert c.state_after_ok(states[0], command) is expected


@pytest.mark.parametrize(("command", "states"), SAMPLES, ids=repr)
def test_encoder_and_parser_agree(command: p.Command, states: tuple[p.State, ...]) -> None:
    """What the client writes for a row, the server reads back as the same event."""
    line = p.encode_command(command)
    assert line.split(b" ")[0] == c.COMMANDS[type(command)].wire
    assert parse_command(line) == command


def test_sasl_lines_encode() -> None:
    assert p.encode_command(p.SaslResponse(b"\0a\0b")) == b"AGEAYg=="
    assert p.encode_command(p.SaslCancel()) == b"*"


def test_not_a_command() -> None:
    """Objects with no row: no body, no login, no state change, no wire form."""
    for thing in (p.Ok(), p.UnknownCommand("X", b"X", "unknown"), None, "RETR 1"):
        assert c.spec_of(thing) is None
        assert c.multiline_on_ok(thing) is False
        assert c.completes_login(thing) is False
        assert c.state_after_ok(T, thing) is T
    with pytest.raises(KeyError):
        p.encode_command(p.Ok())  # type: ignore[arg-type]


class _MyRetr(p.Retr):
    """A subclass of a command event finds its base's row (as ``isinstance`` would)."""

    __slots__ = ()


def test_subclass_finds_the_row() -> None:
    command = _MyRetr(4)
    assert c.spec_of(command) is c.COMMANDS[p.Retr]
    assert c.multiline_on_ok(command)
    assert p.encode_command(command) == b"RETR 4"


def test_repr() -> None:
    assert repr(c.COMMANDS[p.Retr]) == "CommandSpec(RETR)"
    assert repr(c.COMMANDS[p.SaslCancel]) == "CommandSpec(SaslCancel)"


def test_handlers_from_the_table() -> None:
    """``ServerSession``'s handler table is the rows' ``handler`` names."""
    from pop3_sansio import _server_session

    assert set(_server_session._HANDLERS) == {
        s.event for s in c.COMMANDS.values() if s.keyword is not None
    }
    for event, handler in _server_session._HANDLERS.items():
        assert handler is getattr(p.ServerSession, c.COMMANDS[event].handler or "")
    assert _server_session._HANDLERS[p.Top] is p.ServerSession._retr
