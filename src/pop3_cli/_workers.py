"""``pop3 serve --workers N``: N processes on one port, and the parent that supervises them.

Each worker is a fork of the parent, made before anything else runs (no thread, no event
loop), and runs the chosen binding with ``reuse_port=True``: with ``SO_REUSEPORT`` the
Linux kernel spreads the connections over the workers' listening sockets. Nothing else is
shared. A maildrop's lock is an ``flock`` on an open file description, so it excludes
sessions in other workers exactly as it does sessions in the same one.

The parent only waits:

- each worker sends its listening addresses through a pipe once it accepts connections;
  when all have, the parent announces them (``listening on ...``);
- on SIGINT or SIGTERM it sends SIGTERM to every worker and waits for them (SIGKILL after
  ``STOP_TIMEOUT`` seconds), then returns: exit status 0;
- if a worker ends by itself (a crash, ``kill -9``, a port it cannot listen on), it stops
  the others and raises ``CliError``: exit status 1. Workers are not restarted: a service
  manager (``Restart=on-failure`` in systemd) restarts the whole server, so a failure that
  repeats is seen instead of looping inside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

from ._errors import CliError, listen_failed

__all__ = ["STOP_TIMEOUT", "run_workers"]

STOP_TIMEOUT = 10.0
"""Seconds the workers have to stop after SIGTERM before they are killed."""

log = logging.getLogger("pop3.cli")

_Runner = Callable[[Any], None]


def run_workers(runner: _Runner, config: Any, workers: int) -> None:
    """Run ``runner(config)`` in ``workers`` processes sharing ``config.port`` until a signal."""
    # Every worker must listen on the same port: bind it here (port 0: pick it), and
    # keep it bound (not listening, so it takes no connections) until the workers are
    # gone. A port that is taken fails here, in one line, rather than in every worker.
    try:
        reservation = _reserve(config.host, config.port)
    except OSError as exc:
        raise listen_failed(config.host, config.port, exc) from None
    port = reservation.getsockname()[1]
    config = dataclasses.replace(config, port=port, options={**config.options, "reuse_port": True})
    wake_r, wake_w = os.pipe()
    stop = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)
        os.write(wake_w, b"x")

    previous = {signum: signal.signal(signum, on_signal) for signum in _SIGNALS}
    context = multiprocessing.get_context("fork")
    processes: list[multiprocessing.process.BaseProcess] = []
    pending: dict[Connection, int] = {}
    try:
        for index in range(1, workers + 1):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker,
                args=(runner, config, index, send, wake_r, wake_w),
                name=f"pop3-worker-{index}",
            )
            process.start()
            send.close()
            processes.append(process)
            pending[receive] = index
        _supervise(config, processes, pending, wake_r, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop(processes)
        for receive in pending:
            receive.close()
        os.close(wake_r)
        os.close(wake_w)
        reservation.close()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_GRACE = 0.5


def _supervise(
    config: Any,
    processes: list[multiprocessing.process.BaseProcess],
    pending: dict[Connection, int],
    wake: int,
    stop: list[int],
) -> None:
    addresses: list[tuple[str, int]] = []
    sentinels = {process.sentinel: index for index, process in enumerate(processes, 1)}
    while True:
        ready = wait([*pending, *sentinels, wake])
        if wake in ready:
            os.read(wake, 512)
        if stop:
            log.info("stopping %d workers", len(processes))
            return
        for item in ready:
            if isinstance(item, Connection) and item in pending:
                with contextlib.suppress(EOFError, OSError):  # died first: seen below
                    addresses = item.recv()
                del pending[item]
                item.close()
                if not pending:
                    log.info(
                        "%d workers: pids %s",
                        len(processes),
                        " ".join(str(process.pid) for process in processes),
                    )
                    config.announce(addresses)
            elif isinstance(item, int) and item in sentinels:
                # Ctrl-C reaches the workers too: one may end before our own handler ran.
                if wait([wake], _GRACE) and stop:
                    log.info("stopping %d workers", len(processes))
                    return
                process = processes[sentinels[item] - 1]
                process.join()
                raise CliError(
                    f"worker {sentinels[item]} (pid {process.pid}) {_how(process.exitcode)}; "
                    "stopped the others"
                )


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _worker(
    runner: _Runner, config: Any, index: int, ready: Connection, wake_r: int, wake_w: int
) -> None:
    """A worker process: the binding, announcing through ``ready`` instead of printing."""
    for signum in _SIGNALS:  # the binding installs its own handlers
        signal.signal(signum, signal.SIG_DFL)
    os.close(wake_r)
    os.close(wake_w)

    def announce(addresses: list[tuple[str, int]]) -> None:
        log.info("worker %d listening", index)
        ready.send(addresses)
        ready.close()

    try:
        runner(dataclasses.replace(config, announce=announce))
    except CliError as exc:
        print(f"pop3 serve: worker {index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def _stop(processes: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to every worker still running; SIGKILL to those that outlive ``STOP_TIMEOUT``."""
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.exitcode is None:
            log.warning("worker pid %d did not stop: killing it", process.pid)
            process.kill()
            process.join()


def _reserve(host: str, port: int) -> socket.socket:
    """A socket bound with ``SO_REUSEPORT`` to ``port`` of ``host`` (0: a free one), not listening.

    Binding fails with ``EADDRINUSE`` if a socket without ``SO_REUSEPORT`` (or
    another user's) holds the port, as the workers' listening sockets would.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
