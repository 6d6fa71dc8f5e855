"""Fixtures shared by the connection and dialogue tests (utilities live in helpers.py)."""

from __future__ import annotations

import logging
import ssl

import pytest
import trustme

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


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` with the servers' lines (``pop3.server``, INFO: logins, ends) captured."""
    caplog.set_level(logging.INFO, logger="pop3.server")
    return caplog


# --- TLS for the binding tests: one test CA, a server certificate, a client that trusts it ---


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority (trustme)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for localhost and 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts ``ca`` (and verifies, as by default)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
