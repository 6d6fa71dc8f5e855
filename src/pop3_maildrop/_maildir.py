"""Maildir storage: the standard library ``mailbox.Maildir`` layout (tmp/ new/ cur/).

A message file is ``<unique>[,<tag>=<value>...][:2,<flags>]``; other programs
move it from new/ to cur/ and rename it when flags change, but the unique part
stays, so it is what the unique id (RFC 1939 section 7) is made from.

The user may write to her Maildir, the server may read more than she may: so
nothing inside the Maildir is reached through a symbolic link. The Maildir
itself is opened once (its path is the operator's, and may be a link); new/,
cur/, the lock, the size cache and every message are opened relative to its
descriptor with ``O_NOFOLLOW``. A link where a message would be is skipped and
logged; a link for new/, cur/ or the lock refuses the whole Maildir.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from pop3_sansio.codec import message_size
from pop3_sansio.server import MessageInfo

from ._base import (
    FILE_LOCKS,
    MAX_UID_LENGTH,
    FileChunks,
    Maildrop,
    MaildropError,
    MaildropLocked,
    Storage,
    hashed_uid,
    is_valid_uid,
    make_unique,
    user_path,
)

__all__ = ["LOCK_FILE", "SIZE_CACHE", "MaildirStorage"]

log = logging.getLogger("pop3.maildrop")

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
_DIGEST_LENGTH = 16  # hex digits of a twin's content digest in its unique id

# O_NOFOLLOW: a link is refused (ELOOP), never followed. O_NONBLOCK: a FIFO
# put where a file was cannot block the open; it is refused after the fstat.
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_O_LOCK = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _NotAFileError(OSError):
    """The name is a symbolic link or not a regular file: never opened as one."""


class _LinkError(_NotAFileError):
    """The name is a symbolic link."""


@dataclass
class _File:
    subdir: str
    name: str
    unique: str
    uid: str  # the unique id before make_unique
    inode: int  # tells apart files that share a unique part, and survives renames


def _unique_part(name: str) -> str:
    """The name up to the first "," (tags such as S= W=) or ":" (the info part)."""
    return name.partition(",")[0].partition(":")[0]


def _base_uid(unique: str) -> str:
    # The unique part itself when it is a valid id, else a digest of it: a
    # file name may hold any byte but "/" and NUL (RFC 1939 section 7 limits).
    if is_valid_uid(unique):
        return unique
    return hashed_uid(os.fsencode(unique))


def _twin_uid(base: str, content_digest: str) -> str:
    """The id of a file whose unique part another file already has: base plus content digest.

    Content, not name: the two may differ only in their directory and flags,
    which change when a reader moves or flags a message. At most 70 characters.
    """
    digest = content_digest[:_DIGEST_LENGTH]
    return f"{base[: MAX_UID_LENGTH - _DIGEST_LENGTH - 1]}-{digest}"


def _open_file(dir_fd: int, name: str, flags: int = _O_READ, mode: int = 0o600) -> int:
    """Open ``name`` in directory ``dir_fd`` without following a link.

    ``_LinkError`` for a symbolic link, ``_NotAFileError`` for anything else but a regular file.
    """
    try:
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: the BSDs' O_NOFOLLOW
            raise _LinkError(exc.errno, "a symbolic link", name) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotAFileError(errno.EINVAL, "not a regular file", name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsync_quietly(fd: int) -> None:
    # Best effort: a failing fsync cannot undo the rename or unlink it persists.
    with contextlib.suppress(OSError):
        os.fsync(fd)


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
                os.makedirs(path, mode=0o700, exist_ok=True)
            # The Maildir's own path may be a link (the operator chose it, a
            # user cannot change it); nothing inside it is followed.
            root_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            info = os.fstat(root_fd)
        except OSError as exc:
            raise MaildropError("the Maildir could not be opened") from exc
        key = ("maildir", info.st_dev, info.st_ino)
        try:
            FILE_LOCKS.acquire(key)
        except BaseException:
            os.close(root_fd)
            raise
        fds: list[int] = []
        try:
            fds.append(_lock(path, root_fd))
            if self.create:
                _create_subdirs(root_fd)
            dirs: dict[str, int] = {}
            for sub in _SUBDIRS:
                dirs[sub] = _open_subdir(path, root_fd, sub)
                fds.append(dirs[sub])
            files, sizes = _snapshot(path, root_fd, dirs)
        except BaseException:
            for fd in fds:
                os.close(fd)  # the lock file's descriptor: releases the flock
            os.close(root_fd)
            FILE_LOCKS.release(key)
            raise
        return _MaildirMaildrop(path, key, root_fd, fds[0], dirs, files, sizes)


def _create_subdirs(root_fd: int) -> None:
    try:
        for sub in ("tmp", *_SUBDIRS):
            with contextlib.suppress(FileExistsError):  # a link there is refused when opened
                os.mkdir(sub, 0o700, dir_fd=root_fd)
    except OSError as exc:
        raise MaildropError("the Maildir could not be created") from exc


def _refuse_link(path: str, name: str, what: str) -> MaildropError:
    log.warning("Maildir %r: %s %r is a symbolic link: refused", path, what, name)
    return MaildropError(f"the Maildir's {what} is a symbolic link")


def _open_subdir(path: str, root_fd: int, sub: str) -> int:
    """new/ or cur/ as a descriptor; a link there refuses the Maildir."""
    try:
        return os.open(sub, _O_DIR, dir_fd=root_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(sub, dir_fd=root_fd).st_mode):
                raise _refuse_link(path, sub, "subdirectory") from None
        raise MaildropError("the Maildir could not be listed") from exc


def _lock(path: str, root_fd: int) -> int:
    """Open the lock file and ``flock`` it; the descriptor holds the lock."""
    try:
        # O_CREAT with O_NOFOLLOW: a planted link (even one to nowhere) is
        # refused, so no file is created or opened anywhere else.
        fd = _open_file(root_fd, LOCK_FILE, _O_LOCK)
    except _LinkError:
        raise _refuse_link(path, LOCK_FILE, "lock file") from None
    except _NotAFileError:
        raise MaildropError("the Maildir's lock file is not a regular file") from None
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


def _scan(path: str, dirs: dict[str, int]) -> dict[str, list[tuple[str, os.DirEntry[str]]]]:
    """The message files in new/ and cur/: ``{unique part: [(subdir, entry), ...]}``."""
    found: dict[str, list[tuple[str, os.DirEntry[str]]]] = {}
    for sub in _SUBDIRS:
        with os.scandir(dirs[sub]) as entries:
            for entry in entries:
                # Names starting with "." are not messages (mailbox.Maildir
                # skips them too); nor is anything but a regular file.
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink():
                    log.warning(
                        "Maildir %r: %s/%r is a symbolic link, not a message: skipped",
                        path,
                        sub,
                        entry.name,
                    )
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                unique = _unique_part(entry.name)
                group = found.get(unique)
                if group is None:
                    found[unique] = [(sub, entry)]
                    continue
                # The same file under both subdirectories was moved from new/
                # to cur/ while we listed: one message, kept from cur/.
                group[:] = [seen for seen in group if seen[1].inode() != entry.inode()]
                group.append((sub, entry))
    return found


def _digest(dir_fd: int, name: str) -> str:
    """The SHA-256 (hex) of a message file's content."""
    digest = hashlib.sha256()
    with open(_open_file(dir_fd, name), "rb") as f:
        while chunk := f.read(_MEASURE_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _twins(
    path: str, dirs: dict[str, int], unique: str, group: list[tuple[str, os.DirEntry[str]]]
) -> list[tuple[str, os.DirEntry[str], str]]:
    """``(subdir, entry, uid)`` for two or more files sharing ``unique``, the first first.

    All are listed, none hides another (a copy put back, a delivery that
    reused a name; RFC 1939 section 7: ids are unique). The oldest by mtime
    keeps the plain id, in every session and after moves and flag changes (a
    rename keeps the mtime); each other gets the plain id and a digest of its
    content, which no move or flag change alters. (Releases before this one
    listed only the ``cur/`` file, under the plain id.)
    """
    base = _base_uid(unique)
    ranked = []
    for sub, entry in group:
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime_ns
        except FileNotFoundError:
            continue  # removed while we listed
        # cur/ before new/ on a tie: the file earlier versions listed.
        ranked.append((mtime, sub != "cur", entry.name, sub, entry))
    ranked.sort(key=lambda row: row[:3])
    out = []
    for n, (_, _, name, sub, entry) in enumerate(ranked):
        if n == 0:
            out.append((sub, entry, base))
            continue
        try:
            twin = _twin_uid(base, _digest(dirs[sub], name))
        except FileNotFoundError:
            continue
        except _NotAFileError:
            continue  # swapped for a link since the listing: not a message
        log.warning(
            "Maildir %r: %s/%r has the unique part of another message: listed as %s",
            path,
            sub,
            name,
            twin,
        )
        out.append((sub, entry, twin))
    return out


def _snapshot(path: str, root_fd: int, dirs: dict[str, int]) -> tuple[list[_File], list[int]]:
    """The messages present now, oldest first, and their CRLF sizes."""
    try:
        # (rank among the files sharing the unique part, unique part, subdir, entry, uid)
        named: list[tuple[int, str, str, os.DirEntry[str], str]] = []
        for unique, group in _scan(path, dirs).items():
            if len(group) == 1:
                named.append((0, unique, *group[0], _base_uid(unique)))
            else:
                twins = _twins(path, dirs, unique, group)
                named.extend((rank, unique, *twin) for rank, twin in enumerate(twins))
    except OSError as exc:
        raise MaildropError("the Maildir could not be listed") from exc
    cache = _read_cache(root_fd)
    new_cache: dict[str, tuple[int, int, int]] = {}
    rows: list[tuple[int, str, int, _File, int]] = []
    for rank, unique, subdir, entry, uid in named:
        vsize = _VSIZE.search(entry.name.partition(":")[0])
        when = _TIME.match(unique)
        try:
            # A stat only when needed: Dovecot's names carry both the
            # delivery time and the size, and then the listing is enough.
            info = None if vsize and when else entry.stat(follow_symlinks=False)
            if vsize:
                size = int(vsize.group(1))
            else:
                assert info is not None
                key = (info.st_size, info.st_mtime_ns)
                cached = cache.get(uid, (-1, -1, 0))
                size = cached[2] if cached[:2] == key else _measure(dirs[subdir], entry.name)
                new_cache[uid] = (*key, size)
        except FileNotFoundError:
            continue  # removed (or moved) while we listed: not in this snapshot
        except _NotAFileError:
            log.warning(
                "Maildir %r: %s/%r is no longer a regular file: skipped", path, subdir, entry.name
            )
            continue
        except OSError as exc:
            raise MaildropError("a message could not be measured") from exc
        if when:
            seconds = int(when.group(1))
        else:
            assert info is not None
            seconds = info.st_mtime_ns // 1_000_000_000
        file = _File(subdir, entry.name, unique, uid, entry.inode())
        rows.append((seconds, unique, rank, file, size))
    if _cache_outdated(cache, new_cache):
        _write_cache(root_fd, new_cache)
    # Oldest first, and the same order at every open (RFC 1939 section 4);
    # a unique part and a rank among the files sharing it name one file, so
    # the sort never compares further.
    rows.sort(key=lambda row: row[:3])
    return [row[3] for row in rows], [row[4] for row in rows]


_CACHE_SLACK = 64
"""Entries of messages gone that the size cache may keep before it is rewritten."""


def _cache_outdated(
    cache: dict[str, tuple[int, int, int]], now: dict[str, tuple[int, int, int]]
) -> bool:
    """Whether the size cache must be rewritten to hold ``now``, this open's sizes.

    Only for a message it lacks or holds for another file, or once the entries of
    messages gone pile up: deleting mail, what most POP3 sessions do, then costs no
    rewrite (and no fsync) at the next login. An entry of a message gone is never
    used again (it is keyed by the file's size and mtime too).
    """
    if any(cache.get(uid) != value for uid, value in now.items()):
        return True
    return len(cache) - len(now) > _CACHE_SLACK


def _measure(dir_fd: int, name: str) -> int:
    """The CRLF size of message file ``name`` in ``dir_fd`` (``_NotAFileError`` for a link)."""
    with open(_open_file(dir_fd, name), "rb") as f:
        return message_size(iter(lambda: f.read(_MEASURE_CHUNK), b""))


def _read_cache(root_fd: int) -> dict[str, tuple[int, int, int]]:
    """``{uid: (file size, mtime_ns, CRLF size)}``; ``{}`` if absent, corrupt or a link."""
    try:
        with open(_open_file(root_fd, SIZE_CACHE), encoding="ascii", newline="\n") as f:
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


def _write_cache(root_fd: int, cache: dict[str, tuple[int, int, int]]) -> None:
    """Replace the cache atomically; a cache that cannot be written is only a lost speed-up."""
    lines = [_CACHE_HEADER]
    lines.extend(f"{uid} {fsize} {mtime} {size}\n" for uid, (fsize, mtime, size) in cache.items())
    tmp = SIZE_CACHE + ".tmp"  # one writer at a time: we hold the Maildir's lock
    try:
        # Whatever has the temporary name (a crash's leftover, a planted
        # link) is removed, not written through: unlink removes a link
        # itself, and O_EXCL creates a new file or fails.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=root_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(
            os.open(tmp, flags, 0o600, dir_fd=root_fd), "w", encoding="ascii", newline="\n"
        ) as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        # rename replaces the entry SIZE_CACHE, a link there included, never its target.
        os.replace(tmp, SIZE_CACHE, src_dir_fd=root_fd, dst_dir_fd=root_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=root_fd)
        return
    _fsync_quietly(root_fd)


class _MaildirMaildrop(Maildrop):
    def __init__(
        self,
        path: str,
        key: object,
        root_fd: int,
        lock_fd: int,
        dirs: dict[str, int],
        files: list[_File],
        sizes: list[int],
    ) -> None:
        uids = make_unique(file.uid for file in files)
        super().__init__(MessageInfo(size, uid) for size, uid in zip(sizes, uids, strict=True))
        self._path = path
        self._key = key
        self._root_fd = root_fd
        self._lock_fd = lock_fd
        self._dirs = dirs  # new/ and cur/ as opened at login: a link put there later is not seen
        self._files: list[_File | None] = list(files)  # None: removed by commit

    def _relocate(self, index: int) -> _File | None:
        """Find message ``index`` again after another program moved or renamed it.

        The inode, not only the unique part, says which file it is: another
        file may share the unique part, and a link has an inode of its own.
        """
        old = self._files[index]
        assert old is not None
        for sub in reversed(_SUBDIRS):  # cur/ first: where moved files go
            with os.scandir(self._dirs[sub]) as entries:
                for entry in entries:
                    if (
                        entry.inode() == old.inode
                        and _unique_part(entry.name) == old.unique
                        and entry.is_file(follow_symlinks=False)
                    ):
                        file = _File(sub, entry.name, old.unique, old.uid, old.inode)
                        self._files[index] = file
                        return file
        return None

    def _read(self, index: int, chunk_size: int) -> Iterator[bytes]:
        file = self._files[index]
        if file is None:
            raise MaildropError("the message has been removed")
        try:
            try:
                fd = _open_file(self._dirs[file.subdir], file.name)
            except FileNotFoundError:
                moved = self._relocate(index)
                if moved is None:
                    raise MaildropError("the message no longer exists") from None
                fd = _open_file(self._dirs[moved.subdir], moved.name)
        except _NotAFileError:
            where = self._files[index] or file  # where it was found again, if it moved
            log.warning(
                "Maildir %r: %s/%r is no longer a regular file: not served",
                self._path,
                where.subdir,
                where.name,
            )
            raise MaildropError("the message is no longer a regular file") from None
        except OSError as exc:
            raise MaildropError("the message could not be opened") from exc
        return FileChunks(open(fd, "rb"), chunk_size)  # FileChunks closes it

    def _commit(self, indexes: list[int]) -> set[int]:
        failed: set[int] = set()
        for index in indexes:
            file = self._files[index]
            if file is None:
                continue  # removed by an earlier commit
            try:
                # unlink on a directory descriptor removes that entry: a link
                # itself, never what it points to, and nothing outside.
                try:
                    os.unlink(file.name, dir_fd=self._dirs[file.subdir])
                except FileNotFoundError:
                    moved = self._relocate(index)
                    if moved is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(moved.name, dir_fd=self._dirs[moved.subdir])
            except OSError:
                failed.add(index)  # RFC 1939 section 6: reported, the others still go
                continue
            self._files[index] = None
        # An unlink is durable only once its directory is synced.
        for sub in _SUBDIRS:
            _fsync_quietly(self._dirs[sub])
        return failed

    def _close(self) -> None:
        try:
            for fd in self._dirs.values():
                os.close(fd)
            os.close(self._root_fd)
            os.close(self._lock_fd)  # closing the descriptor releases the flock
        finally:
            FILE_LOCKS.release(self._key)
