"""mbox storage through the standard library's ``mailbox.mbox``.

The session holds ``mailbox``'s own lock (``lockf`` plus a ``.lock`` dot-lock
file), which mail delivery agents honour, for its whole length (RFC 1939
section 4). Removal rewrites the file to a temporary one and renames it over
the original, so a crash leaves either the old or the new mailbox.

The mbox file is never reached through a symbolic link: the server may read
what its user may not. A link as the mbox or as its dot-lock refuses the
maildrop. ``mailbox`` makes its temporary files with ``O_EXCL`` and its dot-lock
with ``link()``, neither of which follows a link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import mailbox
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator

from pop3_sansio.codec import message_size
from pop3_sansio.server import MessageInfo

from ._base import (
    FILE_LOCKS,
    FileChunks,
    Maildrop,
    MaildropError,
    MaildropLocked,
    ReadableFile,
    Storage,
    fsync_directory,
    is_valid_uid,
    make_unique,
    user_path,
)

__all__ = ["MboxStorage"]

log = logging.getLogger("pop3.maildrop")

_HEADER_LIMIT = 1 << 16  # X-UIDL is looked for in the first 64 KiB of the headers
_MEASURE_CHUNK = 1 << 16
_X_UIDL = re.compile(rb"^x-uidl:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_END_OF_HEADERS = re.compile(rb"\n\r?\n")


class MboxStorage(Storage):
    """mbox storage: ``path`` is the one mbox file, or with ``per_user`` the
    directory holding ``path/<username>``. With ``create`` a missing file is
    created empty (``mailbox.mbox`` does that).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, per_user: bool = False, create: bool = True
    ) -> None:
        self.root = os.fspath(path)
        self.per_user = per_user
        self.create = create

    def __repr__(self) -> str:
        return f"MboxStorage({self.root!r}, per_user={self.per_user})"

    def path(self, username: str) -> str:
        """The mbox file serving ``username``; ``MaildropError`` for an unusable name."""
        return user_path(self.root, username) if self.per_user else self.root

    def open(self, username: str) -> Maildrop:
        """Lock and snapshot ``username``'s mbox; see ``Storage.open``."""
        path = self.path(username)
        key = ("mbox", os.path.realpath(path))
        # The registry first: opening the file in this process while another
        # session holds its lockf lock would drop that lock when closed.
        FILE_LOCKS.acquire(key)
        try:
            box = _open_locked(path, self.create)
        except BaseException:
            FILE_LOCKS.release(key)
            raise
        try:
            keys = list(box.keys())
            infos = [_measure(box.get_file(k)) for k in keys]
        except (OSError, mailbox.Error) as exc:
            _close_quietly(box)
            FILE_LOCKS.release(key)
            raise MaildropError("the mbox could not be read") from exc
        return _MboxMaildrop(path, key, box, keys, infos)


def _open_locked(path: str, create: bool) -> mailbox.mbox:
    expected = _regular_file(path, create)
    try:
        # mailbox opens the path again (by name); it must be the file
        # checked above, and create=False: a missing file is not made here.
        box = mailbox.mbox(path, create=False)
    except (OSError, mailbox.Error) as exc:
        raise MaildropError("the mbox could not be opened") from exc
    try:
        # The file mailbox holds, not the name: the name may have been
        # swapped for a link since the check.
        opened = os.fstat(box.__dict__["_file"].fileno())
        lock_is_link = _is_link(path + ".lock")
    except OSError as exc:
        _close_quietly(box)
        raise MaildropError("the mbox could not be opened") from exc
    if (opened.st_dev, opened.st_ino) != expected:
        _close_quietly(box)
        raise MaildropError("the mbox was replaced while it was opened")
    if lock_is_link:
        # link() would fail on it and the mbox would look locked for ever: say why.
        _close_quietly(box)
        raise _refuse_link(path + ".lock", "dot-lock")
    try:
        box.lock()
    except mailbox.ExternalClashError:
        _close_quietly(box)
        raise MaildropLocked("the mbox is locked by another program") from None
    except OSError as exc:
        _close_quietly(box)
        raise MaildropError("the mbox could not be locked") from exc
    return box


def _refuse_link(path: str, what: str) -> MaildropError:
    log.warning("mbox %r: the %s is a symbolic link: refused", path, what)
    return MaildropError(f"the mbox's {what} is a symbolic link")


def _is_link(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _regular_file(path: str, create: bool) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of the mbox file, made empty if missing and ``create``.

    Opened with ``O_NOFOLLOW``: a link (even to nowhere, which mailbox would
    create through) is refused. ``O_NONBLOCK``: a FIFO cannot block the open.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: the BSDs' O_NOFOLLOW
            raise _refuse_link(path, "file") from None
        raise MaildropError("the mbox could not be opened") from exc
    try:
        info = os.fstat(fd)
    finally:
        # Closed before the lockf lock is taken: closing any descriptor of
        # the file would drop that lock.
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise MaildropError("the mbox is not a regular file")
    return info.st_dev, info.st_ino


def _close_quietly(box: mailbox.mbox) -> None:
    """Unlock and close; on the way out an error here cannot be acted on."""
    with contextlib.suppress(OSError, ValueError, mailbox.Error):
        box.close()


def _measure(file: ReadableFile) -> tuple[int, str | None, str]:
    """(CRLF size, X-UIDL or None, SHA-256 hex) of one message, read in chunks."""
    digest = hashlib.sha256()
    head = bytearray()

    def chunks() -> Iterator[bytes]:
        while chunk := file.read(_MEASURE_CHUNK):
            digest.update(chunk)
            if len(head) < _HEADER_LIMIT:
                head.extend(chunk[: _HEADER_LIMIT - len(head)])
            yield chunk

    try:
        size = message_size(chunks())
    finally:
        file.close()
    return size, _x_uidl(bytes(head)), digest.hexdigest()


def _x_uidl(head: bytes) -> str | None:
    """The first X-UIDL header's value if it is a valid unique id (RFC 1939 section 7)."""
    end = _END_OF_HEADERS.search(head)
    if end is not None:
        head = head[: end.start() + 1]
    match = _X_UIDL.search(head)
    if match is None:
        return None
    value = match.group(1).decode("latin-1")
    return value if is_valid_uid(value) else None


def _uids(infos: list[tuple[int, str | None, str]]) -> list[str]:
    # An X-UIDL shared by two messages is no unique id: those fall back to the
    # digest, like messages without one. Identical messages share a digest and
    # get an occurrence suffix (make_unique).
    counts = Counter(x_uidl for _, x_uidl, _ in infos if x_uidl is not None)
    return make_unique(
        x_uidl if x_uidl is not None and counts[x_uidl] == 1 else digest[:40]
        for _, x_uidl, digest in infos
    )


class _MboxMaildrop(Maildrop):
    def __init__(
        self,
        path: str,
        key: object,
        box: mailbox.mbox,
        keys: list[str],
        infos: list[tuple[int, str | None, str]],
    ) -> None:
        uids = _uids(infos)
        super().__init__(MessageInfo(info[0], uid) for info, uid in zip(infos, uids, strict=True))
        self._path = path
        self._key = key
        self._box = box
        self._keys = keys
        self._flush_failed = False

    def _read(self, index: int, chunk_size: int) -> Iterator[bytes]:
        try:
            file = self._box.get_file(self._keys[index])
        except KeyError:
            raise MaildropError("the message has been removed") from None
        except (OSError, ValueError) as exc:
            raise MaildropError("the message could not be read") from exc
        return FileChunks(file, chunk_size)

    def _commit(self, indexes: list[int]) -> set[int]:
        if self._flush_failed:
            # The mailbox object already dropped those messages from its
            # table; only a successful rewrite would remove them from disk.
            return set(indexes)
        removed: set[int] = set()
        for index in indexes:
            try:
                self._box.remove(self._keys[index])
            except KeyError:
                continue  # already removed: counts as removed
            removed.add(index)
        try:
            self._box.flush()  # writes a new file and renames it over the old one
        except (OSError, ValueError, mailbox.Error):
            self._flush_failed = True
            return removed
        fsync_directory(os.path.dirname(os.path.abspath(self._path)))
        return set()

    def _close(self) -> None:
        try:
            _close_quietly(self._box)
        finally:
            FILE_LOCKS.release(self._key)
