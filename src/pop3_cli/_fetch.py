"""``pop3 fetch``: download mail, deleting on the server only what is stored.

Mail goes to a Maildir, an mbox or an MDA (``_targets``), in the form
``_mailform`` gives it; the state (``_state``) records what was stored.

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
The one exception is asked for by name: ``--delete-oversized`` deletes the
messages over the size limit without fetching them.

The order that makes a killed run lose and duplicate nothing:

1. UIDL, refused if it repeats an id (its ids cannot tell messages apart);
   LIST. With ``--keep`` a message recorded under its id with the size it is
   LISTed with now is skipped: nothing is deleted, so the id and the size
   are enough not to download it again. Every other message is fetched.
2. For each: RETR into the target's staging file (``tmp/`` of a Maildir)
   while taking its SHA-256. If those bytes are already stored, drop the
   copy; otherwise store it (fsync, rename into ``new/``, fsync ``new/``; or
   append to the mbox and fsync; or the MDA's exit status 0). Record
   ``(id, LISTed size, SHA-256)`` (synced); only then (without ``--keep``,
   or once ``--keep-days`` are over) DELE it. A message the MDA did not
   take is neither recorded nor deleted.
3. QUIT, which makes the server commit the deletions (RFC 1939 section 6).
   Any failure before that closes the connection without QUIT: nothing is
   deleted, and the next run picks up where this one stopped. Once QUIT is
   answered ``+OK`` the deleted messages' ids are forgotten: the state does
   not grow, and an id the server lists again later names a new message.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import time
from dataclasses import dataclass, field
from types import FrameType

from pop3_asyncio import Pop3Error

from ._connect import Server, login, open_client, reported
from ._deliver import message_token
from ._errors import CliError, Interrupted, UsageError
from ._mailform import MessageForm, trace_fields
from ._passwords import Credentials
from ._progress import Progress, counted
from ._state import FetchState, state_key, transport_key
from ._targets import Deferred, DeliveryFailed, Target, check_target, open_target

_DAY = 86400

__all__ = ["FetchResult", "Stopped", "check_options", "run_fetch"]

log = logging.getLogger("pop3.fetch")


@dataclass
class FetchResult:
    fetched: int = 0
    octets: int = 0
    already: int = 0
    deleted: int = 0
    skipped: int = 0
    """Messages over the size limit, left on the server."""
    deleted_unread: int = 0
    """Messages over the size limit deleted without being fetched (``--delete-oversized``)."""
    failed: list[int] = field(default_factory=list)
    """The MDA's exit status for each message it did not deliver."""
    deferred: Deferred | None = None
    """The MDA asked to try again later: the run stopped there."""


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
    target: Target,
) -> FetchResult:
    with _CtrlC() as ctrl_c:
        try:
            return await _fetch_all(args, credentials, server, state, target, ctrl_c)
        except asyncio.CancelledError:
            if ctrl_c.pressed is not None:
                raise _CtrlCError(ctrl_c.pressed) from None
            raise


def _over_limit(args: argparse.Namespace, size: int | None) -> bool:
    """Whether a message LISTed as ``size`` is over ``--max-size`` or ``--max-message-size``."""
    limits = [n for n in (args.max_size, args.max_message_size) if n is not None]
    return size is not None and any(size > n for n in limits)


def _may_delete(args: argparse.Namespace, first_seen: int | None, now: float) -> bool:
    """Whether a message stored (or found stored) in this session is to be deleted now."""
    if args.keep:
        return False
    if args.keep_days is None:
        return True
    return first_seen is not None and now - first_seen >= args.keep_days * _DAY


async def _fetch_all(
    args: argparse.Namespace,
    credentials: Credentials,
    server: Server,
    state: FetchState,
    target: Target,
    ctrl_c: _CtrlC,
) -> FetchResult:
    result = FetchResult()
    client = open_client(args, server, trace=args.verbose - args.quiet >= 2)
    keeping = args.keep or args.keep_days is not None
    now = time.time()
    # Versions before state version 3 named a Maildir file after ``host:port:user``: a copy
    # such a run stored, killed before recording it, is found under that name too.
    legacy_account = transport_key(args.user, server.host, server.port)
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
        todo: list[int] = []
        for msg in sorted(uids):
            ctrl_c.check()
            uid, size = uids[msg], sizes.get(msg)
            if _over_limit(args, size):
                # Left on the server (or deleted unread, if asked): never a reason to stop.
                if args.delete_oversized:
                    await client.dele(msg)
                    deleted.append(uid)
                    result.deleted_unread += 1
                else:
                    result.skipped += 1
                log.debug("message %d (%s): %s octets, over the size limit", msg, uid, size)
                continue
            record = state.get(uid)
            # A version 1 record has no size: enough to skip when keeping (deleting nothing).
            if keeping and not args.all and record is not None and record.size in (None, size):
                if args.keep_days is not None and record.first_seen is None:
                    # Stored before --keep-days was used: its days count from now.
                    state.add(uid, record.size, record.sha256, int(now))
                    result.already += 1
                    continue
                if not _may_delete(args, record.first_seen, now):
                    result.already += 1
                    continue
                # Its days are over: retrieved again (the rule), then deleted.
            todo.append(msg)
        progress = Progress(len(todo), sum(sizes.get(msg, 0) for msg in todo))
        try:
            for msg in todo:
                ctrl_c.check()
                uid, size = uids[msg], sizes.get(msg)
                token = message_token(state.account, uid)
                head = trace_fields(
                    user=args.user,
                    host=args.host,
                    tls=server.tls is not None,
                    delivered_to=args.delivered_to,
                    received=args.received,
                    now=time.time(),
                )
                pending = target.begin(
                    token, MessageForm(head, crlf=args.crlf, mbox=target.mbox_form)
                )
                try:
                    async for chunk in client.iter_retr(msg):
                        pending.write(chunk)
                        progress.advance(len(chunk))
                except BaseException:
                    pending.abort()
                    raise
                record = state.get(uid)
                digest = pending.sha256
                first_seen = None if record is None else record.first_seen
                if first_seen is None and args.keep_days is not None:
                    first_seen = int(now)
                if not args.all and (
                    (record is not None and record.sha256 == digest)
                    or target.holds(token, digest)
                    or target.holds(message_token(legacy_account, uid), digest)
                ):
                    pending.abort()  # these very bytes are stored already
                    log.debug("message %d (%s) is already stored", msg, uid)
                    result.already += 1
                    if record != (size, digest, first_seen):
                        state.add(uid, size, digest, first_seen)
                else:
                    meta: dict[str, object] = {
                        "uid": uid,
                        "size": size,
                        "sha256": digest,
                        "first_seen": first_seen,
                    }
                    add = functools.partial(state.add, uid, size, digest, first_seen)
                    octets = pending.size
                    try:
                        where = target.store(pending, meta, add)
                    except DeliveryFailed as exc:
                        log.warning(
                            "message %d (%s) was not delivered: the MDA exited with status %d; "
                            "it stays on the server",
                            msg,
                            uid,
                            exc.status,
                        )
                        result.failed.append(exc.status)
                        progress.message_done()
                        continue
                    except Deferred as exc:
                        result.deferred = exc
                        break
                    result.fetched += 1
                    result.octets += octets
                    log.debug("message %d (%s): %d octets to %s", msg, uid, octets, where)
                progress.message_done()
                if _may_delete(args, first_seen, now):
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


def check_options(args: argparse.Namespace) -> None:
    """Raise ``UsageError`` for a combination of options that cannot be meant."""
    check_target(args)
    if args.keep and args.keep_days is not None:
        raise UsageError("--keep and --keep-days: choose one (--keep never deletes)")
    if args.all and not (args.keep or args.keep_days is not None):
        raise UsageError("--all goes with --keep or --keep-days (without them all mail is fetched)")
    if args.delete_oversized and args.max_size is None and args.max_message_size is None:
        raise UsageError("--delete-oversized needs --max-size (or --max-message-size)")


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
    target = open_target(args)
    with FetchState(target.state_dir, account, target.state_prefix) as state:
        target.recover(state.add_stored)
        try:
            with reported(args, server):
                result = asyncio.run(_fetch(args, credentials, server, state, target))
        except (KeyboardInterrupt, _CtrlCError) as exc:
            stop = Stopped if getattr(exc, "signum", None) == signal.SIGTERM else Interrupted
            raise stop("interrupted; nothing was deleted on the server") from None
    if args.quiet <= 0 or result.failed or result.deferred:
        print(_summary(args, result, label), flush=True)
    if result.deferred is not None:
        raise result.deferred
    if result.failed:
        statuses = ", ".join(str(n) for n in sorted(set(result.failed)))
        raise CliError(
            f"{counted(len(result.failed), 'message')} not delivered (the MDA exited with "
            f"status {statuses}); left on the server"
        )
    return result


def _summary(args: argparse.Namespace, result: FetchResult, label: str | None) -> str:
    summary = f"{label}: " if label else ""
    summary += f"fetched {counted(result.fetched, 'message')} ({counted(result.octets, 'octet')})"
    if result.already:
        summary += f", {result.already} already stored"
    if result.skipped:
        summary += f", {result.skipped} over the size limit left on the server"
    if result.failed:
        summary += f", {len(result.failed)} not delivered"
    if not args.keep:
        summary += f", {result.deleted} deleted on the server"
    if result.deleted_unread:
        summary += f", {result.deleted_unread} over the size limit deleted unread"
    return summary
