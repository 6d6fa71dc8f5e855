"""Events, I/O instructions, server requests and ``ResponseCode``/``Capabilities`` as values.

Pins what callers rely on today, whatever the classes are built with: the
``repr`` (secrets and bodies left out), equality and hashing by value and
type, immutability, ``__slots__``, ``pickle`` and ``copy``, the ``match``
positions, construction by position and by keyword with today's defaults, and
the ``LocalProtocolError`` (type and ``reason``) a bad argument raises.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from typing import Any

import pytest

import pop3_sansio as p

SYS_TEMP = p.ResponseCode(("SYS", "TEMP"))
DIGEST = "0123456789abcdef0123456789ABCDEF"


@dataclass
class Case:
    """``cls(*args)`` and ``cls(**kwargs)`` build the same value, shown as ``golden``."""

    cls: type
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    golden: str
    match_args: tuple[str, ...]
    other: object  # an instance that must compare unequal

    @property
    def id(self) -> str:
        return self.golden


CASES = [
    # --- commands
    Case(p.User, ("alice",), {"name": "alice"}, "User(name='alice')", ("name",), p.User("bob")),
    Case(p.Pass, ("s e",), {"password": "s e"}, "Pass()", ("password",), p.Pass("s")),
    Case(
        p.Apop,
        ("alice", DIGEST),
        {"name": "alice", "digest": DIGEST},
        f"Apop(name='alice', digest='{DIGEST}')",
        ("name", "digest"),
        p.Apop("alice", DIGEST.lower()),
    ),
    Case(
        p.Auth,
        ("PLAIN", b"\0a\0b"),
        {"mechanism": "PLAIN", "initial_response": b"\0a\0b"},
        "Auth(mechanism='PLAIN')",
        ("mechanism", "initial_response"),
        p.Auth("PLAIN"),
    ),
    Case(p.Auth, (), {}, "Auth(mechanism=None)", ("mechanism", "initial_response"), p.Capa()),
    Case(p.SaslResponse, (b"x",), {"data": b"x"}, "SaslResponse()", ("data",), p.SaslResponse(b"")),
    Case(p.SaslCancel, (), {}, "SaslCancel()", (), p.Quit()),
    Case(p.Capa, (), {}, "Capa()", (), p.Stls()),
    Case(p.Stls, (), {}, "Stls()", (), p.Utf8()),
    Case(p.Utf8, (), {}, "Utf8()", (), p.Stat()),
    Case(p.Stat, (), {}, "Stat()", (), p.Noop()),
    Case(p.List, (), {}, "List(msg=None)", ("msg",), p.Uidl()),
    Case(p.List, (3,), {"msg": 3}, "List(msg=3)", ("msg",), p.Uidl(3)),
    Case(p.Uidl, (2,), {"msg": 2}, "Uidl(msg=2)", ("msg",), p.Uidl()),
    Case(p.Retr, (1,), {"msg": 1}, "Retr(msg=1)", ("msg",), p.Dele(1)),
    Case(
        p.Top, (1, 5), {"msg": 1, "lines": 5}, "Top(msg=1, lines=5)", ("msg", "lines"), p.Top(1, 0)
    ),
    Case(p.Dele, (4,), {"msg": 4}, "Dele(msg=4)", ("msg",), p.Dele(5)),
    Case(p.Noop, (), {}, "Noop()", (), p.Rset()),
    Case(p.Rset, (), {}, "Rset()", (), p.Quit()),
    Case(p.Quit, (), {}, "Quit()", (), p.ConnectionClosed()),
    Case(
        p.UnknownCommand,
        ("FOO", b"FOO bar", "unknown"),
        {"keyword": "FOO", "line": b"FOO bar", "reason": "unknown"},
        "UnknownCommand(keyword='FOO', reason='unknown')",
        ("keyword", "line", "reason"),
        p.UnknownCommand("FOO", b"FOO baz", "unknown"),
    ),
    # --- responses
    Case(
        p.Greeting,
        ("hi", SYS_TEMP, "<1@x>"),
        {"text": "hi", "code": SYS_TEMP, "timestamp": "<1@x>"},
        "Greeting(text='hi', code=ResponseCode(levels=('SYS', 'TEMP')), timestamp='<1@x>')",
        ("text", "code", "timestamp"),
        p.Greeting("hi", SYS_TEMP),
    ),
    Case(
        p.Greeting,
        (),
        {},
        "Greeting(text='', code=None, timestamp=None)",
        ("text", "code", "timestamp"),
        p.Ok(),
    ),
    Case(
        p.Ok,
        ("fine", SYS_TEMP),
        {"text": "fine", "code": SYS_TEMP},
        "Ok(text='fine', code=ResponseCode(levels=('SYS', 'TEMP')))",
        ("text", "code"),
        p.Err("fine", SYS_TEMP),
    ),
    Case(p.Ok, (), {}, "Ok(text='', code=None)", ("text", "code"), p.Ok(" ")),
    Case(
        p.Err,
        ("no", SYS_TEMP),
        {"text": "no", "code": SYS_TEMP},
        "Err(text='no', code=ResponseCode(levels=('SYS', 'TEMP')))",
        ("text", "code"),
        p.Err("no"),
    ),
    Case(p.Data, (b"abc",), {"data": b"abc"}, "Data()", ("data",), p.Chunk(b"abc")),
    Case(p.EndOfResponse, (), {}, "EndOfResponse()", (), p.ConnectionClosed()),
    Case(
        p.SaslChallenge,
        (b"c",),
        {"data": b"c"},
        "SaslChallenge()",
        ("data",),
        p.SaslChallenge(None),
    ),
    Case(p.ConnectionClosed, (), {}, "ConnectionClosed()", (), p.EndOfResponse()),
    # --- codes and capabilities
    Case(
        p.ResponseCode,
        (("SYS", "TEMP"),),
        {"levels": ("SYS", "TEMP")},
        "ResponseCode(levels=('SYS', 'TEMP'))",
        ("levels",),
        p.ResponseCode(("SYS",)),
    ),
    Case(
        p.Capabilities,
        ({"TOP": (), "SASL": ("PLAIN",)},),
        {"tags": {"TOP": (), "SASL": ("PLAIN",)}},
        "Capabilities(tags={'TOP': (), 'SASL': ('PLAIN',)})",
        ("tags",),
        p.Capabilities({"TOP": ()}),
    ),
    Case(p.Capabilities, (), {}, "Capabilities(tags={})", ("tags",), p.Capabilities({"TOP": ()})),
    # --- I/O instructions
    Case(p.Write, (b"x",), {"data": b"x"}, "Write()", ("data",), p.Write(b"y")),
    Case(p.Chunk, (b"y",), {"data": b"y"}, "Chunk()", ("data",), p.Data(b"y")),
    Case(p.StartTls, (), {}, "StartTls()", (), p.CloseConnection("quit")),
    Case(
        p.Call,
        (len, (b"ab",), True),
        {"function": len, "args": (b"ab",), "quick": True},
        "Call(function=<built-in function len>, args=(b'ab',), quick=True)",
        ("function", "args", "quick"),
        p.Call(len, (b"ab",)),
    ),
    Case(
        p.Call,
        (len,),
        {"function": len},
        "Call(function=<built-in function len>, args=(), quick=False)",
        ("function", "args", "quick"),
        p.Call(abs),
    ),
    Case(p.Sleep, (1.5,), {"seconds": 1.5}, "Sleep(seconds=1.5)", ("seconds",), p.Sleep(2)),
    # --- server requests
    Case(
        p.MessageInfo,
        (10, "u1"),
        {"size": 10, "uid": "u1"},
        "MessageInfo(size=10, uid='u1')",
        ("size", "uid"),
        p.MessageInfo(11, "u1"),
    ),
    Case(
        p.OpenMaildrop,
        ("alice",),
        {"username": "alice"},
        "OpenMaildrop(username='alice')",
        ("username",),
        p.OpenMaildrop("bob"),
    ),
    Case(
        p.ReadMessage,
        (1, "u1", 5),
        {"msg": 1, "uid": "u1", "lines": 5},
        "ReadMessage(msg=1, uid='u1', lines=5)",
        ("msg", "uid", "lines"),
        p.ReadMessage(1, "u1"),
    ),
    Case(
        p.CommitDeletions,
        ((1,), ("u1",)),
        {"messages": (1,), "uids": ("u1",)},
        "CommitDeletions(messages=(1,), uids=('u1',))",
        ("messages", "uids"),
        p.CommitDeletions((), ()),
    ),
    Case(
        p.CloseConnection,
        ("quit",),
        {"reason": "quit"},
        "CloseConnection(reason='quit')",
        ("reason",),
        p.CloseConnection("refused"),
    ),
]

# Classes that hold a dict cannot be hashed (today a TypeError, as for a dict).
UNHASHABLE = {p.Capabilities}

# The value classes the public API exports; each has a case above.
VALUE_CLASSES = {
    # commands and responses
    p.User, p.Pass, p.Apop, p.Auth, p.SaslResponse, p.SaslCancel, p.Capa, p.Stls, p.Utf8,
    p.Stat, p.List, p.Uidl, p.Retr, p.Top, p.Dele, p.Noop, p.Rset, p.Quit, p.UnknownCommand,
    p.Greeting, p.Ok, p.Err, p.Data, p.EndOfResponse, p.SaslChallenge, p.ConnectionClosed,
    # codes, instructions, requests
    p.ResponseCode, p.Capabilities, p.Write, p.Chunk, p.StartTls, p.Call, p.Sleep,
    p.MessageInfo, p.OpenMaildrop, p.ReadMessage, p.CommitDeletions, p.CloseConnection,
}  # fmt: skip


def test_every_value_class_has_a_case() -> None:
    """No class is left out of the cases below (and none is in twice by mistake)."""
    assert {case.cls for case in CASES} == VALUE_CLASSES


def _ids(case: Case) -> str:
    return case.golden


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_repr(case: Case) -> None:
    """The golden ``repr``: secrets and bodies are left out, so logging an event leaks neither."""
    assert repr(case.cls(*case.args)) == case.golden


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_positional_and_keyword_construction_agree(case: Case) -> None:
    value = case.cls(*case.args)
    assert type(value) is case.cls
    assert value == case.cls(**case.kwargs)
    for name, given in case.kwargs.items():
        assert getattr(value, name) == given
        assert type(getattr(value, name)) is type(given)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_equality_and_hash(case: Case) -> None:
    """Equal by type and fields; unequal to another value, another type, a tuple."""
    value = case.cls(*case.args)
    twin = case.cls(*case.args)
    assert value == twin
    assert not value != twin  # noqa: SIM202 -- __ne__ is part of what is pinned
    assert value != case.other
    assert not value == case.other  # noqa: SIM201
    assert value != tuple(getattr(value, name) for name in case.match_args)
    assert value != object()
    if case.cls in UNHASHABLE:
        with pytest.raises(TypeError):
            hash(value)
    else:
        assert hash(value) == hash(twin)
        assert {value: 1}[twin] == 1


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_immutable_and_slotted(case: Case) -> None:
    """Setting or deleting any attribute raises ``AttributeError``; no ``__dict__``."""
    value = case.cls(*case.args)
    assert not hasattr(value, "__dict__")
    assert tuple(case.cls.__slots__) == case.match_args
    for name in case.match_args:
        with pytest.raises(AttributeError):
            setattr(value, name, None)
        with pytest.raises(AttributeError):
            delattr(value, name)
    # A name that is not a field cannot be added either. A frozen slotted
    # dataclass raises TypeError for it on CPython 3.11 (its __setattr__
    # calls super() with the class it replaced); a plain slotted class
    # raises AttributeError. Either refuses, which is the contract.
    with pytest.raises((AttributeError, TypeError)):
        value.extra = None
    with pytest.raises((AttributeError, TypeError)):
        del value.extra
    assert value == case.cls(*case.args)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_pickle_and_copy(case: Case) -> None:
    value = case.cls(*case.args)
    for twin in (
        pickle.loads(pickle.dumps(value)),
        pickle.loads(pickle.dumps(value, protocol=2)),
        copy.copy(value),
        copy.deepcopy(value),
    ):
        assert type(twin) is case.cls
        assert twin == value
        assert repr(twin) == case.golden


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_match_args(case: Case) -> None:
    """``match`` binds fields by position in declaration order."""
    assert case.cls.__match_args__ == case.match_args
    value = case.cls(*case.args)
    fields = tuple(getattr(value, name) for name in case.match_args)
    cls = case.cls
    got: tuple[object, ...] | None = None
    # One pattern per arity: a class pattern with more positions than
    # __match_args__ raises TypeError instead of failing to match.
    match (len(fields), value):
        case (3, cls(a, b, c)):
            got = (a, b, c)
        case (2, cls(a, b)):
            got = (a, b)
        case (1, cls(a)):
            got = (a,)
        case (0, cls()):
            got = ()
    assert got == fields


def test_match_statement_shapes() -> None:
    """The spellings a binding writes: by class, by position, by keyword."""

    def describe(event: object) -> str:
        match event:
            case p.Retr(msg):
                return f"retr {msg}"
            case p.Top(msg, lines=n):
                return f"top {msg} {n}"
            case p.Ok(text, code) if code is not None:
                return f"ok [{code}] {text}"
            case p.Ok(text):
                return f"ok {text}"
            case p.Data(data=chunk):
                return f"data {len(chunk)}"
            case p.EndOfResponse():
                return "end"
        return "other"

    assert describe(p.Retr(3)) == "retr 3"
    assert describe(p.Top(3, 0)) == "top 3 0"
    assert describe(p.Ok("x", SYS_TEMP)) == "ok [SYS/TEMP] x"
    assert describe(p.Ok("x")) == "ok x"
    assert describe(p.Data(b"abc")) == "data 3"
    assert describe(p.EndOfResponse()) == "end"
    assert describe(p.Dele(3)) == "other"


def test_read_sentinel() -> None:
    """``READ`` is one slotted, immutable, hashable value shown as ``READ``.

    Not pinned: ``copy``/``pickle`` of ``READ`` make a new object that is not
    equal to it today (no binding copies instructions).
    """
    assert repr(p.READ) == "READ"
    assert not hasattr(p.READ, "__dict__")
    with pytest.raises(AttributeError):
        p.READ.x = 1  # type: ignore[attr-defined]
    assert p.READ == p.READ
    assert p.Write(b"") != p.READ
    assert hash(p.READ) == hash(p.READ)


def test_defaults() -> None:
    """Fields left out take today's defaults; a mutable default is not shared."""
    assert p.Auth().initial_response is None
    assert p.List().msg is None
    assert p.Uidl().msg is None
    assert p.Greeting() == p.Greeting("", None, None)
    assert p.Ok() == p.Ok("", None)
    assert p.Err() == p.Err("", None)
    assert p.ReadMessage(1, "u1").lines is None
    assert p.Call(len) == p.Call(len, (), False)
    first, second = p.Capabilities(), p.Capabilities()
    assert first.tags == {}
    assert first.tags is not second.tags


def test_response_code_str_and_capabilities_contains() -> None:
    """The non-field behaviour of the two helper values, as callers use it."""
    assert str(SYS_TEMP) == "SYS/TEMP"
    assert p.ResponseCode.parse("sys/temp") == SYS_TEMP
    assert SYS_TEMP.matches("SYS")
    caps = p.Capabilities({"TOP": ()})
    assert "top" in caps
    assert caps.args("Top") == ()


def _bad(cls: type, *args: Any, **kwargs: Any) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
    return cls, args, kwargs


# (constructor call, reason of the LocalProtocolError it raises today)
INVALID = [
    (_bad(p.User, ""), "bad-argument"),
    (_bad(p.User, "a\r\nDELE 1"), "bad-argument"),
    (_bad(p.User, b"alice"), "type"),
    (_bad(p.Pass, "a\nb"), "bad-argument"),
    (_bad(p.Pass, "a\0b"), "bad-argument"),
    (_bad(p.Pass, None), "type"),
    (_bad(p.Apop, "a b", DIGEST), "bad-argument"),
    (_bad(p.Apop, "", DIGEST), "bad-argument"),
    (_bad(p.Apop, "alice", DIGEST[:-1]), "bad-argument"),
    (_bad(p.Apop, "alice", DIGEST[:-1] + "g"), "bad-argument"),
    (_bad(p.Apop, "alice", 5), "type"),
    (_bad(p.Auth, None, b"x"), "bad-argument"),
    (_bad(p.Auth, "PL AIN"), "bad-argument"),
    (_bad(p.Auth, "PL@IN"), "bad-argument"),
    (_bad(p.Auth, "X" * 21), "bad-argument"),
    (_bad(p.Auth, ""), "bad-argument"),
    (_bad(p.Auth, b"PLAIN"), "type"),
    (_bad(p.Auth, "PLAIN", "AGE="), "type"),
    (_bad(p.SaslResponse, "x"), "type"),
    (_bad(p.SaslResponse, bytearray(b"x")), "type"),
    (_bad(p.List, 0), "bad-argument"),
    (_bad(p.List, 10**20), "bad-argument"),
    (_bad(p.List, True), "type"),
    (_bad(p.List, "1"), "type"),
    (_bad(p.Uidl, -1), "bad-argument"),
    (_bad(p.Retr, 0), "bad-argument"),
    (_bad(p.Retr, None), "type"),
    (_bad(p.Retr, 1.0), "type"),
    (_bad(p.Top, 0, 0), "bad-argument"),
    (_bad(p.Top, 1, -1), "bad-argument"),
    (_bad(p.Top, 1, "0"), "type"),
    (_bad(p.Dele, 0), "bad-argument"),
    (_bad(p.Greeting, 1), "type"),
    (_bad(p.Greeting, "a\rb"), "bad-argument"),
    (_bad(p.Greeting, "hi", None, "<a b>"), "bad-argument"),
    (_bad(p.Ok, "a\0"), "bad-argument"),
    (_bad(p.Ok, None), "type"),
    (_bad(p.Err, "a\n"), "bad-argument"),
    (_bad(p.Err, 0), "type"),
    (_bad(p.Data, "x"), "type"),
    (_bad(p.Data, memoryview(b"x")), "type"),
    (_bad(p.SaslChallenge, "x"), "type"),
    (_bad(p.MessageInfo, -1, "u1"), "bad-argument"),
    (_bad(p.MessageInfo, 1, "a b"), "bad-argument"),
    (_bad(p.MessageInfo, 1, ""), "bad-argument"),
    (_bad(p.MessageInfo, 1, "x" * 71), "bad-argument"),
]


@pytest.mark.parametrize(
    ("call", "reason"), INVALID, ids=[f"{c[0].__name__}{c[1]!r}" for c, _ in INVALID]
)
def test_constructor_validation(
    call: tuple[type, tuple[Any, ...], dict[str, Any]], reason: str
) -> None:
    """A bad argument raises ``LocalProtocolError`` with today's ``reason``."""
    cls, args, kwargs = call
    with pytest.raises(p.LocalProtocolError) as info:
        cls(*args, **kwargs)
    assert info.value.reason == reason


VALID_EDGES = [
    _bad(p.Pass, ""),  # RFC 1939 section 7: an empty secret is a secret
    _bad(p.Auth, "SCRAM-SHA-256", b""),  # "=" on the wire
    _bad(p.Auth, "X" * 20),
    _bad(p.List, 10**20 - 1),
    _bad(p.Top, 1, 0),
    _bad(p.SaslChallenge, None),  # a challenge that was not base64
    _bad(p.UnknownCommand, "", b"\xff", "syntax"),
    _bad(p.MessageInfo, 0, "x" * 70),
    _bad(p.Greeting, "a [b] c", None, None),
]


@pytest.mark.parametrize("call", VALID_EDGES, ids=[f"{c[0].__name__}{c[1]!r}" for c in VALID_EDGES])
def test_constructor_edges_accepted(call: tuple[type, tuple[Any, ...], dict[str, Any]]) -> None:
    """The limits themselves are accepted: the checks above are not stricter than today."""
    cls, args, kwargs = call
    value = cls(*args, **kwargs)
    assert tuple(getattr(value, name) for name in cls.__match_args__)[: len(args)] == args
