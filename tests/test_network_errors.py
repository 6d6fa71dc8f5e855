"""One family of network errors for the three clients (docs/errors.md).

A timeout is a ``Pop3TimeoutError`` (a ``TimeoutError``) naming the operation, the
server and the seconds; a refused connection a ``Pop3ConnectionRefusedError`` (a
``ConnectionRefusedError``), another failure to connect a ``Pop3ConnectionError``; the
original exception is the ``__cause__``. The names each binding had before stay:
``pop3_sync.Timeout`` and ``pop3_trio.OperationTimeoutError`` (also a
``trio.TooSlowError``). Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator

import pytest
import trio

import pop3_sync
import pop3_trio
from bindings import ANYIO_BACKEND, MODULES, NAMES, connect
from pop3_sansio.client import (
    Pop3ConnectionError,
    Pop3ConnectionRefusedError,
    Pop3Error,
    Pop3TimeoutError,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 0.3


@pytest.fixture(params=NAMES)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(client: str) -> str:
    return ANYIO_BACKEND[client]


@pytest.fixture
def silent() -> Iterator[tuple[int, threading.Event]]:
    """A server that greets only after ``greet`` is set, then never answers again."""
    listener = socket.create_server(("127.0.0.1", 0))
    greet = threading.Event()
    done = threading.Event()

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            greet.wait(10)
            if not done.is_set():
                conn.sendall(b"+OK hi\r\n")
                done.wait(10)  # until the test is over

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], greet
    finally:
        done.set()
        greet.set()
        thread.join(10)
        listener.close()


def check_timeout(client: str, error: BaseException, operation: str, port: int) -> None:
    assert isinstance(error, Pop3TimeoutError) and isinstance(error, TimeoutError)
    assert str(error) == f"{operation}: no answer from 127.0.0.1:{port} within {TIMEOUT:g} s"
    assert (error.operation, error.host, error.port, error.timeout) == (
        operation,
        "127.0.0.1",
        port,
        TIMEOUT,
    )
    assert error.__cause__ is not None  # what the binding's wait raised
    assert not isinstance(error, Pop3Error)  # no answer is not an -ERR
    if client == "trio":
        assert isinstance(error, pop3_trio.OperationTimeoutError)
        assert isinstance(error, trio.TooSlowError)
    if client == "sync":
        assert isinstance(error, pop3_sync.Timeout)


async def test_a_silent_server_times_out_in_the_greeting(
    client: str, silent: tuple[int, threading.Event]
) -> None:
    port, _ = silent
    with pytest.raises(TimeoutError) as info:
        async with connect(client, "127.0.0.1", port, tls=None, timeout=TIMEOUT):
            pass
    check_timeout(client, info.value, "start", port)


async def test_a_command_without_answer_times_out_naming_it(
    client: str, silent: tuple[int, threading.Event]
) -> None:
    port, greet = silent
    greet.set()
    with pytest.raises(TimeoutError) as info:
        async with connect(client, "127.0.0.1", port, tls=None, timeout=TIMEOUT) as c:
            await c.capa()
    check_timeout(client, info.value, "capa", port)


async def test_a_refused_connection_is_a_connection_refused_error(client: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError) as info:
            async with connect(client, "127.0.0.1", port, tls=None, timeout=TIMEOUT):
                pass
    error = info.value
    assert isinstance(error, Pop3ConnectionRefusedError)
    assert isinstance(error, Pop3ConnectionError) and isinstance(error, ConnectionError)
    assert str(error) == (
        f"connect: 127.0.0.1:{port} refused the connection "
        "(is the server running, and on this port?)"
    )
    assert (error.operation, error.host, error.port) == ("connect", "127.0.0.1", port)
    assert error.errno == errno.ECONNREFUSED
    assert isinstance(error.__cause__, OSError)  # the binding's own error, kept


async def test_each_binding_exports_the_family(client: str) -> None:
    module = MODULES[client]
    assert module.Pop3TimeoutError is Pop3TimeoutError
    assert module.Pop3ConnectionError is Pop3ConnectionError
    assert module.Pop3ConnectionRefusedError is Pop3ConnectionRefusedError


def test_a_failure_to_connect_that_is_not_a_refusal() -> None:
    """Another failure to connect (here: no route, as the OS says it) keeps its errno."""
    from pop3_sansio.client import ClientGuard

    guard = ClientGuard(lambda: None)
    cause = OSError(errno.EHOSTUNREACH, "No route to host")
    error = guard.network_error(cause, operation="connect", host="192.0.2.1", port=110, timeout=5.0)
    assert type(error) is Pop3ConnectionError
    assert str(error) == "connect: cannot connect to 192.0.2.1:110: No route to host"
    assert error.errno == errno.EHOSTUNREACH and error.__cause__ is cause
    # trio's: an OSError from the group of every attempt's error.
    attempts = [ConnectionRefusedError(errno.ECONNREFUSED, "refused"), OSError("other")]
    try:
        raise OSError("all attempts failed") from ExceptionGroup("x", attempts)
    except OSError as exc:
        mixed = guard.network_error(exc, operation="connect", host="::1", port=1, timeout=None)
    assert type(mixed) is Pop3ConnectionError and "[::1]:1" in str(mixed)
    # Not at connect, or not a connection failure: raised as it is.
    reset = ConnectionResetError()
    assert guard.network_error(reset, operation="retr", host="h", port=1, timeout=1) is reset
    gai = socket.gaierror(-2, "Name or service not known")
    assert guard.network_error(gai, operation="connect", host="h", port=1, timeout=1) is gai
    timeout = guard.network_error(TimeoutError(), operation="x", host="h", port=1, timeout=None)
    assert str(timeout) == "x: no answer from h:1"
    assert guard.network_error(timeout, operation="y", host="h", port=1, timeout=1) is timeout
    # As pop3_sync.Timeout was raised before: a message of one's own.
    assert str(pop3_sync.Timeout("slow")) == "slow"
