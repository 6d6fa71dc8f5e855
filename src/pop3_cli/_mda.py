"""``pop3 deliver``: one message from standard input into a maildrop in PostgreSQL.

A mail transfer agent runs this once per message (Postfix's ``mailbox_command``,
an Exim pipe transport, fetchmail's ``mda``) and reads only its exit status,
in the sysexits.h convention: 0 means the message is committed, 75
(EX_TEMPFAIL) keeps it queued for a retry, the 6x codes bounce it. So every
failure maps to one of them, and nothing is left half stored: the storage
commits a message in one transaction, at the end.

Start-up stays light (the MTA pays it for every message): this module imports
the storage and psycopg, never a server, SASL or another command's module
(psycopg itself imports asyncio, for its async classes; tests/test_packaging.py).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from ._errors import CliError, UsageError

if TYPE_CHECKING:
    from pop3_maildrop import PostgresStorage

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_IOERR",
    "EX_NOUSER",
    "EX_TEMPFAIL",
    "EnvelopeStripped",
    "SysexitError",
    "open_postgres",
    "run_deliver",
]

# sysexits.h (the values every MTA knows)
EX_DATAERR = 65
EX_NOUSER = 67
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78

log = logging.getLogger("pop3.deliver")

_FROM_LINE_LIMIT = 1 << 16
"""Longest first line looked at as a possible ``From `` envelope line."""


class SysexitError(CliError):
    """A failure with a sysexits.h exit code (one line on stderr, as any ``CliError``)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InputError(Exception):
    """Reading the message failed (an ``OSError`` of standard input)."""


class EnvelopeStripped:
    """A message stream without its leading mbox ``From `` envelope line, if it has one.

    Postfix's local(8) puts ``From sender date`` before the message it pipes
    to ``mailbox_command`` (and Exim's pipe transport does by default). A
    header field name cannot contain a space (RFC 5322 section 2.2), so a first
    line starting with ``From `` is that envelope line, never a header; it is
    dropped. Everything else passes unchanged, in ``read(size)`` chunks.
    ``OSError`` while reading becomes ``InputError``.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.octets = 0
        first = self._read_line()
        if first.startswith(b"From ") and first.endswith(b"\n"):
            self._head = self._read_line()  # so that ``empty`` tells the truth
        else:
            self._head = first

    def _read_line(self) -> bytes:
        try:
            return self._stream.readline(_FROM_LINE_LIMIT)
        except OSError as exc:
            raise InputError(exc.strerror or str(exc)) from None

    def __iter__(self) -> Iterator[bytes]:
        """The message in chunks of up to 64 KiB (an ``Iterable[bytes]`` for ``deliver``)."""
        while chunk := self.read(1 << 16):
            yield chunk

    @property
    def empty(self) -> bool:
        """Whether there is no message at all (nothing but, at most, an envelope line)."""
        return not self._head

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` octets (all the rest if negative); ``b""`` at the end."""
        if self._head:
            if size < 0 or size >= len(self._head):
                data, self._head = self._head, b""
                if size < 0:
                    data += self._read(-1)
            else:
                data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._read(size)
        self.octets += len(data)
        return data

    def _read(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except OSError as exc:
            raise InputError(exc.strerror or str(exc)) from None


def open_postgres(url: str, **options: int | float) -> PostgresStorage:
    """``PostgresStorage(url, **options)``, psycopg imported now.

    ``CliError`` if psycopg is not installed, ``UsageError`` for a URL that is
    not a PostgreSQL one (the message shows no password).
    """
    if not url.startswith(("postgresql:", "postgres:")) and "=" not in url:
        raise UsageError("--storage takes a postgresql://... URL or a libpq connection string")
    try:
        from pop3_maildrop import PostgresStorage

        return PostgresStorage(url, **options)  # type: ignore[arg-type]
    except ImportError as exc:  # psycopg (the extra) is imported by the backend
        raise CliError(
            f"PostgreSQL storage needs psycopg: pip install 'pop3-sansio[postgresql]' ({exc})"
        ) from None
    except ValueError as exc:
        raise UsageError(f"--storage: {exc}") from None


def _check_user(name: str, users_file: str | None) -> None:
    if users_file is None:
        return
    from pop3_maildrop import UserDB

    from ._secretfile import read_secret_file

    try:
        text = read_secret_file(users_file, "the users file", private=False)
        users = UserDB.parse(text, source=users_file)
    except CliError as exc:
        raise SysexitError(str(exc), EX_CONFIG) from None
    except ValueError as exc:
        raise SysexitError(str(exc), EX_CONFIG) from None
    if name not in users:
        raise SysexitError(f"no such user: {name!r} is not in {users_file}", EX_NOUSER)


def run_deliver(args: argparse.Namespace) -> int:
    """``pop3 deliver``: store standard input for ``--user``; 0 once committed."""
    import sys

    from pop3_maildrop import MaildropError, StorageUnavailableError

    if args.verbose <= args.quiet:
        # One line on failure, nothing on success (an MTA may mail whatever it prints):
        # the storage's own warnings say again what that line says. -v shows them.
        logging.getLogger("pop3").setLevel(logging.ERROR)
    # psycopg_pool logs each failed connection attempt; the one line of a failure is ours.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    _check_user(args.user, args.users)
    try:
        message = EnvelopeStripped(sys.stdin.buffer)
    except InputError as exc:
        raise SysexitError(f"cannot read the message: {exc}", EX_IOERR) from None
    if message.empty:
        raise SysexitError("no message on standard input", EX_DATAERR)
    try:
        storage = open_postgres(args.storage, pool_min=0, pool_max=1, timeout=args.storage_timeout)
    except UsageError:
        raise
    except CliError as exc:  # psycopg missing: the installation, not the message
        raise SysexitError(str(exc), EX_CONFIG) from None
    try:
        uid = storage.deliver(args.user, message)
    except InputError as exc:
        raise SysexitError(f"cannot read the message: {exc}", EX_IOERR) from None
    except StorageUnavailableError as exc:
        raise SysexitError(f"database unavailable, try again later: {exc}", EX_TEMPFAIL) from None
    except MaildropError as exc:
        raise SysexitError(f"not stored, try again later: {exc}", EX_TEMPFAIL) from None
    except Exception as exc:
        # Not committed, for a reason not foreseen: the MTA keeps the message and
        # retries (exit 1 would make it bounce).
        raise SysexitError(
            f"not stored, try again later: {type(exc).__name__}: {exc}", EX_TEMPFAIL
        ) from exc
    finally:
        storage.close()
    log.debug("stored %d octets for %s as %s", message.octets, args.user, uid)
    return 0
