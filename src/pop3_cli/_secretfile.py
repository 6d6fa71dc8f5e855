"""Reading a file that holds secrets (``serve --users``, ``fetch --password-file``) safely.

A secret file that other local users can write lets them choose the password
(or, in a users file, add an account and point it at any maildir), so it is
refused. One that they can read gives the secret away: ``pop3 fetch`` refuses a
password file that is not private to its owner (as fetchmail and OpenSSH do),
and ``pop3 serve`` warns about a users file that every user can read (a users
file is often shared with the service's group, mode 0640, which is fine).

The checks are made with ``fstat`` on the descriptor that is then read, so the
file cannot be swapped between the check and the read.
"""

from __future__ import annotations

import os
import stat
import sys

from ._errors import CliError

__all__ = ["read_secret_file"]


def read_secret_file(path: str, what: str, *, private: bool, newline: str | None = None) -> str:
    """The text of the secret file ``path`` (UTF-8), after checking who else may use it.

    ``what`` names the file in messages ("the users file"). A file that is not
    owned by this user (or root), or that the group or others can write, is a
    ``CliError``. With ``private``, one that the group or others can read is a
    ``CliError`` too; without it, one that others can read gets a warning on
    stderr. Every message says how to fix it.
    """
    try:
        with open(path, encoding="utf-8", newline=newline) as f:
            info = os.fstat(f.fileno())
            _check(path, what, info, private=private)
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8") from None


def _check(path: str, what: str, info: os.stat_result, *, private: bool) -> None:
    mode = stat.S_IMODE(info.st_mode)
    shown = f"{what} {path} (mode {mode:04o})"
    if info.st_uid not in (os.geteuid(), 0):
        # Its owner can change its mode and content whatever the mode says now.
        raise CliError(
            f"{what} {path} belongs to another user (uid {info.st_uid}); "
            "it must be owned by you or by root"
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CliError(f"{shown} can be written by other users; fix it with: chmod go-w {path}")
    if private and mode & (stat.S_IRGRP | stat.S_IROTH):
        raise CliError(f"{shown} can be read by other users; fix it with: chmod go-rwx {path}")
    if not private and mode & stat.S_IROTH:
        print(
            f"pop3: warning: {shown} can be read by every user on this machine; "
            f"fix it with: chmod o-rwx {path}",
            file=sys.stderr,
        )
