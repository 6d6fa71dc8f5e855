"""In-memory storage, for tests and demos: same contract, nothing on disk."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from pop3_sansio.codec import message_size
from pop3_sansio.server import MessageInfo

from ._base import LockRegistry, Maildrop, MaildropError, Storage

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Maildrops held in memory, keyed by user name.

    ``maildrops`` gives each user's initial messages (raw bytes, LF or CRLF
    line ends). Opening an unknown user gives an empty maildrop. Unique ids are
    assigned when a message is added and never reused by this storage. Locking
    is per user and per storage object, within this process. Thread-safe.
    """

    def __init__(self, maildrops: dict[str, list[bytes]] | None = None) -> None:
        self._mutex = threading.Lock()
        self._drops: dict[str, list[tuple[str, bytes]]] = {}
        self._counter = itertools.count(1)
        self._locks = LockRegistry()
        for username, messages in (maildrops or {}).items():
            self._drops.setdefault(username, [])
            for message in messages:
                self.add(username, message)

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._drops)} maildrops>)"

    def add(self, username: str, message: bytes) -> str:
        """Deliver ``message`` to ``username`` (even during a session); return its uid."""
        data = bytes(message)
        with self._mutex:
            uid = f"mem{next(self._counter)}"
            self._drops.setdefault(username, []).append((uid, data))
        return uid

    def contents(self, username: str) -> list[bytes]:
        """The messages ``username`` has now, oldest first."""
        with self._mutex:
            return [data for _, data in self._drops.get(username, ())]

    def uids(self, username: str) -> list[str]:
        """The unique ids of the messages ``username`` has now, oldest first."""
        with self._mutex:
            return [uid for uid, _ in self._drops.get(username, ())]

    def open(self, username: str) -> Maildrop:
        """Lock ``username``'s maildrop and snapshot it; see ``Storage.open``."""
        self._locks.acquire(username)
        with self._mutex:
            stored = list(self._drops.setdefault(username, []))
        return _MemoryMaildrop(self, username, stored)

    def _remove(self, username: str, uids: set[str]) -> None:
        with self._mutex:
            drop = self._drops[username]
            drop[:] = [item for item in drop if item[0] not in uids]


class _MemoryMaildrop(Maildrop):
    def __init__(
        self, storage: MemoryStorage, username: str, stored: list[tuple[str, bytes]]
    ) -> None:
        super().__init__(MessageInfo(message_size(data), uid) for uid, data in stored)
        self._storage = storage
        self._username = username
        self._stored = stored
        self._removed: set[int] = set()

    def _read(self, index: int, chunk_size: int) -> Iterator[bytes]:
        if index in self._removed:
            raise MaildropError("the message has been removed")
        data = self._stored[index][1]
        return (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))

    def _commit(self, indexes: list[int]) -> set[int]:
        # Removing from memory cannot fail; a message removed by someone else
        # simply is not in the list any more.
        self._storage._remove(self._username, {self._stored[i][0] for i in indexes})
        self._removed.update(indexes)
        return set()

    def _close(self) -> None:
        self._storage._locks.release(self._username)
