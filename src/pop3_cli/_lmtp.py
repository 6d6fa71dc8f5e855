"""``pop3 lmtp``: an LMTP server (RFC 2033) that stores mail in PostgreSQL.

Built on aiosmtpd's ``LMTP`` protocol class (the ``lmtp`` extra): it speaks the
protocol, this module decides per recipient. A recipient the users file does
not know is refused at RCPT (550 5.1.1, RFC 3463); after DATA each accepted
recipient gets its own reply (RFC 2033 section 4.2), 250 only once its copy
is committed, 451 4.3.0 when the database is unreachable or fails, so the MTA
retries exactly the recipients that were not stored. The storage's calls
block, so they run in a thread pool as large as the database pool; messages
that arrive while a transaction runs are stored together in the next one
(``GroupCommit``), so a busy server pays one commit for many messages.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import stat
import weakref
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any, AnyStr

from ._defaults import DEFAULT_HOST, DEFAULT_LMTP_PORT
from ._errors import CliError

if TYPE_CHECKING:
    from pop3_maildrop import PostgresStorage

__all__ = ["LmtpDelivery", "recipient_user", "run_lmtp"]

log = logging.getLogger("pop3.lmtp")


def recipient_user(address: str, users: Container[str]) -> str | None:
    """The user an LMTP recipient address names, or ``None``.

    Tried in turn: the whole address, its local part (before the last "@"),
    that local part without a "+extension" (Postfix's recipient_delimiter);
    each as given, then in lower case (Postfix folds local parts to lower case).
    """
    local, at, _domain = address.rpartition("@")
    if not at:
        local = address
    candidates = [address, local, local.partition("+")[0]]
    for candidate in candidates + [c.lower() for c in candidates]:
        if candidate and candidate in users:
            return candidate
    return None


class GroupCommit:
    """Stores messages in batches: what arrives while a transaction runs goes in the next.

    Each message waits for the transaction that stores it to commit (a commit's
    disk flush is the cost of a delivery); ``workers`` transactions run at once,
    each on a thread of ``executor`` and a connection of the pool, each taking
    everything queued (up to ``batch`` messages). A batch is all or none
    (``deliver_many``): if the database is unavailable every message in it fails;
    if anything else fails, its messages are tried again one by one.
    """

    def __init__(
        self,
        storage: PostgresStorage,
        executor: concurrent.futures.Executor,
        *,
        workers: int,
        batch: int = 64,
    ) -> None:
        self.storage = storage
        self.executor = executor
        self.workers = workers
        self.batch = batch
        self._queue: asyncio.Queue[tuple[str, bytes, asyncio.Future[str]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0  # batches being stored now

    def start(self) -> None:
        """Start the workers (on the running event loop)."""
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self, timeout: float) -> None:
        """Let what is queued or running commit (at most ``timeout`` s), then stop."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._running or not self._queue.empty()) and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def deliver(self, user: str, message: bytes) -> str:
        """Store ``message`` for ``user``; its unique id once committed."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((user, message, future))
        return await future

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._running += 1
            try:
                await self._store(batch)
            finally:
                self._running -= 1

    async def _store(self, batch: list[tuple[str, bytes, asyncio.Future[str]]]) -> None:
        from pop3_maildrop import StorageUnavailableError

        loop = asyncio.get_running_loop()
        items = [(user, message) for user, message, _ in batch]
        try:
            uids = await loop.run_in_executor(self.executor, self.storage.deliver_many, items)
        except StorageUnavailableError as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][2].done():
                    batch[0][2].set_exception(exc)
            else:
                # Not the database's state but something of one message, perhaps: each
                # alone, so that one message cannot keep failing the others.
                for one in batch:
                    await self._store([one])
        else:
            for (_, _, future), uid in zip(batch, uids, strict=True):
                if not future.done():
                    future.set_result(uid)


class LmtpDelivery:
    """aiosmtpd's handler: RCPT checks the user, DATA stores one copy per recipient."""

    def __init__(self, store: GroupCommit, users: Container[str]) -> None:
        self.store = store
        self.users = users

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if recipient_user(address, self.users) is None:
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        # One reply line per accepted recipient, in RCPT order (RFC 2033 section 4.2);
        # aiosmtpd sends the string as it is, so the lines are joined with CRLF.
        message: bytes = envelope.original_content
        replies = await asyncio.gather(
            *(self._deliver(address, message) for address in envelope.rcpt_tos)
        )
        return "\r\n".join(replies)

    async def _deliver(self, address: str, message: bytes) -> str:
        from pop3_maildrop import StorageUnavailableError

        user = recipient_user(address, self.users)
        if user is None:  # pragma: no cover - checked at RCPT; the users do not change
            return f"550 5.1.1 <{address}>: no such user here"
        try:
            uid = await self.store.deliver(user, message)
        except StorageUnavailableError as exc:
            log.warning("not delivered to %s: database unavailable: %s", user, exc)
            return f"451 4.3.0 <{address}> database unavailable, try again later"
        except Exception as exc:
            # Whatever failed, this recipient gets its reply (a missing one would put
            # the MTA out of step) and a temporary one: nothing was committed.
            log.warning("not delivered to %s: %s: %s", user, type(exc).__name__, exc)
            return f"451 4.3.0 <{address}> not stored, try again later"
        log.info("delivered %d octets to %s as %s", len(message), user, uid)
        return f"250 2.0.0 <{address}> delivered as {uid}"


def _listen_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket file there is replaced."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(path)
                except OSError:
                    os.unlink(path)  # nobody listens: left by a process that died
                else:
                    raise CliError(f"{path} is in use by another server")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(path)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    return sock


def _protocol_class() -> type[Any]:
    """aiosmtpd's ``LMTP``, made to answer a refused message once per recipient.

    aiosmtpd refuses a message that is too big (552) or has a line too long (500)
    with one reply after the data, as SMTP does; LMTP's client then waits for one
    reply per accepted recipient (RFC 2033 section 4.2), so the reply is repeated.
    """
    from aiosmtpd.lmtp import LMTP

    class PerRecipientLMTP(LMTP):
        _recipients = 0  # accepted recipients when DATA's 354 went out; 0 outside DATA

        async def push(self, status: AnyStr) -> None:
            text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
            if text.startswith("354"):
                self._recipients = len(self.envelope.rcpt_tos) if self.envelope else 0
            elif self._recipients:
                count, self._recipients = self._recipients, 0
                if text[:1] in ("4", "5") and "\r\n" not in text:
                    text = "\r\n".join([text] * count)
            await super().push(text)

    return PerRecipientLMTP


async def _serve(args: argparse.Namespace, storage: PostgresStorage, users: Container[str]) -> None:
    loop = asyncio.get_running_loop()
    hostname = socket.gethostname() or "localhost"  # not getfqdn(): no DNS wait at start
    lmtp_class = _protocol_class()
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=args.pool_max, thread_name_prefix="lmtp-store"
    )
    store = GroupCommit(storage, executor, workers=args.pool_max)
    handler = LmtpDelivery(store, users)
    connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def protocol() -> Any:
        connection = lmtp_class(
            handler,
            hostname=hostname,
            data_size_limit=args.max_message_size,
            enable_SMTPUTF8=True,
            loop=loop,
        )
        connections.add(connection)
        return connection

    server: asyncio.Server | None = None
    try:
        server = await _listen(args, loop, protocol)
        store.start()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        for sock in server.sockets:
            print(f"listening on {_shown(sock)}", flush=True)
        await stop.wait()
        log.info("stopping")
        # No new connections; deliveries under way commit and are answered; then the
        # connections still open (an MTA keeps idle ones) are closed.
        server.close()
        await store.stop(timeout=10.0)
        for connection in list(connections):
            if connection.transport is not None:
                connection.transport.close()
        await asyncio.sleep(0)
    finally:
        await store.stop(timeout=0)
        executor.shutdown(wait=True)
        if args.socket is not None and server is not None:  # ours: not another's socket
            with contextlib.suppress(OSError):
                os.unlink(args.socket)


async def _listen(
    args: argparse.Namespace, loop: asyncio.AbstractEventLoop, protocol: Callable[[], Any]
) -> asyncio.Server:
    if args.socket is not None:
        return await loop.create_unix_server(protocol, sock=_listen_unix(args.socket))
    host, port = args.listen or (DEFAULT_HOST, DEFAULT_LMTP_PORT)
    try:
        return await loop.create_server(protocol, host, port, backlog=1024)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _shown(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return str(name)
    return f"[{name[0]}]:{name[1]}" if ":" in name[0] else f"{name[0]}:{name[1]}"


def run_lmtp(args: argparse.Namespace) -> int:
    """``pop3 lmtp``: serve until SIGINT or SIGTERM; 0 then."""
    try:
        import aiosmtpd.lmtp  # noqa: F401 - the extra's presence, checked before anything runs
    except ImportError:
        raise CliError("pop3 lmtp needs aiosmtpd: pip install 'pop3-sansio[lmtp]'") from None
    from ._mda import open_postgres
    from ._serve import load_users

    users = load_users([], args.users)
    if not users:
        raise CliError(f"no users in {args.users}")
    # aiosmtpd logs every connection at INFO ("mail.log"); our own line per delivery is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    storage = open_postgres(
        args.storage, pool_min=0, pool_max=args.pool_max, timeout=args.storage_timeout
    )
    try:
        asyncio.run(_serve(args, storage, users))
    finally:
        storage.close()
    return 0
