"""Fixtures shared by the connection and dialogue tests (utilities live in helpers.py)."""

from __future__ import annotations

import pytest

from helpers import Link
from pop3_sansio import Greeting, Ok, Pass, State, User


@pytest.fixture
def link() -> Link:
    """A client and a server joined back to back, greeting exchanged (AUTHORIZATION)."""
    return Link(Greeting("POP3 ready"))


@pytest.fixture
def logged_in(link: Link) -> Link:
    """``link`` after a successful USER/PASS (TRANSACTION on both sides)."""
    assert link.exchange(User("alice"), Ok("hello alice")) == [Ok("hello alice")]
    assert link.exchange(Pass("secret"), Ok("maildrop ready")) == [Ok("maildrop ready")]
    assert link.client.our_state is State.TRANSACTION
    assert link.server.our_state is State.TRANSACTION
    return link
