"""What ``pop3 fetch`` has already stored: unique ids per account, in the destination Maildir.

``DIR/.pop3-fetch-state.json`` holds ``{"version": 1, "accounts": {"host:port:user":
[uid, ...]}}`` and is only ever replaced atomically (written to a temporary
file, synced, renamed, directory synced). Recording one uid right after each
stored message must not rewrite the whole file every time (that would be
quadratic in the number of messages), so each uid is first appended to
``DIR/.pop3-fetch-state.journal`` (one JSON line, synced); the journal is
folded into the JSON file and emptied at the start and end of every run. A
line torn by a crash is ignored, which is safe: its message is also found by
its file name (see ``_deliver``). ``DIR/.pop3-fetch.lock`` keeps two runs from
using the same Maildir at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable
from types import TracebackType
from typing import IO, Any

from ._deliver import fsync_directory
from ._errors import CliError

__all__ = ["JOURNAL_FILE", "LOCK_FILE", "STATE_FILE", "FetchState"]

STATE_FILE = ".pop3-fetch-state.json"
JOURNAL_FILE = ".pop3-fetch-state.journal"
LOCK_FILE = ".pop3-fetch.lock"
_VERSION = 1


class FetchState:
    """The uids stored for one account; ``with FetchState(maildir, account) as state``."""

    def __init__(self, maildir: str, account: str) -> None:
        self.maildir = maildir
        self.account = account
        self._path = os.path.join(maildir, STATE_FILE)
        self._journal_path = os.path.join(maildir, JOURNAL_FILE)
        self._accounts: dict[str, dict[str, None]] = {}
        self._journal: IO[bytes] | None = None
        self._lock_fd: int | None = None

    # --- opening and closing -------------------------------------------------------------

    def __enter__(self) -> FetchState:
        self._lock()
        try:
            self._load()
            self.save()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.save()
        finally:
            self.close()

    def close(self) -> None:
        """Release the journal and the lock (what is recorded stays recorded)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _lock(self) -> None:
        path = os.path.join(self.maildir, LOCK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CliError(f"cannot create {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CliError(f"another pop3 fetch is using {self.maildir}") from None
        self._lock_fd = fd

    # --- reading -----------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            with open(self._path, "rb") as f:
                data: Any = json.loads(f.read())
        except FileNotFoundError:
            data = {"version": _VERSION, "accounts": {}}
        except OSError as exc:
            raise CliError(f"cannot read {self._path}: {exc.strerror}") from None
        except ValueError:
            data = None
        accounts = data.get("accounts") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("version") != _VERSION
            or not isinstance(accounts, dict)
            or not all(
                isinstance(uids, list) and all(isinstance(uid, str) for uid in uids)
                for uids in accounts.values()
            )
        ):
            raise CliError(
                f"{self._path} is damaged or from another version; "
                "move it away to fetch everything again"
            )
        self._accounts = {name: dict.fromkeys(uids) for name, uids in accounts.items()}
        try:
            with open(self._journal_path, "rb") as f:
                journal = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CliError(f"cannot read {self._journal_path}: {exc.strerror}") from None
        for line in journal.split(b"\n"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # torn by a crash, or empty
            if (
                isinstance(entry, list)
                and len(entry) == 2
                and all(isinstance(item, str) for item in entry)
            ):
                self._accounts.setdefault(entry[0], {})[entry[1]] = None

    # --- the API ---------------------------------------------------------------------------

    @property
    def uids(self) -> frozenset[str]:
        """The uids recorded for this account."""
        return frozenset(self._accounts.get(self.account, ()))

    def __contains__(self, uid: object) -> bool:
        return uid in self._accounts.get(self.account, {})

    def add(self, uid: str) -> None:
        """Record ``uid`` durably (appended to the journal and synced)."""
        self._accounts.setdefault(self.account, {})[uid] = None
        line = json.dumps([self.account, uid], ensure_ascii=True).encode("ascii") + b"\n"
        try:
            if self._journal is None:
                self._journal = open(self._journal_path, "ab")  # noqa: SIM115 - closed by close()
            self._journal.write(line)
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except OSError as exc:
            raise CliError(f"cannot write {self._journal_path}: {exc.strerror}") from None

    def prune(self, present: Iterable[str]) -> None:
        """Forget this account's uids that are not in ``present`` (saved by ``save``)."""
        keep = set(present)
        uids = self._accounts.get(self.account)
        if uids is not None:
            self._accounts[self.account] = {uid: None for uid in uids if uid in keep}

    def save(self) -> None:
        """Replace the state file atomically with everything known, then empty the journal."""
        accounts = {name: list(uids) for name, uids in self._accounts.items() if uids}
        data = json.dumps({"version": _VERSION, "accounts": accounts}, indent=1) + "\n"
        tmp = self._path + ".tmp"  # one writer at a time: we hold the lock
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
            fsync_directory(self.maildir)
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self._journal_path, 0)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise CliError(f"cannot write {self._path}: {exc.strerror}") from None
