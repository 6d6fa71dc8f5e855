"""``pop3 fetch``: download mail into a Maildir, deleting on the server only what is stored.

The one rule: a message is deleted on the server only if the bytes it has
in this session were stored and synced here, in this run or an earlier one.
A unique id alone cannot tell that, whatever the server: RFC 1939 section 7
only asks that an id not be reused "during a session", and servers do reuse
them (message numbers as ids, a Maildir with two files of one unique part);
a server may even repeat an id within one listing. Nor can the id and the
size: a new message may have the size of the old one. So every message is
RETRieved in the session that deletes it, and is deleted only once its
SHA-256 matches what was stored (the state file's record, or a file of ours
in the Maildir that carries its id's token), or once it has been stored.

The order that makes a killed run lose and duplicate nothing:

1. UIDL, refused if it repeats an id (its ids cannot tell messages apart);
   LIST. With ``--keep`` a message recorded under its id with the size it is
   LISTed with now is skipped: nothing is deleted, so the id and the size
   are enough not to download it again. Every other message is fetched.
2. For each: RETR into ``tmp/`` while taking its SHA-256. If those bytes
   are already stored, drop the copy; otherwise fsync, rename into ``new/``,
   fsync ``new/``. Record ``(id, LISTed size, SHA-256)`` (synced); only then
   (without ``--keep``) DELE it.
3. QUIT, which makes the server commit the deletions (RFC 1939 section 6).
   Any failure before that closes the connection without QUIT: nothing is
   deleted, and the next run picks up where this one stopped. Once QUIT is
   answered ``+OK`` the deleted messages' ids are forgotten: the state does
   not grow, and an id the server lists again later names a new message.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass
from types import FrameType

from pop3_asyncio import Pop3Error

from ._connect import Server, login, open_client, reported
from ._deliver import MaildirWriter, message_token
from ._errors import CliError, Interrupted
from ._passwords import Credentials
from ._progress import Progress, counted
from ._state import FetchState, state_key

__all__ = ["FetchResult", "Stopped", "run_fetch"]

log = logging.getLogger("pop3.fetch")


@dataclass
class FetchResult:
    fetched: int = 0
    octets: int = 0
    already: int = 0
    deleted: int = 0


class Stopped(Interrupted):
    """Stopped by SIGTERM during a fetch (exit code 143, as a shell reports it)."""

    exit_code = 143


class _CtrlCError(Exception):
    """Ctrl-C was pressed (or SIGTERM received) during the fetch."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _CtrlC:
    """Ctrl-C (SIGINT) or SIGTERM cancels the fetch at once, and is remembered.

    ``asyncio.wait_for`` before Python 3.12 loses a cancellation that races
    with the awaited operation completing, so ``check()`` is also called
    between operations: an interrupted fetch must never reach QUIT.

    SIGTERM's handler is a plain ``signal`` one that is put back as it was on
    leaving (``loop.remove_signal_handler`` would reset it to the default, and
    ``--daemon`` keeps its own between fetches).
    """

    def __init__(self) -> None:
        self.pressed: int | None = None
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._saved_sigterm: object = None

    def __enter__(self) -> _CtrlC:
        self._loop.add_signal_handler(signal.SIGINT, self._press, signal.SIGINT)
        self._saved_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.remove_signal_handler(signal.SIGINT)
        # None: the handler was not set from Python; the default is the best guess.
        saved = signal.SIG_DFL if self._saved_sigterm is None else self._saved_sigterm
        signal.signal(signal.SIGTERM, saved)  # type: ignore[arg-type]

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._loop.call_soon_threadsafe(self._press, signum)

    def _press(self, signum: int) -> None:
        if self.pressed is None:
            self.pressed = signum
        if self._task is not None:
            self._task.cancel()

    def check(self) -> None:
        if self.pressed is not None:
            raise _CtrlCError(self.pressed)


async def _fetch(
    args: argparse.Namespace,
    credentials: Credentials,
    server: Server,
    state: FetchState,
    writer: MaildirWriter,
) -> FetchResult:
    with _CtrlC() as ctrl_c:
        try:
            return await _fetch_all(args, credentials, server, state, writer, ctrl_c)
        except asyncio.CancelledError:
            if ctrl_c.pressed is not None:
                raise _CtrlCError(ctrl_c.pressed) from None
            raise


async def _fetch_all(
    args: argparse.Namespace,
    credentials: Credentials,
    server: Server,
    state: FetchState,
    writer: MaildirWriter,
    ctrl_c: _CtrlC,
) -> FetchResult:
    result = FetchResult()
    client = open_client(args, server, trace=args.verbose - args.quiet >= 2)
    deleted: list[str] = []  # the ids of the messages marked for deletion
    async with client:
        await login(client, args.user, credentials)
        try:
            uids = await client.uidl()
        except Pop3Error as exc:
            raise CliError(
                f"the server does not list unique ids (UIDL), which pop3 fetch needs: {exc}"
            ) from None
        _refuse_repeated_ids(uids)
        sizes = await client.list()
        state.prune(uids.values())
        stored = writer.stored_tokens()
        todo: list[int] = []
        for msg in sorted(uids):
            ctrl_c.check()
            record = state.get(uids[msg])
            # A version 1 record has no size: enough to skip with --keep (deleting nothing).
            if args.keep and record is not None and record.size in (None, sizes.get(msg)):
                result.already += 1
            else:
                todo.append(msg)
        progress = Progress(len(todo), sum(sizes.get(msg, 0) for msg in todo))
        try:
            for msg in todo:
                ctrl_c.check()
                uid = uids[msg]
                token = message_token(state.account, uid)
                delivery = writer.start(token)
                try:
                    async for chunk in client.iter_retr(msg):
                        delivery.write(chunk)
                        progress.advance(len(chunk))
                except BaseException:
                    delivery.abort()
                    raise
                record = state.get(uid)
                digest = delivery.sha256
                if (record is not None and record.sha256 == digest) or (
                    token in stored and writer.holds(token, digest)
                ):
                    delivery.abort()  # these very bytes are stored already
                    log.debug("message %d (%s) is already stored", msg, uid)
                    result.already += 1
                else:
                    path = delivery.commit()
                    stored.add(token)
                    result.fetched += 1
                    result.octets += delivery.size
                    log.debug("message %d (%s): %d octets in %s", msg, uid, delivery.size, path)
                if record != (sizes.get(msg), digest):
                    state.add(uid, sizes.get(msg), digest)
                progress.message_done()
                if not args.keep:
                    await client.dele(msg)
                    deleted.append(uid)
                    result.deleted += 1
        finally:
            progress.close()
        ctrl_c.check()
        # Leaving the block normally sends QUIT: the deletions take effect now.
    # Here QUIT was answered +OK (a -ERR or no answer raised): the server has
    # deleted these messages, so an id it lists again is a new message.
    state.forget(deleted)
    return result


def _refuse_repeated_ids(uids: dict[int, str]) -> None:
    """Raise ``CliError`` if two messages share a unique id (before anything is deleted)."""
    first: dict[str, int] = {}
    for msg in sorted(uids):
        other = first.setdefault(uids[msg], msg)
        if other != msg:
            raise CliError(
                f"the server lists the unique id {uids[msg][:70]!r} for messages {other} and "
                f"{msg}; its ids cannot tell messages apart, so nothing was fetched or deleted"
            )


def run_fetch(
    args: argparse.Namespace, credentials: Credentials, label: str | None = None
) -> FetchResult:
    """Fetch one account's mail (``args``: its merged options); print the summary
    (after ``label: `` if given).

    Raises ``CliError`` on failure, ``Interrupted`` on Ctrl-C and ``Stopped``
    on SIGTERM: in each case nothing was deleted on the server.
    """
    server = Server.of(args)
    account = args.state_key if args.state_key is not None else state_key(args.user, args.host)
    writer = MaildirWriter(args.maildir)
    with FetchState(args.maildir, account) as state:
        writer.remove_unfinished()
        try:
            with reported(args, server):
                result = asyncio.run(_fetch(args, credentials, server, state, writer))
        except (KeyboardInterrupt, _CtrlCError) as exc:
            stop = Stopped if getattr(exc, "signum", None) == signal.SIGTERM else Interrupted
            raise stop("interrupted; nothing was deleted on the server") from None
    if args.quiet <= 0:
        summary = f"{label}: " if label else ""
        summary += (
            f"fetched {counted(result.fetched, 'message')} ({counted(result.octets, 'octet')})"
        )
        if result.already:
            summary += f", {result.already} already stored"
        if not args.keep:
            summary += f", {result.deleted} deleted on the server"
        print(summary, flush=True)
    return result
