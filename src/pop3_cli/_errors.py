"""How commands report failures: one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

__all__ = ["CliError", "Interrupted", "UsageError"]


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
