"""How commands report failures: one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import errno
import socket

__all__ = ["CliError", "Interrupted", "UsageError", "listen_failed"]


class CliError(Exception):
    """A runtime failure (exit code 1): the message is shown as one line.

    Messages never contain a secret: they are built from file names, host
    names, user names and the peer's error text only.
    """

    exit_code = 1


class UsageError(CliError):
    """A bad combination of arguments that argparse cannot see (exit code 2)."""

    exit_code = 2


class Interrupted(CliError):  # noqa: N818 - not an error, a way to stop
    """Stopped by Ctrl-C (exit code 130, as a shell reports SIGINT)."""

    exit_code = 130


def listen_failed(host: str, port: int, exc: OSError) -> CliError:
    """What ``pop3 serve`` says when it cannot listen on ``host``:``port``: one line, the cause."""
    if isinstance(exc, socket.gaierror):
        return CliError(f"cannot listen on {host}: {exc.strerror}")
    if exc.errno == errno.EADDRINUSE:
        return CliError(
            f"port {port} is already in use on {host}: stop the program using it, "
            "or choose another with --port"
        )
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return CliError(
            f"not allowed to listen on port {port} of {host}: ports below 1024 need root "
            "(or CAP_NET_BIND_SERVICE); choose another with --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return CliError(f"cannot listen on {host}: not an address of this machine")
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return CliError(f"cannot listen on {shown}: {exc.strerror or exc}")
