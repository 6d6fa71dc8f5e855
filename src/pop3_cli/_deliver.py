"""Delivering into a Maildir the safe way: tmp/, fsync, rename into new/, fsync new/.

A delivered file's name carries a token derived from the account and the
message's unique id, and the first 128 bits of the SHA-256 of the message as
retrieved: ``<seconds>.M<usec>P<pid>Q<n>X<token>H<digest>.<host>``. Mail
readers keep that unique part when they move a message to cur/ or change its
flags, so a run killed after storing a message but before recording it in the
state file still finds it, and does not download it twice. The token names
the id, not the message: a server may reuse an id for another message, so a
file found by its token counts as that message only if its digest is the
same (``stored_digests``). The digest is in the name because the file's bytes
are not the retrieved ones (LF line ends, added header fields: see
``_mailform``); a file of an older version, named without it, holds the
message exactly as retrieved and is compared by its contents.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from typing import BinaryIO

from ._errors import CliError
from ._mailform import MessageForm

__all__ = ["Delivery", "MaildirWriter", "Staged", "fsync_directory", "message_token"]

_TOKEN_LENGTH = 24
_NAMED_DIGEST_LENGTH = 32
_OURS = re.compile(
    rf"[0-9]+\.M[0-9]+P[0-9]+Q[0-9]+X([0-9a-f]{{{_TOKEN_LENGTH}}})"
    rf"(?:H([0-9a-f]{{{_NAMED_DIGEST_LENGTH}}}))?\."
)


def message_token(account: str, uid: str) -> str:
    """The token naming the file that holds ``uid`` of ``account``."""
    digest = hashlib.sha256(f"{account}\n{uid}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:_TOKEN_LENGTH]


def fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hostname() -> str:
    # The Maildir convention: "/" and ":" cannot appear in the host part.
    name = socket.gethostname() or "localhost"
    return name.replace("/", r"\057").replace(":", r"\072").replace(",", r"\054")


class Staged:
    """A message being written, in its stored form, to the new file ``path``.

    ``write()`` takes the message as retrieved; ``finish()`` ends and syncs the
    file, ``abort()`` removes it. ``error`` makes the one-line error for a
    failed write.
    """

    def __init__(self, path: str, form: MessageForm, error: Callable[[OSError], CliError]) -> None:
        self.path = path
        self._form = form
        self._error = error
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise error(exc) from None
        self._file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        """Take the next chunk of the message as retrieved (stored in its stored form)."""
        try:
            self._file.write(self._form.feed(data))
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    @property
    def size(self) -> int:
        """Octets of the message as retrieved, so far."""
        return self._form.size

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the message as retrieved, so far."""
        return self._form.sha256

    def finish(self) -> None:
        """Write the end of the stored form, sync and close the file."""
        try:
            self._file.write(self._form.end())
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    def abort(self) -> None:
        """Drop the unfinished file."""
        self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class Delivery(Staged):
    """One message being written to tmp/; ``commit()`` moves it into new/."""

    def __init__(self, writer: MaildirWriter, token: str, name: str, form: MessageForm) -> None:
        self._writer = writer
        self.token = token
        self.name = name
        super().__init__(os.path.join(writer.root, "tmp", name), form, writer.error)

    def commit(self) -> str:
        """Sync the file, rename it into new/, sync new/; return its final path."""
        root = self._writer.root
        mark = f"X{self.token}."
        named = self.name.replace(mark, f"X{self.token}H{self.sha256[:_NAMED_DIGEST_LENGTH]}.", 1)
        final = os.path.join(root, "new", named)
        self.finish()
        try:
            os.rename(self.path, final)
            fsync_directory(os.path.join(root, "new"))
        except OSError as exc:
            self.abort()
            raise self._writer.error(exc) from None
        return final


class MaildirWriter:
    """Writes messages into the Maildir ``root`` (created with tmp/ new/ cur/ if missing)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._host = _hostname()
        self._count = 0
        try:
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise self.error(exc) from None

    def error(self, exc: OSError) -> CliError:
        """A one-line error for a failure writing to the Maildir."""
        return CliError(f"cannot write to the Maildir {self.root}: {exc.strerror or exc}")

    def stored_tokens(self) -> set[str]:
        """The tokens of the messages this program stored that are still in new/ or cur/."""
        tokens: set[str] = set()
        for sub in ("new", "cur"):
            try:
                names = os.listdir(os.path.join(self.root, sub))
            except OSError as exc:
                raise self.error(exc) from None
            for name in names:
                match = _OURS.match(name)
                if match is not None:
                    tokens.add(match.group(1))
        return tokens

    def holds(self, token: str, sha256: str) -> bool:
        """Whether a file in new/ or cur/ carries ``token`` and holds the message with ``sha256``.

        A run killed after it stored a message but before it recorded it left
        such a file; new/ and cur/ are synced before this says yes, in case
        that run was stopped before it synced new/ (a power cut would undo
        the rename).
        """
        digests = self.stored_digests(token)
        if sha256 not in digests and sha256[:_NAMED_DIGEST_LENGTH] not in digests:
            return False
        try:
            for sub in ("new", "cur"):
                fsync_directory(os.path.join(self.root, sub))
        except OSError as exc:
            raise self.error(exc) from None
        return True

    def stored_digests(self, token: str) -> set[str]:
        """The digest of each message in new/ or cur/ that carries ``token``.

        From the name (its first 32 hex digits) if it carries one, else the
        hex SHA-256 of the file's bytes (an older version's file, stored as
        retrieved).
        """
        digests: set[str] = set()
        for sub in ("new", "cur"):
            directory = os.path.join(self.root, sub)
            try:
                names = os.listdir(directory)
            except OSError as exc:
                raise self.error(exc) from None
            for name in names:
                match = _OURS.match(name)
                if match is None or match.group(1) != token:
                    continue
                path = os.path.join(directory, name)
                if match.group(2) is not None:
                    try:
                        mode = os.lstat(path).st_mode
                    except FileNotFoundError:
                        continue  # moved or deleted by a mail reader meanwhile
                    except OSError as exc:
                        raise CliError(
                            f"cannot read {name} in {directory}: {exc.strerror}"
                        ) from None
                    if stat.S_ISREG(mode):
                        digests.add(match.group(2))
                    continue
                digest = hashlib.sha256()
                try:
                    # Only a regular file of our own naming vouches for a message:
                    # never a link (its target could be anything) or a FIFO (a hang).
                    fd = os.open(
                        path,
                        os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    )
                except FileNotFoundError:
                    continue  # moved or deleted by a mail reader meanwhile
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        continue  # a symbolic link
                    raise CliError(f"cannot read {name} in {directory}: {exc.strerror}") from None
                with open(fd, "rb") as f:
                    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                        continue
                    try:
                        while chunk := f.read(1 << 16):
                            digest.update(chunk)
                    except OSError as exc:
                        raise CliError(
                            f"cannot read {name} in {directory}: {exc.strerror}"
                        ) from None
                digests.add(digest.hexdigest())
        return digests

    def remove_unfinished(self) -> int:
        """Remove files a killed run left in tmp/ (call only while holding the fetch lock)."""
        removed = 0
        tmp = os.path.join(self.root, "tmp")
        try:
            names = os.listdir(tmp)
        except OSError as exc:
            raise self.error(exc) from None
        for name in names:
            if _OURS.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(tmp, name))
                    removed += 1
        return removed

    def start(self, token: str, form: MessageForm) -> Delivery:
        """Open a new file in tmp/ for the message with ``token``, to be stored in ``form``."""
        self._count += 1
        now = time.time()
        seconds = int(now)
        usec = int((now - seconds) * 1_000_000)
        name = f"{seconds}.M{usec}P{os.getpid()}Q{self._count}X{token}.{self._host}"
        return Delivery(self, token, name, form)
