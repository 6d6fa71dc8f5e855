"""``pop3 import``: copy a Maildir into a maildrop in PostgreSQL, idempotently.

The Maildir is read through ``MaildirStorage`` (the same listing, order, unique ids and
link handling as ``pop3 serve --maildir``, under its lock, never changed: nothing is
committed), and each message is stored with ``PostgresStorage.deliver(..., uid=...)``
under the unique id the Maildir server gave it. A message whose id the maildrop already
has is not stored again, so a second run, or a run after an interrupted one, copies only
what is missing; and POP3 clients that keep mail on the server see the same ids after
the move, and download nothing again.
"""

from __future__ import annotations

import argparse
import logging
import os

from ._errors import CliError

__all__ = ["run_import"]

log = logging.getLogger("pop3.import")


def run_import(args: argparse.Namespace) -> int:
    """``pop3 import``: 0 once every message of the Maildir is in the maildrop."""
    from pop3_maildrop import (
        MaildirStorage,
        MaildropError,
        MaildropLocked,
        StorageUnavailableError,
    )

    from ._mda import open_postgres

    if not os.path.isdir(os.path.join(args.maildir, "cur")) and not os.path.isdir(
        os.path.join(args.maildir, "new")
    ):
        raise CliError(f"{args.maildir} is not a Maildir (no new/ or cur/)")
    try:
        source = MaildirStorage(args.maildir).open(args.user)
    except MaildropLocked:
        raise CliError(f"{args.maildir} is in use by a POP3 session; try again later") from None
    except MaildropError as exc:
        raise CliError(f"cannot read the Maildir {args.maildir}: {exc}") from None
    storage = open_postgres(args.storage, pool_min=0, pool_max=1)
    copied = 0
    try:
        with source:
            for number, info in enumerate(source.messages, 1):
                try:
                    storage.deliver(args.user, source.read(number), uid=info.uid)
                except StorageUnavailableError as exc:
                    raise CliError(
                        f"database unavailable after {copied} of {len(source.messages)} "
                        f"messages (run again to go on): {exc}"
                    ) from None
                except MaildropError as exc:
                    raise CliError(f"message {info.uid}: {exc}") from None
                copied += 1
                log.debug("message %d (%s, %d octets)", number, info.uid, info.size)
    finally:
        storage.close()
    print(
        f"{copied} message(s) of {args.maildir} are in {args.user}'s maildrop "
        "(those already there were not stored again)",
        flush=True,
    )
    return 0
