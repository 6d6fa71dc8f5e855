"""Every binding's client refuses bytes that follow the ``+OK`` to STLS before TLS starts.

A man in the middle can append a forged answer to the server's ``+OK`` in the same
plaintext segment; read after the handshake it would pass for an answer over TLS
(CVE-2011-0411's mirror image, RFC 2595 section 4). The client must fail, and must
not start TLS or send anything more. The server side is tested per binding in
test_asyncio.py, test_trio.py and test_sync.py (``test_stls_injection_is_dropped``).
"""

from __future__ import annotations

import anyio
import pytest

import pop3_sansio as p
from bindings import ANYIO_BACKEND, NAMES, connect
from helpers import fake_server

pytestmark = pytest.mark.anyio

CAPA = b"+OK\r\nSTLS\r\nUSER\r\n.\r\n"


@pytest.fixture(params=NAMES)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(client: str) -> str:
    return ANYIO_BACKEND[client]


@pytest.mark.parametrize(
    "after_ok",
    [b"+OK injected\r\n", b"+", b"-ERR x\r\n+OK\r\n"],
    ids=["forged-answer", "one-byte", "two-lines"],
)
async def test_bytes_after_the_ok_to_stls_are_refused(client: str, after_ok: bytes) -> None:
    tail: list[bytes] = []
    listener, thread = fake_server([CAPA, b"+OK begin TLS\r\n" + after_ok], tail)
    with listener:
        port = listener.getsockname()[1]
        with anyio.fail_after(10):
            with pytest.raises(p.RemoteProtocolError) as info:
                async with connect(client, "127.0.0.1", port, tls="starttls", timeout=5):
                    pass  # pragma: no cover - the open fails
    assert info.value.reason == "stls-injection"
    thread.join(5)
    assert tail == [b""]  # closed without a TLS ClientHello or any command
