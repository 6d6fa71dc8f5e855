"""Maildir storage: the standard library ``mailbox.Maildir`` layout (tmp/ new/ cur/).

A message file is ``<unique>[,<tag>=<value>...][:2,<flags>]``; other programs
move it from new/ to cur/ and rename it when flags change, but the unique part
stays, so it is what the unique id (RFC 1939 section 7) is made from.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pop3_sansio import MessageInfo, message_size

from ._base import (
    FILE_LOCKS,
    FileChunks,
    Maildrop,
    MaildropError,
    MaildropLocked,
    Storage,
    fsync_directory,
    hashed_uid,
    is_valid_uid,
    make_unique,
    user_path,
)

__all__ = ["LOCK_FILE", "SIZE_CACHE", "MaildirStorage"]

LOCK_FILE = ".pop3-sansio.lock"
"""Held with ``flock`` for a whole session (RFC 1939 section 4 exclusive-access lock)."""

SIZE_CACHE = "pop3-sansio.sizes"
"""Remembers measured CRLF sizes, so a big maildrop is read once, not at every login."""

_CACHE_HEADER = "pop3-sansio sizes 1\n"
_SUBDIRS = ("new", "cur")  # scanned in this order: a message moved meanwhile is kept from cur/
_VSIZE = re.compile(r",W=([0-9]{1,20})(?=[,:]|\Z)")  # Dovecot's virtual (CRLF) size
_TIME = re.compile(r"([0-9]{1,20})\.")  # "<seconds>.<...>": the delivery time
_NUMBER = re.compile(r"[0-9]{1,20}\Z")
_MEASURE_CHUNK = 1 << 16


@dataclass
class _File:
    subdir: str
    name: str
    unique: str
    uid: str  # the unique id before make_unique


def _unique_part(name: str) -> str:
    """The name up to the first "," (tags such as S= W=) or ":" (the info part)."""
    return name.partition(",")[0].partition(":")[0]


def _base_uid(unique: str) -> str:
    # The unique part itself when it is a valid id, else a digest of it: a
    # file name may hold any byte but "/" and NUL (RFC 1939 section 7 limits).
    if is_valid_uid(unique):
        return unique
    return hashed_uid(os.fsencode(unique))


class MaildirStorage(Storage):
    """Maildir storage.

    ``per_user=False``: ``root`` is the one Maildir served for every user;
    ``per_user=True``: ``root/<username>`` is each user's Maildir. With
    ``create`` a missing Maildir (and its tmp/ new/ cur/) is created.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, per_user: bool = False, create: bool = True
    ) -> None:
        self.root = os.fspath(root)
        self.per_user = per_user
        self.create = create

    def __repr__(self) -> str:
        return f"MaildirStorage({self.root!r}, per_user={self.per_user})"

    def path(self, username: str) -> str:
        """The Maildir serving ``username``; ``MaildropError`` for an unusable name."""
        return user_path(self.root, username) if self.per_user else self.root

    def open(self, username: str) -> Maildrop:
        """Lock and snapshot ``username``'s Maildir; see ``Storage.open``."""
        path = self.path(username)
        try:
            if self.create:
                for sub in ("tmp", "new", "cur"):
                    os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
            key = ("maildir", os.path.realpath(path))
        except OSError as exc:
            raise MaildropError("the Maildir could not be created") from exc
        FILE_LOCKS.acquire(key)
        try:
            fd = _lock(path)
        except BaseException:
            FILE_LOCKS.release(key)
            raise
        try:
            files, sizes = _snapshot(path)
        except BaseException:
            os.close(fd)
            FILE_LOCKS.release(key)
            raise
        return _MaildirMaildrop(path, key, fd, files, sizes)


def _lock(path: str) -> int:
    """Open the lock file and ``flock`` it; the descriptor holds the lock."""
    try:
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise MaildropError("the Maildir's lock file could not be opened") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MaildropLocked("the Maildir is in use by another session") from None
    except OSError as exc:
        os.close(fd)
        raise MaildropError("the Maildir could not be locked") from exc
    return fd


def _scan(path: str) -> dict[str, tuple[str, os.DirEntry[str]]]:
    """The message files in new/ and cur/: ``{unique part: (subdir, entry)}``."""
    found: dict[str, tuple[str, os.DirEntry[str]]] = {}
    for sub in _SUBDIRS:
        with os.scandir(os.path.join(path, sub)) as entries:
            for entry in entries:
                # Names starting with "." are not messages (mailbox.Maildir
                # skips them too); nor is anything but a regular file.
                if not entry.name.startswith(".") and entry.is_file():
                    found[_unique_part(entry.name)] = (sub, entry)
    return found


def _snapshot(path: str) -> tuple[list[_File], list[int]]:
    """The messages present now, oldest first, and their CRLF sizes."""
    try:
        found = _scan(path)
    except OSError as exc:
        raise MaildropError("the Maildir could not be listed") from exc
    cache = _read_cache(path)
    new_cache: dict[str, tuple[int, int, int]] = {}
    rows: list[tuple[int, str, _File, int]] = []
    for unique, (subdir, entry) in found.items():
        base = _base_uid(unique)
        vsize = _VSIZE.search(entry.name.partition(":")[0])
        when = _TIME.match(unique)
        try:
            # A stat only when needed: Dovecot's names carry both the
            # delivery time and the size, and then the listing is enough.
            stat = None if vsize and when else entry.stat()
            if vsize:
                size = int(vsize.group(1))
            else:
                assert stat is not None
                key = (stat.st_size, stat.st_mtime_ns)
                cached = cache.get(base, (-1, -1, 0))
                size = cached[2] if cached[:2] == key else _measure(entry.path)
                new_cache[base] = (*key, size)
        except FileNotFoundError:
            continue  # removed (or moved) while we listed: not in this snapshot
        except OSError as exc:
            raise MaildropError("a message could not be measured") from exc
        if when:
            seconds = int(when.group(1))
        else:
            assert stat is not None
            seconds = stat.st_mtime_ns // 1_000_000_000
        rows.append((seconds, unique, _File(subdir, entry.name, unique, base), size))
    if new_cache != cache:
        _write_cache(path, new_cache)
    # Oldest first, and the same order at every open (RFC 1939 section 4);
    # unique parts are distinct, so the sort never compares further.
    rows.sort(key=lambda row: row[:2])
    return [row[2] for row in rows], [row[3] for row in rows]


def _measure(path: str) -> int:
    with open(path, "rb") as f:
        return message_size(iter(lambda: f.read(_MEASURE_CHUNK), b""))


def _read_cache(path: str) -> dict[str, tuple[int, int, int]]:
    """``{base uid: (file size, mtime_ns, CRLF size)}``; ``{}`` if absent or corrupt."""
    try:
        with open(os.path.join(path, SIZE_CACHE), encoding="ascii", newline="\n") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith(_CACHE_HEADER) or not text.endswith("\n"):
        return {}
    body = text[len(_CACHE_HEADER) : -1]
    cache: dict[str, tuple[int, int, int]] = {}
    for line in body.split("\n") if body else ():
        fields = line.split(" ")
        if len(fields) != 4 or not all(_NUMBER.match(field) for field in fields[1:]):
            return {}  # corrupt: measure again and rewrite it
        cache[fields[0]] = (int(fields[1]), int(fields[2]), int(fields[3]))
    return cache


def _write_cache(path: str, cache: dict[str, tuple[int, int, int]]) -> None:
    """Replace the cache atomically; a cache that cannot be written is only a lost speed-up."""
    lines = [_CACHE_HEADER]
    lines.extend(f"{uid} {fsize} {mtime} {size}\n" for uid, (fsize, mtime, size) in cache.items())
    target = os.path.join(path, SIZE_CACHE)
    tmp = target + ".tmp"  # one writer at a time: we hold the Maildir's lock
    try:
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    fsync_directory(path)


class _MaildirMaildrop(Maildrop):
    def __init__(
        self, path: str, key: object, fd: int, files: list[_File], sizes: list[int]
    ) -> None:
        uids = make_unique(file.uid for file in files)
        super().__init__(MessageInfo(size, uid) for size, uid in zip(sizes, uids, strict=True))
        self._path = path
        self._key = key
        self._fd = fd
        self._files: list[_File | None] = list(files)  # None: removed by commit

    def _fullpath(self, file: _File) -> str:
        return os.path.join(self._path, file.subdir, file.name)

    def _relocate(self, index: int) -> _File | None:
        """Find message ``index`` again after another program moved or renamed it."""
        old = self._files[index]
        assert old is not None
        for sub in reversed(_SUBDIRS):  # cur/ first: where moved files go
            with os.scandir(os.path.join(self._path, sub)) as entries:
                for entry in entries:
                    if not entry.name.startswith(".") and _unique_part(entry.name) == old.unique:
                        file = self._files[index] = _File(sub, entry.name, old.unique, old.uid)
                        return file
        return None

    def _read(self, index: int, chunk_size: int) -> Iterator[bytes]:
        file = self._files[index]
        if file is None:
            raise MaildropError("the message has been removed")
        try:
            try:
                f = open(self._fullpath(file), "rb")  # noqa: SIM115 - FileChunks closes it
            except FileNotFoundError:
                moved = self._relocate(index)
                if moved is None:
                    raise MaildropError("the message no longer exists") from None
                f = open(self._fullpath(moved), "rb")  # noqa: SIM115
        except OSError as exc:
            raise MaildropError("the message could not be opened") from exc
        return FileChunks(f, chunk_size)

    def _commit(self, indexes: list[int]) -> set[int]:
        failed: set[int] = set()
        for index in indexes:
            file = self._files[index]
            if file is None:
                continue  # removed by an earlier commit
            try:
                try:
                    os.unlink(self._fullpath(file))
                except FileNotFoundError:
                    moved = self._relocate(index)
                    if moved is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self._fullpath(moved))
            except OSError:
                failed.add(index)  # RFC 1939 section 6: reported, the others still go
                continue
            self._files[index] = None
        # An unlink is durable only once its directory is synced.
        for sub in _SUBDIRS:
            fsync_directory(os.path.join(self._path, sub))
        return failed

    def _close(self) -> None:
        try:
            os.close(self._fd)  # closing the descriptor releases the flock
        finally:
            FILE_LOCKS.release(self._key)
