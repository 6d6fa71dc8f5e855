"""The light value classes (``_values.Value``): what the dataclasses they replace gave."""

from __future__ import annotations

import copy
import pickle

import pytest

import pop3_sansio as p
from pop3_sansio.client import Capabilities, Chunk, StartTls, Write

SYS_TEMP = p.ResponseCode(("SYS", "TEMP"))

VALUES = [
    (p.User("alice"), "User(name='alice')"),
    (p.Pass("secret"), "Pass()"),
    (p.Auth("PLAIN", b"\0a\0b"), "Auth(mechanism='PLAIN')"),
    (p.Top(1, 5), "Top(msg=1, lines=5)"),
    (p.Quit(), "Quit()"),
    (
        p.UnknownCommand("X", b"X secret", "unknown"),
        "UnknownCommand(keyword='X', reason='unknown')",
    ),
    (p.Ok("fine", SYS_TEMP), "Ok(text='fine', code=ResponseCode(levels=('SYS', 'TEMP')))"),
    (p.Data(b"body"), "Data()"),
    (p.SaslChallenge(b"c"), "SaslChallenge()"),
    (Write(b"x"), "Write()"),
    (Chunk(b"x"), "Chunk()"),
    (StartTls(), "StartTls()"),
    (Capabilities({"TOP": ()}), "Capabilities(tags={'TOP': ()})"),
]


@pytest.mark.parametrize(("value", "golden"), VALUES, ids=[g for _, g in VALUES])
def test_value_behaviour(value: object, golden: str) -> None:
    cls = type(value)
    assert repr(value) == golden
    assert tuple(cls.__slots__) == cls.__match_args__  # type: ignore[attr-defined]
    twin = pickle.loads(pickle.dumps(value))
    assert twin == value and type(twin) is cls
    assert copy.copy(value) == value == copy.deepcopy(value)
    assert value != object()
    for name in cls.__match_args__ or ("anything",):  # type: ignore[attr-defined]
        with pytest.raises(AttributeError, match="cannot assign"):
            setattr(value, name, None)
        with pytest.raises(AttributeError, match="cannot delete"):
            delattr(value, name)
    if cls is not Capabilities:  # holds a dict: unhashable, as the dataclass was
        assert hash(value) == hash(copy.copy(value))


def test_equal_only_to_the_same_class() -> None:
    assert p.Retr(1) == p.Retr(1)
    assert p.Retr(1) != p.Dele(1)
    assert p.Noop() != p.Rset()
    assert hash(p.Retr(1)) == hash((1,))  # as the frozen dataclass hashed its fields
    assert Write(b"a") != Chunk(b"a")


def test_subclass_of_value_is_not_a_dataclass() -> None:
    import dataclasses

    assert not dataclasses.is_dataclass(p.Retr(1))
    assert p.Capabilities().tags == {}
    assert p.Capabilities().tags is not p.Capabilities().tags
