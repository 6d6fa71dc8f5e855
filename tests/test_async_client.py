"""AsyncClient, the async client API shared by the asyncio and trio bindings.

Driven here by an in-memory binding: the bytes it writes go to a ServerSession
answered by the test FakeBackend, so the rules of the base class are tested
without an event loop's sockets.
"""

from __future__ import annotations

import pytest

import pop3_sansio as p
from helpers import MESSAGES, FakeBackend

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class MemoryClient(p.AsyncClient):
    """A binding whose "network" is a ServerSession in the same process."""

    def __init__(self, backend: FakeBackend | None = None, *, fail_reads: bool = False) -> None:
        super().__init__(
            "localhost", 110, tls=None, ssl_context=None, timeout=None, allow_plaintext_login=True
        )
        self.backend = backend or FakeBackend()
        self.server = p.ServerSession(allow_plaintext=True)
        self.fail_reads = fail_reads
        self.unread = b""  # what the "server" sent and the client has not read yet
        self.closed = 0
        self.aclosed = 0

    async def open(self) -> p.Greeting:
        self.backend.serve(self.server)
        return await self._greet(peer=("127.0.0.1", 110), random_bytes=lambda n: b"\x01" * n)

    async def _do(self, instruction: p.Instruction) -> None:
        if isinstance(instruction, p.Write):
            self.server.receive_data(instruction.data)
            self.backend.serve(self.server)
        else:
            assert instruction is p.READ
            if self.fail_reads:
                raise ConnectionResetError("gone")
            # Small reads, so that a message takes several.
            self.unread += self.server.data_to_send()
            data, self.unread = self.unread[:16], self.unread[16:]
            self.session.receive_data(data)

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.aclosed += 1


async def test_the_session_exists_only_once_connected() -> None:
    client = MemoryClient()
    with pytest.raises(RuntimeError, match="not connected"):
        client.session  # noqa: B018
    assert await client.quit() == ""  # nothing to say goodbye to
    with pytest.raises(ValueError, match="tls must be"):
        p.AsyncClient.__init__(
            client,
            "h",
            1,
            tls="maybe",
            ssl_context=None,
            timeout=None,  # type: ignore[arg-type]
            allow_plaintext_login=False,
        )


async def test_a_normal_exit_quits_and_closes() -> None:
    backend = FakeBackend()
    async with MemoryClient(backend) as client:
        await client.login("alice", "secret")
        await client.dele(1)
    assert backend.committed == [(1,)]
    assert client.aclosed == 1


async def test_after_a_broken_operation_quit_only_closes() -> None:
    client = MemoryClient()
    await client.open()
    await client.login("alice", "secret")
    client.fail_reads = True
    with pytest.raises(ConnectionResetError):
        await client.noop()
    assert client.closed == 1
    with pytest.raises(ConnectionError, match="unusable"):
        await client.stat()
    with pytest.raises(ConnectionError, match="unusable"):
        await client.quit()  # no QUIT goes out: it only closes
    assert client.closed == 2
    assert client.aclosed == 0


async def test_leaving_after_a_lost_connection_before_login_is_quiet() -> None:
    async with MemoryClient() as client:
        client.fail_reads = True  # QUIT goes out, its answer never comes
    # Nothing could have been committed before login, so no error; the
    # interrupted QUIT closed the connection, and quit() made sure of it.
    assert (client.closed, client.aclosed) == (2, 0)


async def test_a_second_operation_during_a_stream_breaks_the_connection() -> None:
    client = MemoryClient()
    await client.open()
    await client.login("alice", "secret")
    first = client.iter_retr(2)
    assert b"Subject: two".startswith(await first.__anext__())
    with pytest.raises(ConnectionError, match="not finished"):
        await client.noop()
    assert client.closed == 1
    client.fail_reads = True
    with pytest.raises(ConnectionError):
        async for _ in first:  # the abandoned stream fails too, and stays failed
            pass
    with pytest.raises(StopAsyncIteration):
        await first.__anext__()


async def test_leaving_after_a_lost_connection_in_transaction_raises() -> None:
    backend = FakeBackend()
    with pytest.raises(ConnectionResetError):
        async with MemoryClient(backend) as client:
            await client.login("alice", "secret")
            await client.dele(1)
            client.fail_reads = True  # the QUIT's answer never comes
    assert backend.committed == [(1,)]  # the server did commit; the client cannot know


async def test_an_exhausted_operation_stays_exhausted() -> None:
    async with MemoryClient() as client:
        await client.login("alice", "secret")
        chunks = client.iter_retr(1)
        assert b"".join([c async for c in chunks]).startswith(b"Subject: one")
        with pytest.raises(StopAsyncIteration):
            await chunks.__anext__()
    assert MESSAGES[0].startswith(b"Subject: one")


async def test_a_command_in_the_wrong_state_leaves_the_client_unusable() -> None:
    # The connection refuses a command sent in the wrong state and goes to
    # ERROR (as h11 does after misuse): the client says so from then on.
    client = MemoryClient()
    await client.open()
    with pytest.raises(p.LocalProtocolError) as info:
        await client.retr(1)
    assert info.value.reason == "wrong-state"
    assert client.closed == 1
    with pytest.raises(ConnectionError, match="unusable"):
        await client.noop()
