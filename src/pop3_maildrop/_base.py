"""The storage contract every backend meets, and the pieces backends share.

RFC 1939 section 4: a session takes an exclusive-access lock on the maildrop
once it is authenticated, numbers the messages 1..n and notes their sizes at
that moment; section 6: only the UPDATE state removes messages; section 7:
unique ids are persistent across sessions.
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Protocol

from pop3_sansio.server import MaildropError, MaildropLockedError, MessageInfo

__all__ = ["Maildrop", "MaildropError", "MaildropLocked", "Storage", "StorageUnavailableError"]

MAX_UID_LENGTH = 70
"""RFC 1939 section 7: a unique id is 1 to 70 characters in 0x21-0x7E."""


# The errors are the core's, so that the session driver maps them to
# -ERR [SYS/TEMP] and -ERR [IN-USE] whichever storage raised them.
MaildropLocked = MaildropLockedError
"""The core's ``MaildropLockedError``: raise it when another session holds the lock."""


class StorageUnavailableError(MaildropError):
    """The storage cannot be reached now (a database down or overloaded); try again later.

    A ``MaildropError``, so a server answers ``-ERR [SYS/TEMP]``; a delivery
    agent exits with ``EX_TEMPFAIL`` (75) so that the MTA retries.
    """


class Maildrop(abc.ABC):
    """An open, exclusively locked maildrop for ONE session.

    ``messages`` is the snapshot taken at open (RFC 1939 section 4): message
    ``n`` is ``messages[n - 1]``, its ``size`` in CRLF octets (section 11), its
    ``uid`` stable across sessions (section 7). Messages that arrive later are
    not part of it. Use it as a context manager, or call ``close()``.
    """

    messages: tuple[MessageInfo, ...]

    def __init__(self, messages: Iterable[MessageInfo]) -> None:
        self.messages = tuple(messages)
        self._closed = False

    def read(self, msg: int, chunk_size: int = 65536) -> Iterator[bytes]:
        """Stream message ``msg`` (1-based) as stored, in chunks of at most ``chunk_size``.

        Line ends are as stored (LF or CRLF); the caller converts them. The
        file is opened before this returns, so a message that cannot be read
        raises ``MaildropError`` here; a failure while streaming raises it
        from the iterator. ``ValueError`` for a number outside 1..n.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        return self._read(self._index(msg), chunk_size)

    def commit(self, msgs: Sequence[int]) -> list[int]:
        """Remove messages ``msgs`` (1-based) for good (RFC 1939 section 6, UPDATE).

        Returns the numbers that could NOT be removed, in the order given; a
        message that is already gone counts as removed. A crash at any point
        leaves each message either fully present or fully removed. Raises
        ``ValueError`` (before removing anything) for a number outside 1..n,
        ``MaildropError`` once closed.
        """
        order: dict[int, int] = {}
        for msg in msgs:
            order.setdefault(msg, self._index(msg))
        if not order:
            return []
        failed = self._commit(list(order.values()))
        return [msg for msg, index in order.items() if index in failed]

    def close(self) -> None:
        """Release the lock; idempotent. The snapshot cannot be read afterwards."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Maildrop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _index(self, msg: int) -> int:
        if self._closed:
            raise MaildropError("the maildrop is closed")
        if not 1 <= msg <= len(self.messages):
            raise ValueError(f"no message {msg} in a snapshot of {len(self.messages)}")
        return msg - 1

    @abc.abstractmethod
    def _read(self, index: int, chunk_size: int) -> Iterator[bytes]:
        """Open message ``index`` (0-based); raise ``MaildropError`` if it cannot be."""

    @abc.abstractmethod
    def _commit(self, indexes: list[int]) -> set[int]:
        """Remove these (0-based, distinct); return the indexes NOT removed."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the lock (called once)."""


class Storage(abc.ABC):
    """Where the maildrops live; ``open`` locks one for a session."""

    @abc.abstractmethod
    def open(self, username: str) -> Maildrop:
        """Open and lock ``username``'s maildrop.

        Raises ``MaildropLocked`` if another session holds it, ``MaildropError``
        if it cannot be opened. The caller must ``close()`` the result.
        """

    def close(self) -> None:  # noqa: B027 - optional: most storage holds nothing open
        """Release what the storage holds open (a pool of connections); idempotent."""


# --- shared helpers ---------------------------------------------------------------


class LockRegistry:
    """Keys held by sessions of this process (thread-safe).

    File locks alone are not enough inside one process: POSIX ``lockf`` locks
    (mbox) belong to the process, so a second session would get the lock
    again, and closing any descriptor of the file drops it. The registry is
    checked before a backend touches the file at all.
    """

    def __init__(self) -> None:
        self._held: set[object] = set()
        self._mutex = threading.Lock()

    def acquire(self, key: object) -> None:
        """Take ``key`` or raise ``MaildropLocked``."""
        with self._mutex:
            if key in self._held:
                raise MaildropLocked("the maildrop is in use by another session")
            self._held.add(key)

    def release(self, key: object) -> None:
        """Give ``key`` back (it must be held)."""
        with self._mutex:
            self._held.discard(key)


FILE_LOCKS = LockRegistry()
"""The registry the file backends share, keyed by ``(backend, real path)``."""


class ReadableFile(Protocol):
    """What ``FileChunks`` reads: a binary file, or ``mailbox``'s partial file."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class FileChunks(Iterator[bytes]):
    """Reads an open binary file in chunks and closes it at the end.

    A class rather than a generator so that an iterator dropped before its
    first ``next()`` still closes its file (``close()`` or garbage collection).
    """

    def __init__(self, file: ReadableFile, chunk_size: int) -> None:
        self._file: ReadableFile | None = file
        self._chunk_size = chunk_size

    def __next__(self) -> bytes:
        if self._file is None:
            raise StopIteration
        try:
            chunk = self._file.read(self._chunk_size)
        except (OSError, ValueError) as exc:  # ValueError: a file closed under us
            self.close()
            raise MaildropError("the message could not be read") from exc
        if not chunk:
            self.close()
            raise StopIteration
        return bytes(chunk)

    def close(self) -> None:
        """Close the file; the iterator is then exhausted."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __del__(self) -> None:
        self.close()


def hashed_uid(data: bytes) -> str:
    """A unique id made from ``data``: 40 lower-case hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:40]


_VALID_UID = re.compile(rf"[\x21-\x7e]{{1,{MAX_UID_LENGTH}}}\Z")


def is_valid_uid(uid: str) -> bool:
    """RFC 1939 section 7: 1-70 characters, each in 0x21-0x7E."""
    return _VALID_UID.match(uid) is not None


def make_unique(bases: Iterable[str]) -> list[str]:
    """Each base id, with ``.<n>`` added to the n-th repeat so that all differ.

    RFC 1939 section 7 requires unique ids within a maildrop; the suffix keeps
    them within 70 characters by shortening a long base.
    """
    seen: set[str] = set()
    counts: dict[str, int] = {}
    out: list[str] = []
    for base in bases:
        uid = base
        n = counts.get(base, 1)
        while uid in seen:
            n += 1
            uid = f"{base[:60]}.{n}"
        counts[base] = n
        seen.add(uid)
        out.append(uid)
    return out


def user_path(root: str, username: str) -> str:
    """``root/username``, refusing names that could leave ``root``."""
    if (
        not username
        or username.startswith(".")
        or ".." in username
        or "\0" in username
        or "/" in username
        or (os.altsep is not None and os.altsep in username)
    ):
        raise MaildropError("unusable user name for a per-user maildrop")
    return os.path.join(root, username)


def fsync_directory(path: str) -> None:
    """Make renames and unlinks in ``path`` durable; best effort.

    A failing directory fsync cannot undo the rename or unlink it was meant to
    persist, so it is not reported as a failure of that operation.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
