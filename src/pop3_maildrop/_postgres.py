"""PostgreSQL storage: maildrops that any number of servers, on any number of hosts, share.

Tables (created on first use, versioned in ``pop3_schema``, upgraded in place):

- ``pop3_messages``: one row per message: the maildrop (the user name), its unique id
  (assigned at delivery, never reused; RFC 1939 section 7), its size in CRLF octets
  (computed at delivery; section 11), its stored length and number of chunks;
- ``pop3_chunks``: the message's octets as stored, in rows of at most ``STORE_CHUNK``
  octets, so that delivering or serving a message of any size holds one chunk in memory;
- ``pop3_leases``: the exclusive-access lock of RFC 1939 section 4, as a lease: one row per
  maildrop in use, naming the session and the process holding it and when it expires.

No database connection is held by an open session: a login takes the lease in one
statement (its own transaction), then reads the snapshot in another; a lease keeper
thread per process renews the leases of all the process's open sessions in one statement
every third of the lease; a session's end releases its lease (through the keeper, so that
closing never blocks an event loop); a crashed host's leases expire by themselves, and a
server on the same machine takes over those of a process that is gone at once. Deletions
happen at QUIT in one statement, which deletes the messages only if it deletes the
session's unexpired lease (fencing: a session whose lease was lost deletes nothing).

psycopg 3 and psycopg_pool are imported when a ``PostgresStorage`` is made, not with the
package (``pip install 'pop3-sansio[postgresql]'``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

from pop3_sansio import LocalProtocolError
from pop3_sansio.codec import message_size
from pop3_sansio.server import MessageInfo

from ._base import (
    Maildrop,
    MaildropError,
    MaildropLocked,
    Storage,
    StorageUnavailableError,
    is_valid_uid,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["MIN_LEASE_SECONDS", "SCHEMA_VERSION", "STORE_CHUNK", "Message", "PostgresStorage"]

log = logging.getLogger("pop3.maildrop")

SCHEMA_VERSION = 1
"""The schema this version writes and reads (``pop3_schema.version``)."""

MIN_LEASE_SECONDS = 0.5
"""The shortest lease: renewals every third of it must reach the database in time."""

STORE_CHUNK = 1 << 16
"""Octets per ``pop3_chunks`` row: what a delivery or a reader holds in memory at once."""

Message: TypeAlias = "bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]"
"""A message to deliver: its octets, a binary file to read, or an iterable of chunks."""

# Each version's statements, applied in order, in one transaction, to reach it.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE pop3_messages (
            id bigserial PRIMARY KEY,
            mailbox text NOT NULL,
            uid text NOT NULL,
            size bigint NOT NULL,
            octets bigint NOT NULL,
            chunks integer NOT NULL,
            delivered timestamptz NOT NULL DEFAULT now(),
            UNIQUE (mailbox, uid)
        )
        """,
        "CREATE INDEX pop3_messages_mailbox ON pop3_messages (mailbox, id)",
        """
        CREATE TABLE pop3_chunks (
            message bigint NOT NULL REFERENCES pop3_messages (id) ON DELETE CASCADE,
            seq integer NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (message, seq)
        )
        """,
        # Stored uncompressed: compressing costs the database more CPU than the
        # delivery itself (mail is largely base64 of compressed attachments); an
        # operator may choose otherwise (docs/storage-postgresql.md).
        "ALTER TABLE pop3_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
        """
        CREATE TABLE pop3_leases (
            mailbox text PRIMARY KEY,
            session uuid NOT NULL,
            holder text NOT NULL,
            process text,
            expires timestamptz NOT NULL
        )
        """,
    ),
}
assert sorted(_MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))

_REPORT_INTERVAL = 60.0  # seconds between two log lines of the same database failure
_READ_AHEAD = 8  # rows of pop3_chunks a reader fetches at most in one query (512 KiB)
_CHECK_IDLE = 30.0  # seconds unused after which a pooled connection is checked before use

# Any number, the same in every process: serialises schema creation and upgrades.
_SCHEMA_LOCK = 0x706F7033  # "pop3"

_ACQUIRE = """
INSERT INTO pop3_leases AS l (mailbox, session, holder, process, expires)
VALUES (%(mailbox)s, %(session)s, %(holder)s, %(process)s,
        now() + %(lease)s * interval '1 second')
ON CONFLICT (mailbox) DO UPDATE
    SET session = excluded.session, holder = excluded.holder, process = excluded.process,
        expires = excluded.expires
    WHERE l.expires <= now() OR l.session = ANY(%(released)s::uuid[])
RETURNING l.session
"""
# After a refused _ACQUIRE, whose row it locked (ON CONFLICT locks it either way).
_HELD_BY = "SELECT session, process FROM pop3_leases WHERE mailbox = %(mailbox)s"
_TAKE_OVER = """
UPDATE pop3_leases
SET session = %(session)s, holder = %(holder)s, process = %(process)s,
    expires = now() + %(lease)s * interval '1 second'
WHERE mailbox = %(mailbox)s AND session = %(dead)s
RETURNING session
"""
_SNAPSHOT = "SELECT id, uid, size, chunks FROM pop3_messages WHERE mailbox = %s ORDER BY id"
_RENEW = """
UPDATE pop3_leases SET expires = now() + %s * interval '1 second'
WHERE session = ANY(%s::uuid[]) AND expires > now()
RETURNING session
"""
_RELEASE = "DELETE FROM pop3_leases WHERE session = ANY(%s::uuid[])"
# QUIT's update, one statement (so one transaction): the lease is the fence, deleted
# only by its holder while it holds (a row another login took over meanwhile does not
# match once its lock is released); the messages go only if it went. First column:
# whether the lease was still held.
_COMMIT = """
WITH fence AS (
    DELETE FROM pop3_leases
    WHERE mailbox = %(mailbox)s AND session = %(session)s AND expires > now()
    RETURNING 1
), gone AS (
    DELETE FROM pop3_messages
    WHERE mailbox = %(mailbox)s AND id = ANY(%(ids)s::bigint[]) AND EXISTS (SELECT FROM fence)
    RETURNING 1
)
SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM gone)
"""
_READ = """
SELECT seq, data FROM pop3_chunks WHERE message = %s AND seq >= %s ORDER BY seq LIMIT %s
"""
_INSERT_SMALL = """
WITH m AS (
    INSERT INTO pop3_messages (mailbox, uid, size, octets, chunks)
    VALUES (%(mailbox)s, %(uid)s, %(size)s, %(octets)s, %(chunks)s)
    ON CONFLICT (mailbox, uid) DO NOTHING
    RETURNING id
)
INSERT INTO pop3_chunks (message, seq, data) SELECT id, 0, %(data)s FROM m WHERE %(chunks)s > 0
RETURNING message
"""
_INSERT_MESSAGE = """
INSERT INTO pop3_messages (mailbox, uid, size, octets, chunks)
VALUES (%s, %s, 0, 0, 0)
ON CONFLICT (mailbox, uid) DO NOTHING
RETURNING id
"""
_FINISH_MESSAGE = "UPDATE pop3_messages SET size = %s, octets = %s, chunks = %s WHERE id = %s"


def _check_mailbox(username: str) -> str:
    # PostgreSQL's text cannot hold NUL; an empty name is no user's.
    if not username or "\0" in username:
        raise MaildropError("unusable user name for a maildrop")
    return username


def _chunks(message: Message) -> Iterator[bytes]:
    """``message`` in chunks of exactly ``STORE_CHUNK`` octets (the last one shorter)."""
    if isinstance(message, bytes | bytearray | memoryview):
        data = bytes(message)
        for start in range(0, len(data), STORE_CHUNK):
            yield data[start : start + STORE_CHUNK]
        return
    read = getattr(message, "read", None)
    pieces: Iterable[bytes] = iter(lambda: read(STORE_CHUNK), b"") if read else message
    buffer = bytearray()
    for piece in pieces:
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise TypeError(f"a message chunk must be bytes, not {type(piece).__name__}")
        buffer += piece
        while len(buffer) >= STORE_CHUNK:
            yield bytes(buffer[:STORE_CHUNK])
            del buffer[:STORE_CHUNK]
    if buffer:
        yield bytes(buffer)


class PostgresStorage(Storage):
    """Maildrops in a PostgreSQL database, shared by every server that uses the same ``url``.

    ``url`` is a libpq connection string or ``postgresql://`` URL. Each process keeps a
    pool of ``pool_min`` to ``pool_max`` connections (made on first use, so a server may
    fork its workers first); a connection is taken for one short statement (or a delivery's
    transaction) at a time, never for a whole session. An operation waits at most
    ``timeout`` seconds for a connection, then raises ``StorageUnavailableError``. A
    session's lease lasts ``lease_seconds`` (at least ``MIN_LEASE_SECONDS``) and is
    renewed every third of that while the session is open: a maildrop whose server died
    is free again within ``lease_seconds``, or at once for a server started again on the
    same machine.

    The schema is created (or upgraded) on first use; ``create_schema()`` does it at once.
    Call ``close()`` when done (it releases the leases still held).
    """

    MIN_LEASE_SECONDS = MIN_LEASE_SECONDS

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        lease_seconds: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        import psycopg.conninfo

        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise ValueError("need 0 <= pool_min <= pool_max and pool_max >= 1")
        if not lease_seconds >= MIN_LEASE_SECONDS:
            raise ValueError(f"lease_seconds must be at least {MIN_LEASE_SECONDS}")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"not a PostgreSQL connection string: {exc}") from None
        self.url = url
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.lease_seconds = float(lease_seconds)
        self.timeout = float(timeout)
        self._mutex = threading.Lock()
        self._runtime: _Runtime | None = None
        self._closed = False

    @property
    def has_password(self) -> bool:
        """Whether ``url`` itself holds a password (one in ~/.pgpass is safer)."""
        import psycopg.conninfo

        return bool(psycopg.conninfo.conninfo_to_dict(self.url).get("password"))

    def __repr__(self) -> str:
        import psycopg.conninfo

        params = psycopg.conninfo.conninfo_to_dict(self.url)
        params.pop("password", None)  # never in a log line
        where = f"{params.get('host', '')}:{params.get('port', '')}/{params.get('dbname', '')}"
        return f"PostgresStorage({where!r}, pool_max={self.pool_max})"

    # --- the Storage contract -------------------------------------------------------------

    def open(self, username: str) -> Maildrop:
        """Take ``username``'s lease and snapshot the maildrop (see ``Storage.open``).

        ``MaildropLocked`` if a live session anywhere holds the lease;
        ``StorageUnavailableError`` if the database cannot be reached.
        """
        mailbox = _check_mailbox(username)
        runtime = self._get_runtime()
        session = uuid.uuid4()
        params = {
            "mailbox": mailbox,
            "session": session,
            "holder": runtime.holder,
            "process": runtime.process,
            "lease": self.lease_seconds,
            # Leases this process has given back but not yet deleted: a session closed
            # a moment ago does not lock its user out of the next one here.
            "released": runtime.keeper.pending(),
        }
        sent = False
        try:
            with runtime.connection() as conn:
                # Two statements, not one: the snapshot's statement starts after the
                # lease is taken, so it sees every deletion of the previous holder,
                # even one committed while this login waited for the lease's row (one
                # statement reads with a snapshot from before that wait).
                sent = True
                taken = conn.execute(_ACQUIRE, params).fetchone() is not None
                if not taken:
                    # Again, in a transaction that keeps the row locked from the check
                    # of its holder to the take-over (and sees it if it was just freed).
                    with conn.transaction():
                        taken = conn.execute(_ACQUIRE, params).fetchone() is not None
                        if not taken and not _take_over(conn, params):
                            raise MaildropLocked("the maildrop is in use by another session")
                rows = conn.execute(_SNAPSHOT, (mailbox,)).fetchall()
            try:
                drop = _PostgresMaildrop(runtime, mailbox, session, rows)
            except LocalProtocolError as exc:  # a row written by hand, not by deliver()
                text = f"the maildrop of {mailbox!r} holds an unusable message: {exc}"
                log.error("PostgreSQL storage: %s", text)
                raise MaildropError(text) from exc
        except MaildropLocked:
            raise  # nothing taken
        except BaseException:
            if sent:
                # The lease may be held (taken, or its answer lost): no session will
                # renew or release it, so give it back (deleting none is harmless).
                runtime.keeper.release(session)
            raise
        runtime.keeper.hold(session)
        return drop

    # --- delivery ---------------------------------------------------------------------------

    def deliver(self, username: str, message: Message, *, uid: str | None = None) -> str:
        """Store one message in ``username``'s maildrop; its unique id once committed.

        ``message`` is the octets, a binary file or an iterable of chunks, stored as given
        (LF or CRLF line ends) and read ``STORE_CHUNK`` octets at a time, so its size is
        not limited by memory. The new id is random (never reused, even after a restore
        from a backup). With ``uid`` (1-70 characters in 0x21-0x7E, e.g. a Maildir's) the
        message keeps that id, and if the maildrop already has it nothing is stored: a
        repeated import stores nothing twice. Nothing is visible to a session before the
        transaction commits; ``StorageUnavailableError`` if the database cannot be reached
        (then nothing was stored).
        """
        return self.deliver_many([(username, message)], uids=[uid])[0]

    def deliver_many(
        self,
        deliveries: Iterable[tuple[str, Message]],
        *,
        uids: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Store several messages in one transaction (all or none); their unique ids.

        Each delivery is ``(username, message)``; ``uids``, if given, holds an id (or
        ``None``) for each, as ``deliver``'s ``uid``.
        """
        runtime = self._get_runtime()
        items = list(deliveries)
        given = list(uids) if uids is not None else [None] * len(items)
        if len(given) != len(items):
            raise ValueError("uids must have one entry per delivery")
        for username, _ in items:
            _check_mailbox(username)
        for uid in given:
            if uid is not None and not is_valid_uid(uid):
                raise ValueError(f"not a valid unique id: {uid!r}")
        out = []
        with runtime.connection() as conn, conn.transaction():
            for (username, message), uid in zip(items, given, strict=True):
                out.append(_store(conn, username, message, uid or uuid.uuid4().hex))
        return out

    # --- the schema and the end -------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the tables, or upgrade them to ``SCHEMA_VERSION``, now (idempotent)."""
        runtime = self._get_runtime()
        with runtime.connection():
            pass  # the first connection of a runtime checks the schema

    def close(self) -> None:
        """Release the leases still held, stop the lease keeper and close the pool."""
        with self._mutex:
            runtime, self._runtime = self._runtime, None
            self._closed = True
        if runtime is not None and runtime.pid == os.getpid():
            runtime.close()

    def __enter__(self) -> PostgresStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get_runtime(self) -> _Runtime:
        """This process's pool and lease keeper, made on first use (and again after a fork)."""
        with self._mutex:
            if self._closed:
                raise MaildropError("the storage is closed")
            runtime = self._runtime
            if runtime is None or runtime.pid != os.getpid():
                # A fork's child never uses (or closes) its parent's connections.
                runtime = self._runtime = _Runtime(self)
            return runtime


def _store(conn: psycopg.Connection[Any], username: str, message: Message, uid: str) -> str:
    """Insert one message in the current transaction; ``uid``, stored or already there."""
    chunks = _chunks(message)
    first = next(chunks, b"")
    second = next(chunks, None) if len(first) == STORE_CHUNK else None
    if second is None:
        # The common case: the message fits in one row, one statement.
        conn.execute(
            _INSERT_SMALL,
            {
                "mailbox": username,
                "uid": uid,
                "size": message_size(first),
                "octets": len(first),
                "chunks": 1 if first else 0,
                "data": first,
            },
        )
        return uid
    row = conn.execute(_INSERT_MESSAGE, (username, uid)).fetchone()
    if row is None:
        return uid  # already stored (an import run again): the stream is not read further
    message_id = row[0]
    count = octets = 0
    with conn.cursor().copy(
        "COPY pop3_chunks (message, seq, data) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "int4", "bytea"])

        def stored() -> Iterator[bytes]:
            nonlocal count, octets
            for chunk in _chain(first, second, chunks):
                copy.write_row((message_id, count, chunk))
                count += 1
                octets += len(chunk)
                yield chunk

        size = message_size(stored())
    conn.execute(_FINISH_MESSAGE, (size, octets, count, message_id))
    return uid


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest


def _take_over(conn: psycopg.Connection[Any], params: dict[str, Any]) -> bool:
    """Take a lease held by a process of this machine that is gone (a crash, a restart).

    Its lease would free itself only when it expires; a process on the same machine
    can tell for sure that the holder is dead, as a local lock would (an ``flock``
    goes with its process). A holder elsewhere, or one that cannot be told apart
    from a live process, keeps its lease until it expires.
    """
    row = conn.execute(_HELD_BY, params).fetchone()
    if row is None or not _is_dead(row[1]):
        return False
    taken = conn.execute(_TAKE_OVER, {**params, "dead": row[0]}).fetchone()
    if taken is not None:
        log.info("took over the lease of %r from a process that is gone", params["mailbox"])
    return taken is not None


def _machine() -> str | None:
    """This kernel's boot and this process's PID namespace (Linux), or ``None``."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}"


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot); ``None`` if there is none.

    ``OSError`` if it cannot be told (no /proc, no permission).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    # Field 22, counted from the one after the command name (which may hold anything).
    return stat[stat.rindex(b")") + 2 :].split()[19].decode("ascii")


def _process_identity(pid: int) -> str | None:
    """``boot/pid-namespace/pid/start-time``: names this process, never another, or ``None``."""
    machine = _machine()
    if machine is None:
        return None
    try:
        start = _start_time(pid)
    except (OSError, ValueError, IndexError):
        return None
    return None if start is None else f"{machine}/{pid}/{start}"


def _is_dead(process: str | None) -> bool:
    """Whether the process a lease names surely no longer runs (on this machine)."""
    machine = _machine()
    if process is None or machine is None or not process.startswith(machine + "/"):
        return False  # another machine (or namespace), or unknown: wait for the expiry
    pid, _, start = process[len(machine) + 1 :].partition("/")
    try:
        return _start_time(int(pid)) != start  # gone, or the PID is another process's now
    except (OSError, ValueError, IndexError):
        return False


class _PoolErrors(logging.Handler):
    """Keeps the reason of psycopg_pool's last failed connection, instead of printing it.

    The pool logs every attempt (a warning with no handler of its own goes to stderr
    through ``logging.lastResort``); our report says it once, after "couldn't get a
    connection". A program that configures logging still gets the pool's records (they
    propagate as before).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._last = ""
        self._when = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("error connecting in 'pop3-sansio'"):
            lines = text.partition(": ")[2].splitlines()
            self._last = lines[0] if lines else ""
            self._when = time.monotonic()

    def recent(self) -> str:
        """The last connection error of the past minute, or ``""``."""
        return self._last if time.monotonic() - self._when < _REPORT_INTERVAL else ""


_POOL_ERRORS = _PoolErrors()
_POOL_LOGGER = logging.getLogger("psycopg.pool")


class _Runtime:
    """One process's pool and lease keeper (a forked child makes its own)."""

    def __init__(self, storage: PostgresStorage) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        if _POOL_ERRORS not in _POOL_LOGGER.handlers:
            _POOL_LOGGER.addHandler(_POOL_ERRORS)
        self.pid = os.getpid()
        self.storage = storage
        self.holder = f"{socket.gethostname()}:{self.pid}"
        self.process = _process_identity(self.pid)
        self._errors = (psycopg.OperationalError, psycopg.InterfaceError)
        self._error = psycopg.Error
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            storage.url,
            min_size=storage.pool_min,
            max_size=storage.pool_max,
            timeout=storage.timeout,
            # No reconnection in the background with a growing back-off (the pool's
            # default): after an outage the next request connects at once, so sessions
            # succeed as soon as the database is back.
            reconnect_timeout=0.0,
            kwargs={
                **_tcp_defaults(storage.url, storage.timeout),
                "autocommit": True,
                "connect_timeout": max(1, round(storage.timeout)),
                "application_name": "pop3-sansio",
            },
            open=False,
            name="pop3-sansio",
        )
        self.pool.open(wait=False)
        # When each pooled connection was last given back (see _take).
        self._used: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._check = ConnectionPool.check_connection
        self._schema_ready = False
        self._schema_mutex = threading.Lock()
        self._report_mutex = threading.Lock()
        self._last_report = ""
        self._last_report_time = 0.0
        self._reports_skipped = 0
        self.keeper = _LeaseKeeper(self, storage.lease_seconds)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit); database errors as ``MaildropError``s."""
        try:
            conn = self._take()
            try:
                with conn:  # as the pool's connection(): a transaction left open ends
                    if not self._schema_ready:
                        self._ensure_schema(conn)
                    yield conn
            finally:
                self._used[conn] = time.monotonic()
                self.pool.putconn(conn)  # a broken one is closed, and another made
        except self._errors as exc:
            text = f"the database is unavailable: {_reason(exc)}"
            cause = _POOL_ERRORS.recent()
            if cause and cause not in text:  # "couldn't get a connection": say why not
                text += f" ({cause})"
            self._report(text)
            raise StorageUnavailableError(text) from exc
        except self._error as exc:
            text = f"database error: {_reason(exc)}"
            self._report(text)
            raise MaildropError(text) from exc

    def _take(self) -> psycopg.Connection[Any]:
        """A pooled connection that works, or ``PoolTimeout`` after ``timeout`` seconds.

        A connection is checked with a round trip only if the database has said
        something on it since its last use (a restarted or stopped database ends its
        connections with a notice; keepalives that went unanswered end it too), or if
        it sat unused for ``_CHECK_IDLE`` seconds (a firewall or NAT may have forgotten
        it without a word). A broken one is given back (the pool replaces it) and the
        next one taken at once, so that after a restart the first session does not
        wait for each dead connection in turn.
        """
        deadline = time.monotonic() + self.storage.timeout
        while True:
            conn = self.pool.getconn(max(0.0, deadline - time.monotonic()))
            used = self._used.get(conn)
            if (
                used is not None
                and time.monotonic() - used < _CHECK_IDLE
                and not conn.closed
                and not _readable(conn.fileno())
            ):
                return conn  # the common case: no round trip
            try:
                self._check(conn)
            except Exception:
                self.pool.putconn(conn)
                continue
            except BaseException:  # interrupted: the connection goes back all the same
                self.pool.putconn(conn)
                raise
            return conn

    def _report(self, text: str) -> None:
        """Log a database failure: the first of a kind at once, then once a minute at most.

        Clients only see ``-ERR [SYS/TEMP]``; the operator needs the reason, without a line
        per session during an outage.
        """
        now = time.monotonic()
        with self._report_mutex:
            if text == self._last_report and now - self._last_report_time < _REPORT_INTERVAL:
                self._reports_skipped += 1
                return
            skipped, self._reports_skipped = self._reports_skipped, 0
            self._last_report, self._last_report_time = text, now
        more = f" ({skipped} more since the last report)" if skipped else ""
        log.warning("PostgreSQL storage: %s%s", text, more)

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        import psycopg

        with self._schema_mutex:
            if self._schema_ready:
                return
            try:
                row = conn.execute("SELECT max(version) FROM pop3_schema").fetchone()
                version = row[0] if row is not None and row[0] is not None else 0
            except psycopg.errors.UndefinedTable:
                version = 0
            if version != SCHEMA_VERSION:
                version = _migrate(conn)
            self._schema_ready = version == SCHEMA_VERSION

    def close(self) -> None:
        try:
            self.keeper.stop()
        finally:
            self.pool.close()


def _tcp_defaults(url: str, timeout: float) -> dict[str, Any]:
    """libpq's TCP settings, where ``url`` does not set them: a dead peer found in time.

    Keepalives find an idle connection whose database host vanished (its socket then
    reads as ended, which ``_Runtime._take`` sees); ``tcp_user_timeout`` ends a
    statement whose packets go unanswered after ``timeout`` seconds instead of the
    kernel's 15 minutes.
    """
    import psycopg.conninfo

    given = psycopg.conninfo.conninfo_to_dict(url)
    defaults: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": max(1000, round(timeout * 1000)),
    }
    return {key: value for key, value in defaults.items() if key not in given}


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read (or its peer hung up), without waiting."""
    if hasattr(select, "poll"):  # any descriptor number (select() stops at FD_SETSIZE)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows


def _migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` (one transaction, one process at a time)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS pop3_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM pop3_schema").fetchone()
        version: int = row[0] if row is not None and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            text = (
                f"the database's schema is version {version}; this release knows "
                f"{SCHEMA_VERSION} and older: upgrade pop3-sansio"
            )
            log.error("PostgreSQL storage: %s", text)
            raise MaildropError(text)
        if version == SCHEMA_VERSION:
            return version  # another process was first
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute("DELETE FROM pop3_schema")
        conn.execute("INSERT INTO pop3_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
    log.info("PostgreSQL schema at version %d (was %d)", SCHEMA_VERSION, version)
    return SCHEMA_VERSION


def _reason(exc: BaseException) -> str:
    """The first line of a database error: no query, no parameters."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _LeaseKeeper:
    """Renews the leases of one process's open sessions, and deletes those given back.

    A thread of its own, started with the first session: it serves every binding alike
    (asyncio, trio, threads), and ``release()`` only hands a lease over to it, so that a
    session closing on an event loop's thread never waits for the database.
    """

    def __init__(self, runtime: _Runtime, lease_seconds: float) -> None:
        self._runtime = runtime
        self._lease = lease_seconds
        self._interval = lease_seconds / 3
        self._live: set[uuid.UUID] = set()
        self._released: set[uuid.UUID] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def hold(self, session: uuid.UUID) -> None:
        """Keep renewing ``session``'s lease until it is released."""
        with self._cond:
            self._live.add(session)
            self._start()

    def release(self, session: uuid.UUID, *, deleted: bool = False) -> None:
        """Stop renewing ``session``'s lease and delete it soon, unless ``deleted`` already.

        Never blocks on the database.
        """
        with self._cond:
            self._live.discard(session)
            if not deleted:
                self._released.add(session)
                self._start()
                self._cond.notify()

    def _start(self) -> None:
        """Start the thread if it is not running (with ``_cond`` held)."""
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="pop3-lease-keeper", daemon=True)
            self._thread.start()

    def pending(self) -> list[uuid.UUID]:
        """The leases released but not yet deleted."""
        with self._cond:
            return list(self._released)

    def stop(self) -> None:
        """Stop the thread, then delete every lease still held (best effort)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._cond:
            sessions = list(self._live | self._released)
            self._live.clear()
            self._released.clear()
        if sessions:
            with contextlib.suppress(MaildropError), self._runtime.connection() as conn:
                conn.execute(_RELEASE, (sessions,))

    def _run(self) -> None:
        due = time.monotonic() + self._interval
        while True:
            with self._cond:
                while not self._stopping and not self._released:
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping:
                    return
                released = list(self._released)
                renew = time.monotonic() >= due
                live = list(self._live) if renew else []
            try:
                self._once(released, live)
            except MaildropError as exc:
                log.debug("lease keeper: %s; retrying", exc)  # reported by connection()
                with self._cond:
                    # Not at once: the pool waited its timeout already, or the database
                    # refused; a release waits for the next try, as renewals do.
                    self._cond.wait(min(1.0, self._interval))
                continue
            if renew:
                due = time.monotonic() + self._interval

    def _once(self, released: list[uuid.UUID], live: list[uuid.UUID]) -> None:
        with self._runtime.connection() as conn:
            if released:
                conn.execute(_RELEASE, (released,))
                with self._cond:
                    self._released.difference_update(released)
            if live:
                rows = conn.execute(_RENEW, (self._lease, live)).fetchall()
                lost = set(live) - {row[0] for row in rows}
                if lost:
                    # Expired (the database was out of reach for a whole lease): those
                    # sessions can no longer delete anything (_COMMIT); they end at QUIT.
                    with self._cond:
                        lost &= self._live
                        self._live -= lost
                    if lost:
                        log.warning("%d session lease(s) expired before renewal", len(lost))


class _PostgresMaildrop(Maildrop):
    def __init__(
        self,
        runtime: _Runtime,
        mailbox: str,
        session: uuid.UUID,
        rows: list[tuple[Any, ...]],
    ) -> None:
        super().__init__(MessageInfo(int(row[2]), str(row[1])) for row in rows)
        self._runtime = runtime
        self._mailbox = mailbox
        self._session = session
        self._ids: list[int] = [int(row[0]) for row in rows]
        self._chunks: list[int] = [int(row[3]) for row in rows]
        self._removed: set[int] = set()
        self._lease_released = False

    def _read(self, index: int, chunk_size: int) -> Iterator[bytes]:
        if index in self._removed or self._lease_released:
            raise MaildropError("the message has been removed")
        reader = _ChunkReader(self._runtime, self._ids[index], self._chunks[index], chunk_size)
        reader.fetch()  # a message that cannot be read fails here, as read() promises
        return reader

    def _commit(self, indexes: list[int]) -> set[int]:
        todo = [index for index in indexes if index not in self._removed]
        if not todo:
            return set()
        if self._lease_released:
            raise MaildropError("the maildrop was committed already: its lease is released")
        ids = [self._ids[index] for index in todo]
        params = {"mailbox": self._mailbox, "session": self._session, "ids": ids}
        with self._runtime.connection() as conn:
            # Fencing: only the lease's holder deletes, and only while the lease holds.
            # The UPDATE state ends the session (RFC 1939 section 6): the lease goes with
            # the deletions, so the next login anywhere finds the maildrop free at once.
            row = conn.execute(_COMMIT, params).fetchone()
        if row is None or not row[0]:
            raise MaildropError("the maildrop's lease was lost: nothing deleted")
        self._lease_released = True
        self._runtime.keeper.release(self._session, deleted=True)
        self._removed.update(todo)
        return set()

    def _close(self) -> None:
        if not self._lease_released:
            self._runtime.keeper.release(self._session)


class _ChunkReader(Iterator[bytes]):
    """A stored message, ``chunk_size`` octets at a time, fetched rows at a time as needed.

    Each fetch takes a pooled connection for one query, so a client reading slowly holds
    no connection. The first fetches the rows of one ``chunk_size``, each next one twice
    as many, up to ``_READ_AHEAD`` rows: a small message costs one query of one row, a
    big one a query per 512 KiB (a query per row made a 50 MB RETR twice as slow), and a
    reader holds at most that much (or one ``chunk_size``, if larger).
    """

    def __init__(self, runtime: _Runtime, message_id: int, chunks: int, chunk_size: int) -> None:
        self._runtime = runtime
        self._message_id = message_id
        self._chunks = chunks
        self._chunk_size = chunk_size
        self._rows_per_fetch = max(1, -(-chunk_size // STORE_CHUNK))
        self._most_rows = max(self._rows_per_fetch, _READ_AHEAD)
        self._next = 0  # the next row to fetch
        self._buffer: list[bytes] = []
        self._data = b""
        self._pos = 0

    def fetch(self) -> bool:
        """Fetch the next rows; ``False`` at the end of the message."""
        if self._next >= self._chunks:
            return False
        with self._runtime.connection() as conn:
            # Binary: bytea as text would be hex, twice the octets on the wire.
            rows = conn.execute(
                _READ, (self._message_id, self._next, self._rows_per_fetch), binary=True
            ).fetchall()
        if not rows or rows[0][0] != self._next:
            raise MaildropError("the message no longer exists")
        for seq, data in rows:
            if seq != self._next:
                raise MaildropError("the message is incomplete")
            self._buffer.append(bytes(data))
            self._next += 1
        self._rows_per_fetch = min(2 * self._rows_per_fetch, self._most_rows)
        return True

    def __next__(self) -> bytes:
        while self._pos >= len(self._data):
            if self._buffer:
                self._data, self._pos = self._buffer.pop(0), 0
            elif not self.fetch():
                raise StopIteration
        end = self._pos + self._chunk_size
        whole = self._pos == 0 and end >= len(self._data)
        out = self._data if whole else self._data[self._pos : end]
        self._pos = end
        return out
