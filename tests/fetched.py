"""Reading back what ``pop3 fetch`` stored, in its default form, for the tests.

By default each message is stored with LF line ends after a ``Delivered-To:``
and a ``Received:`` field (``pop3_cli._mailform``); in an mbox, lines starting
with ``From `` also get a ``>``. ``unwrap`` checks and removes the two fields.
"""

from __future__ import annotations

import mailbox
import re
from pathlib import Path

TRACE = re.compile(
    rb"Delivered-To: (?P<to>[^\n]+)\n"
    rb"Received: from (?P<host>\S+) \[(?P=host)\]\n"
    rb"\tby \S+ with POP3S? \(pop3 fetch\)\n"
    rb"\tfor <(?P=to)>; [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n"
)


def lf(retrieved: bytes) -> bytes:
    """The message as RETR handed it over (CRLF), with LF line ends: how it is stored."""
    return retrieved.replace(b"\r\n", b"\n")


def unwrap(stored: bytes, to: str = "alice@127.0.0.1") -> bytes:
    """``stored`` without the Delivered-To: and Received: fields in front (which must be there)."""
    match = TRACE.match(stored)
    assert match is not None, stored[:300]
    assert match.group("to") == to.encode()
    return stored[match.end() :]


def mbox_quoted(message: bytes) -> bytes:
    """``message`` (LF line ends) with the mboxo quoting: ``>`` before each ``From `` line."""
    return b"\n".join(
        b">" + line if line.startswith(b"From ") else line for line in message.split(b"\n")
    )


def mbox_messages(path: Path) -> list[bytes]:
    """Each message of the mbox ``path`` as ``mailbox.mbox`` reads it (no From line)."""
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()
