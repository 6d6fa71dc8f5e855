"""pop3_maildrop: the storage POP3 servers use (RFC 1939 calls it a "maildrop").

``Storage.open(username)`` locks a user's maildrop for one session and returns
a ``Maildrop``: a snapshot of ``MessageInfo(size, uid)`` (sizes in CRLF octets,
persistent unique ids), ``read(n)`` to stream a message, ``commit(numbers)`` to
remove messages at UPDATE, ``close()`` to release the lock. Backends: Maildir
(the default), mbox, in-memory, and PostgreSQL (shared by many servers; needs the
``postgresql`` extra, imported only when a ``PostgresStorage`` is made). ``UserDB``
checks passwords; ``hash_password`` makes a users-file value (``pop3 pw``);
``read_eml_dir`` reads a folder of ``.eml`` files (to preload memory).

Standard library only (but for PostgreSQL); I/O lives here, never in ``pop3_sansio``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import Maildrop, MaildropError, MaildropLocked, Storage, StorageUnavailableError

if TYPE_CHECKING:
    from ._backend import Backend
    from ._eml import read_eml_dir
    from ._maildir import MaildirStorage
    from ._mbox import MboxStorage
    from ._memory import MemoryStorage
    from ._postgres import PostgresStorage
    from ._users import HASH_SCHEMES, UserDB, hash_password, verify_password

# Each backend is imported when first named (PEP 562): a command that needs one, such as
# `pop3 deliver` (PostgreSQL), does not pay for the others' imports (mailbox, email).
_LAZY = {
    "Backend": "_backend",
    "read_eml_dir": "_eml",
    "MaildirStorage": "_maildir",
    "MboxStorage": "_mbox",
    "MemoryStorage": "_memory",
    "PostgresStorage": "_postgres",
    "HASH_SCHEMES": "_users",
    "UserDB": "_users",
    "hash_password": "_users",
    "verify_password": "_users",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "HASH_SCHEMES",
    "Backend",
    "MaildirStorage",
    "Maildrop",
    "MaildropError",
    "MaildropLocked",
    "MboxStorage",
    "MemoryStorage",
    "PostgresStorage",
    "Storage",
    "StorageUnavailableError",
    "UserDB",
    "hash_password",
    "read_eml_dir",
    "verify_password",
]
