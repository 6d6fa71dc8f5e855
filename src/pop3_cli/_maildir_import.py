"""``pop3 import``: copy a Maildir into a maildrop in PostgreSQL, idempotently.

The Maildir is read through ``MaildirStorage`` (the same listing, order, unique ids and
link handling as ``pop3 serve --maildir``, under its lock, never changed: nothing is
committed), and the messages are stored with ``PostgresStorage.deliver_many(...,
uids=...)``, in batches, under the unique ids the Maildir server gave them. A message
whose id the maildrop already has is not stored again, so a second run, or a run after
an interrupted one, copies only what is missing; and POP3 clients that keep mail on the
server see the same ids after the move, and download nothing again. A message that
cannot be read (removed meanwhile by a mail reader) is reported and left out, and the
command then exits 1.
"""

from __future__ import annotations

import argparse
import logging
import os

from ._errors import CliError

__all__ = ["run_import"]

log = logging.getLogger("pop3.import")

_BATCH = 100
_BATCH_OCTETS = 32 << 20
"""A transaction stores up to this many messages (or octets): fewer commits, each one a
disk flush, while an interrupted run loses at most one batch (the next run stores it)."""


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
    total = len(source.messages)
    done = skipped = 0

    def store(numbers: list[int]) -> None:
        """Store messages ``numbers`` in one transaction; one by one if that fails."""
        nonlocal done, skipped
        infos = [source.messages[n - 1] for n in numbers]
        try:
            storage.deliver_many(
                ((args.user, source.read(n)) for n in numbers), uids=[i.uid for i in infos]
            )
        except StorageUnavailableError as exc:
            raise CliError(
                f"database unavailable after {done} of {total} messages (run again to go on): {exc}"
            ) from None
        except MaildropError as exc:
            if len(numbers) > 1:
                for n in numbers:
                    store([n])
                return
            # Removed meanwhile by a mail reader, or unreadable: said, counted, left out.
            log.warning("message %s not imported: %s", infos[0].uid, exc)
            skipped += 1
            return
        done += len(numbers)

    try:
        with source:
            batch: list[int] = []
            octets = 0
            for number, info in enumerate(source.messages, 1):
                batch.append(number)
                octets += info.size
                if len(batch) >= _BATCH or octets >= _BATCH_OCTETS:
                    store(batch)
                    batch, octets = [], 0
            if batch:
                store(batch)
    finally:
        storage.close()
    print(
        f"{done} of {total} message(s) of {args.maildir} are in {args.user}'s maildrop "
        "(those already there were not stored again)",
        flush=True,
    )
    if skipped:
        raise CliError(f"{skipped} message(s) could not be read and were not imported")
    return 0
