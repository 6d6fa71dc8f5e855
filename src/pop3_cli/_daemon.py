"""``pop3 fetch --daemon SECONDS``: fetch, sleep, fetch again, until SIGTERM or Ctrl-C.

SIGTERM while sleeping ends the process at once with exit status 0. SIGTERM
during a fetch cancels it as Ctrl-C does (``_fetch._CtrlC``): the connection
is closed without QUIT, so nothing is deleted on the server; the message
being written is either stored (renamed into ``new/``, recorded) or dropped
from ``tmp/``; then the process exits 0. A SIGTERM that arrives between two
steps that are not cancellable (reading the state, running a password
command) lets that account's fetch finish, then ends. A failing fetch is
reported on stderr and retried at the next poll.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from ._fetch import Stopped

__all__ = ["run_daemon"]


class _Stop(Exception):  # noqa: N818 - not an error, a way to stop
    """SIGTERM while sleeping."""


def run_daemon(interval: float, fetches: Sequence[Callable[[], object]]) -> int:
    """Run each of ``fetches`` in turn every ``interval`` seconds; 0 when stopped by SIGTERM.

    Each one reports its own failures and returns; ``Stopped`` (SIGTERM during
    a fetch) ends the loop. Ctrl-C propagates (``KeyboardInterrupt`` or
    ``Interrupted``: exit status 130).
    """
    stopping = False
    sleeping = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if sleeping:
            raise _Stop

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while True:
            for fetch in fetches:
                if stopping:
                    return 0
                try:
                    fetch()
                except Stopped:
                    print(
                        "pop3 fetch: stopped by SIGTERM; nothing was deleted on the server "
                        "in the fetch it interrupted",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 0
            try:
                sleeping = True
                if not stopping:
                    time.sleep(interval)
            finally:
                sleeping = False
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
