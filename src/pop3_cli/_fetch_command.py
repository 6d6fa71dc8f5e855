"""``pop3 fetch``: the accounts to fetch, and how (once, ``--status``, ``--daemon``).

Exit status with several accounts: each is fetched in turn, a failing one is
reported on stderr (one line, naming the account) and the others still run;
the status is 0 if every account succeeded, 1 if any failed, 2 for a bad
command line or config file (before anything is fetched), 130 on Ctrl-C (the
remaining accounts are not fetched), 143 on SIGTERM (0 with ``--daemon``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ._config import Account, resolve_accounts
from ._errors import CliError, Interrupted, UsageError
from ._passwords import SecretSource

__all__ = ["run_fetch_command"]


def _reporting(account: Account, source: SecretSource, several: bool) -> Callable[[], bool]:
    """One account's fetch (or status) run: reports its failure, returns whether it succeeded."""
    from ._fetch import run_fetch
    from ._status import run_status

    label = account.name if several else None

    def run() -> bool:
        try:
            if account.options.status:
                run_status(account.options, source.credentials(), account.name)
            else:
                run_fetch(account.options, source.credentials(), label)
        except Interrupted:
            raise
        except CliError as exc:
            if not several:
                raise
            line = " ".join(str(exc).split())
            print(f"pop3 fetch: account {account.name}: {line}", file=sys.stderr, flush=True)
            return False
        return True

    return run


def run_fetch_command(args: argparse.Namespace) -> int:
    """``pop3 fetch``: every account of the command line or config file."""
    from ._fetch import check_options
    from ._main import build_parser

    parser = build_parser()[1]["fetch"]
    accounts = resolve_accounts(args, parser)
    several = len(accounts) > 1 or args.daemon is not None
    # Every account's options are checked, and any password asked for, before anything runs.
    sources = []
    for account in accounts:
        try:
            check_options(account.options)
            sources.append(SecretSource(account.options))
        except UsageError as exc:
            if len(accounts) == 1:
                raise
            raise UsageError(f"account {account.name}: {exc}") from None
    runs = [_reporting(a, s, several) for a, s in zip(accounts, sources, strict=True)]
    if args.daemon is not None:
        from ._daemon import run_daemon

        return run_daemon(args.daemon, runs)
    results = [run() for run in runs]
    return 0 if all(results) else 1
