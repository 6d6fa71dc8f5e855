"""``pop3 fetch --status``: what the server holds and how much of it is new (mpop's --status).

Logs in, asks STAT, UIDL and LIST, and QUITs: nothing is retrieved or
deleted. "New" counts the messages that a ``--keep`` run would fetch: those
with no record in the state file under their unique id and LISTed size.
The state file is read without taking the fetch lock, so a status run works
while another run (or ``--daemon``) fetches.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from pop3_asyncio import Pop3Error

from ._connect import Server, login, open_client, reported
from ._errors import Interrupted
from ._passwords import Credentials
from ._progress import counted, human_size
from ._state import read_records, state_key
from ._targets import state_location

__all__ = ["Status", "run_status"]


@dataclass
class Status:
    messages: int
    octets: int
    new: int | None
    """``None`` if the server lists no unique ids (UIDL)."""


async def _status(args: argparse.Namespace, credentials: Credentials, server: Server) -> Status:
    account = args.state_key if args.state_key is not None else state_key(args.user, args.host)
    async with open_client(args, server, trace=args.verbose - args.quiet >= 2) as client:
        await login(client, args.user, credentials)
        messages, octets = await client.stat()
        try:
            uids = await client.uidl()
        except Pop3Error:
            return Status(messages, octets, None)
        sizes = await client.list()
    directory, prefix = state_location(args)
    records = read_records(directory, account, prefix)
    new = 0
    for msg, uid in uids.items():
        record = records.get(uid)
        if record is None or record.size not in (None, sizes.get(msg)):
            new += 1
    return Status(messages, octets, new)


def run_status(args: argparse.Namespace, credentials: Credentials, label: str) -> Status:
    """Print one account's status line (``label: N messages (SIZE), M new``)."""
    server = Server.of(args)
    try:
        with reported(args, server):
            status = asyncio.run(_status(args, credentials, server))
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    new = "new ones unknown (no UIDL)" if status.new is None else f"{status.new} new"
    print(
        f"{label}: {counted(status.messages, 'message')} ({human_size(status.octets)}, "
        f"{counted(status.octets, 'octet')}), {new}",
        flush=True,
    )
    return status
