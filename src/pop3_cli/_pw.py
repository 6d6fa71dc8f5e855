"""``pop3 pw``: make a users-file password value, or check one (as ``doveadm pw`` does).

The password is read from the terminal (asked twice) or, when standard input is
not a terminal, from its first line: never from the command line, where other
local users could read it in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ._errors import CliError

__all__ = ["run_pw"]


def run_pw(args: argparse.Namespace) -> int:
    """Print ``[USER:]{SCHEME}value``, or with ``--test`` check a value; the exit code."""
    from pop3_maildrop import hash_password, verify_password

    password = _read_password(confirm=args.test is None)
    try:
        if args.test is not None:
            if not verify_password(password, args.test):
                raise CliError("the password does not match")
            print("verified", flush=True)
            return 0
        value = hash_password(password, args.scheme, rounds=args.rounds)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"{args.user}:{value}" if args.user else value, flush=True)
    return 0


def _read_password(*, confirm: bool) -> str:
    if sys.stdin.isatty():
        try:
            password = getpass.getpass("Password: ")
            if confirm and getpass.getpass("Again: ") != password:
                raise CliError("the two passwords differ")
        except EOFError:
            raise CliError("no password given") from None
    else:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise CliError("empty password")
    return password
