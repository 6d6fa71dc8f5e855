"""What a server stores mail in, as the core sees it: the backend and maildrop protocols.

``pop3_maildrop`` implements them (Maildir, mbox, memory); any object with
these methods will do (``BackendProtocol``, ``MaildropProtocol``).
``SessionDriver`` calls them, and ``ServerSession`` works on the snapshot of
``MessageInfo`` a maildrop gives at login.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ._errors import LocalProtocolError

__all__ = [
    "BackendProtocol",
    "MaildropError",
    "MaildropLockedError",
    "MaildropProtocol",
    "MessageInfo",
]


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message of a maildrop snapshot.

    ``size`` is the octet count with CRLF line ends (RFC 1939 section 11; see
    ``message_size``); ``uid`` is 1-70 characters in 0x21-0x7E, unique and
    stable across sessions (RFC 1939 section 7).
    """

    size: int
    uid: str

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size < 0:
            raise LocalProtocolError(f"bad message size {self.size!r}", reason="bad-argument")
        uid = self.uid
        if not (0 < len(uid) <= 70 and uid.isascii() and uid.isprintable() and " " not in uid):
            raise LocalProtocolError(f"bad unique-id {uid!r}", reason="bad-argument")


class MaildropError(Exception):
    """A maildrop could not be opened, read or changed (``-ERR [SYS/TEMP]``)."""


class MaildropLockedError(MaildropError):
    """Another session holds the maildrop's lock (``-ERR [IN-USE]``, RFC 2449 section 8.1.2)."""


class MaildropProtocol(Protocol):
    """An open, exclusively locked maildrop for one session (``pop3_maildrop.Maildrop`` is one)."""

    @property
    def messages(self) -> Sequence[MessageInfo]:
        """The snapshot: CRLF sizes and unique ids, message 1 first."""

    def read(self, msg: int, chunk_size: int) -> Iterator[bytes]:
        """The stored bytes of message ``msg`` (1-based), chunk by chunk."""

    def commit(self, msgs: Sequence[int]) -> Sequence[int]:
        """Remove ``msgs`` for good; return those that could not be removed."""

    def close(self) -> None:
        """Release the lock."""


class BackendProtocol(Protocol):
    """Authentication and storage for a server (``pop3_maildrop.Backend`` is one)."""

    def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is ``username``'s (in constant time)."""

    def secret(self, username: str) -> str | None:
        """The plain shared secret (APOP, CRAM-MD5, SCRAM), or ``None``."""

    def check_token(self, username: str, token: str) -> bool:
        """Whether an OAuth bearer ``token`` is valid for ``username``."""

    def open(self, username: str) -> MaildropProtocol:
        """Open and lock the maildrop; raise ``MaildropLockedError``/``MaildropError``."""
