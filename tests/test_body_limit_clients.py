"""Every binding's client, and ``pop3 fetch``, refuse a message far longer than announced.

A hostile server on 127.0.0.1 lists message 2 as 100 octets and then sends 4 MiB
of it, or sends until the client hangs up. Every way of reading a message
(``retr``, ``top``, ``iter_retr``, ``retr_to``, ``retr_many``) must raise
``MessageTooLargeError`` once twice the size plus 64 KiB has arrived, without
having held the flood in memory, and close without QUIT, so that a message
marked for deletion is not deleted. The limit's arithmetic is tested in
test_client_session.py.
"""

from __future__ import annotations

import io
import socket
import threading
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

import pop3_sansio as p
import served
from bindings import ANYIO_BACKEND, MODULES, NAMES, Client, connect

pytestmark = pytest.mark.anyio

MESSAGE_1 = b"Subject: fine\r\n\r\n" + b"a" * 81 + b"\r\n"  # 100 octets, as listed
ANNOUNCED = 100
LIMIT = 2 * ANNOUNCED + (64 << 10)
FLOOD = 4 << 20
SAFETY_STOP = 64 << 20  # "endless" stops here, so that a client without a limit fails, not hangs
_BLOCK = (b"x" * 1022 + b"\r\n") * 64  # 64 KiB of lines


class HostileServer:
    """One POP3 session on 127.0.0.1: messages 1 and 2 are listed as 100 octets each.

    Message 1 is 100 octets; message 2 (RETR or TOP) is ``flood`` octets, or,
    with ``flood=None``, as many as it takes for the client to hang up. It
    records the commands it read, the octets of message 2 it sent and whether
    the client cut it off.
    """

    def __init__(self, flood: int | None) -> None:
        self.flood = flood
        self.commands: list[bytes] = []
        self.sent = 0
        self.cut_off = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.join()

    def join(self) -> None:
        """Wait for the session to end (the client hung up), and stop listening."""
        self._listener.close()
        self._thread.join(30)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:  # closed before any client came
            return
        with conn, conn.makefile("rb") as lines:
            conn.settimeout(30)
            try:
                conn.sendall(b"+OK hostile\r\n")
                for line in lines:  # until the client hangs up
                    self.commands.append(line.rstrip(b"\r\n"))
                    if not self._answer(conn, line.split()):
                        return
            except (BrokenPipeError, ConnectionResetError):
                self.cut_off = True

    def _answer(self, conn: socket.socket, words: list[bytes]) -> bool:
        verb = words[0].upper()
        if verb == b"CAPA":
            conn.sendall(b"+OK\r\nUSER\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n")
        elif verb == b"LIST" and len(words) == 1:
            conn.sendall(b"+OK\r\n1 100\r\n2 100\r\n.\r\n")
        elif verb == b"LIST":
            conn.sendall(b"+OK " + words[1] + b" 100\r\n")
        elif verb == b"UIDL":
            conn.sendall(b"+OK\r\n1 uid-1\r\n2 uid-2\r\n.\r\n")
        elif verb in (b"RETR", b"TOP") and words[1] == b"1":
            conn.sendall(b"+OK\r\n" + MESSAGE_1 + b".\r\n")
        elif verb in (b"RETR", b"TOP"):
            conn.sendall(b"+OK\r\n")
            end = SAFETY_STOP if self.flood is None else self.flood
            while self.sent < end:
                conn.sendall(_BLOCK)
                self.sent += len(_BLOCK)
            conn.sendall(b".\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"+OK bye\r\n")
            return False
        else:  # USER, PASS, DELE, NOOP
            conn.sendall(b"+OK\r\n")
        return True


@pytest.fixture(params=NAMES)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(client: str) -> str:
    return ANYIO_BACKEND[client]


# Each way to read message 2; what reached the caller is added to ``taken``.


async def _retr(c: Client, taken: list[int]) -> None:
    await c.dele(1)  # a mark that must not be committed
    taken.append(len(await c.retr(2)))


async def _top(c: Client, taken: list[int]) -> None:
    await c.dele(1)
    taken.append(len(await c.top(2, 10)))


async def _iter_retr(c: Client, taken: list[int]) -> None:
    await c.dele(1)
    taken.extend([len(chunk) async for chunk in c.iter_retr(2)])


async def _retr_to(c: Client, taken: list[int]) -> None:
    await c.dele(1)
    file = _CountingFile(taken)
    await c.retr_to(2, file)  # type: ignore[arg-type]


async def _retr_many(c: Client, taken: list[int]) -> None:
    async for _, message in c.retr_many([1, 2], delete=True):  # 1 is taken, then marked
        taken.append(len(message))


class _CountingFile(io.RawIOBase):
    """A file that keeps only the lengths of what is written to it."""

    def __init__(self, taken: list[int]) -> None:
        self._taken = taken

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        assert isinstance(data, bytes)
        self._taken.append(len(data))
        return len(data)


OPERATIONS: dict[str, Callable[[Client, list[int]], Awaitable[None]]] = {
    "retr": _retr,
    "top": _top,
    "iter_retr": _iter_retr,
    "retr_to": _retr_to,
    "retr_many": _retr_many,
}


@pytest.mark.parametrize("flood", [FLOOD, None], ids=["4MiB", "endless"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_a_body_far_over_its_listed_size_is_refused(
    client: str, operation: str, flood: int | None
) -> None:
    with HostileServer(flood) as server:
        taken: list[int] = []
        tracemalloc.start()
        try:
            with anyio.fail_after(60):
                with pytest.raises(MODULES[client].MessageTooLargeError) as info:
                    async with connect(client, "127.0.0.1", server.port, tls=None, timeout=30) as c:
                        await c.login("alice", "pw")
                        await OPERATIONS[operation](c, taken)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    error = info.value
    assert isinstance(error, p.RemoteProtocolError)
    assert (error.msg, error.announced, error.limit) == (2, ANNOUNCED, LIMIT)
    assert "message 2" in str(error) and "100 octets" in str(error) and str(LIMIT) in str(error)
    # The client held at most the limit (message 1 aside), not the 4 MiB or more sent.
    assert sum(taken) <= LIMIT + (len(MESSAGE_1) if operation == "retr_many" else 0)
    assert peak < 1 << 20, peak
    if flood is None:
        assert server.cut_off and server.sent < SAFETY_STOP  # the client hung up
    # Message 1 was marked (retr_many's DELE 1 goes out behind RETR 2, unread by
    # the server), but without QUIT nothing is deleted (RFC 1939 section 6).
    assert b"DELE 1" in server.commands or operation == "retr_many"
    assert b"QUIT" not in server.commands


async def test_after_the_error_the_connection_is_unusable_and_closed_without_quit(
    client: str,
) -> None:
    with HostileServer(None) as server:
        with anyio.fail_after(60):
            with pytest.raises(ConnectionError, match="marked for deletion were not deleted"):
                async with connect(client, "127.0.0.1", server.port, tls=None, timeout=30) as c:
                    await c.login("alice", "pw")
                    await c.dele(1)
                    with pytest.raises(p.MessageTooLargeError):
                        await c.retr(2)
                    with pytest.raises(ConnectionError, match="unusable"):
                        await c.noop()
                    # Leaving normally: no QUIT, and the lost mark is reported.
    assert server.commands[-3:] == [b"DELE 1", b"LIST 2", b"RETR 2"]
    assert server.cut_off


async def test_max_message_size_caps_below_the_relative_limit(client: str) -> None:
    with HostileServer(FLOOD) as server:
        taken: list[int] = []
        with anyio.fail_after(60):
            with pytest.raises(p.MessageTooLargeError) as info:
                async with connect(
                    client, "127.0.0.1", server.port, tls=None, timeout=30, max_message_size=150
                ) as c:
                    await c.login("alice", "pw")
                    taken.append(len(await c.retr(1)))  # 100 octets: under the cap
                    taken.extend([len(chunk) async for chunk in c.iter_retr(2)])
    assert (info.value.msg, info.value.announced, info.value.limit) == (2, 100, 150)
    assert taken[0] == 100 and sum(taken[1:]) <= 150
    assert b"QUIT" not in server.commands


async def test_a_message_listed_over_max_message_size_is_not_asked_for(client: str) -> None:
    with HostileServer(FLOOD) as server:
        with anyio.fail_after(60):
            with pytest.raises(p.MessageTooLargeError) as info:
                async with connect(
                    client, "127.0.0.1", server.port, tls=None, timeout=30, max_message_size=99
                ) as c:
                    await c.login("alice", "pw")
                    await c.list()
                    await c.top(1, 0)
    assert str(info.value) == "message 1 is announced as 100 octets, over the limit of 99"
    assert server.commands[-1] == b"LIST"  # no TOP went out, nor a QUIT


# --- pop3 fetch ----------------------------------------------------------------------------


def _fetch(server: HostileServer, tmp_path: Path, *options: str) -> tuple[int, str, Path]:
    dest = tmp_path / "Maildir"
    proc = served.start_fetch(
        server.port, "alice", "pw", dest, tmp_path / "err", "--insecure", *options
    )
    return proc.wait(timeout=60), (tmp_path / "err").read_text(), dest


@pytest.mark.parametrize("flood", [FLOOD, None], ids=["4MiB", "endless"])
def test_fetch_refuses_a_flood_delivers_nothing_of_it_and_deletes_nothing(
    tmp_path: Path, flood: int | None
) -> None:
    with HostileServer(flood) as server:
        code, err, dest = _fetch(server, tmp_path)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "message 2 is announced as 100 octets, but the server sent more than " in err
    assert f"the limit of {LIMIT}; nothing was deleted on the server" in err
    # Message 1 is stored; nothing of message 2 is, not even in tmp/.
    assert [path.read_bytes() for path in (dest / "new").iterdir()] == [MESSAGE_1]
    assert list((dest / "tmp").iterdir()) == []
    assert b"DELE 1" in server.commands and b"QUIT" not in server.commands


def test_fetch_max_message_size_skips_announced_larger_messages(tmp_path: Path) -> None:
    """Announced over the cap: left on the server unread, and the run goes on (was: stopped)."""
    with HostileServer(FLOOD) as server:
        code, err, dest = _fetch(server, tmp_path, "--max-message-size", "99")
    assert (code, err) == (0, "")
    assert not any(command.startswith((b"RETR", b"DELE")) for command in server.commands)
    assert b"QUIT" in server.commands
    assert list((dest / "new").iterdir()) == [] and list((dest / "tmp").iterdir()) == []
