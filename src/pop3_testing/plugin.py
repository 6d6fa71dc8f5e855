"""The pytest plugin: ``pop3_server``, ``pop3_tls_server`` and ``pop3_starttls_server``.

Registered through the ``pytest11`` entry point ``pop3``, so installing
pop3-sansio gives every test these fixtures, with no conftest. Each gives a
running ``pop3_testing.Pop3TestServer`` of its own for one test, stopped
afterwards. Turn the plugin off with ``-p no:pop3``.

This module imports only pytest: the server is loaded when a test asks for
a fixture, so the plugin costs nothing to test runs that do not use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pop3_sansio.client import TlsMode
    from pop3_testing import Pop3TestServer

__all__ = ["pop3_server", "pop3_starttls_server", "pop3_tls_server"]


def _running(tls: TlsMode) -> Iterator[Pop3TestServer]:
    from pop3_testing import Pop3TestServer

    with Pop3TestServer(tls=tls) as server:
        yield server


@pytest.fixture
def pop3_server() -> Iterator[Pop3TestServer]:
    """A POP3 server on 127.0.0.1 (``.port``), user ``"user"``, password ``"password"``.

    Plaintext; messages added with ``add_message``/``add_eml_dir``, read back
    with ``messages()`` and ``deleted()``. Threaded: use it from blocking,
    asyncio or trio tests alike.
    """
    yield from _running(None)


@pytest.fixture
def pop3_tls_server() -> Iterator[Pop3TestServer]:
    """``pop3_server`` speaking TLS from the first byte (implicit TLS, as on port 995).

    Connect with ``client_ssl_context()``; needs trustme (the ``testing`` extra).
    """
    yield from _running("implicit")


@pytest.fixture
def pop3_starttls_server() -> Iterator[Pop3TestServer]:
    """``pop3_server`` offering STLS (RFC 2595); trust it with ``client_ssl_context()``."""
    yield from _running("starttls")
