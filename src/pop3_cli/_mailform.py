"""The form ``pop3 fetch`` stores a message in: line ends, added header fields, mbox quoting.

RETR hands a message over with CRLF line ends (RFC 1939 section 3). A Maildir
or mbox on a Unix system holds LF line ends, and that is what getmail6 and
fetchmail (through an MDA) store, so LF is the default; ``--crlf`` keeps the
message as it came. Only CRLF pairs become LF: a lone CR or LF in the
message stays as it is.

In front of the message go, unless switched off, a ``Delivered-To:`` field
naming the account and a ``Received:`` field recording the retrieval, in the
manner of fetchmail's (RFC 5321 section 4.4 trace field syntax).

For an mbox, a line of the message that starts with ``From `` gets a ``>`` in
front (the "mboxo" quoting of Python's ``mailbox.mbox`` and of mutt; a line
already starting with ``>From `` is left alone, unlike mboxrd): otherwise a
reader would take it for the start of another message.

The SHA-256 that ``pop3 fetch`` records is always that of the message as RETR
delivered it (``MessageForm.sha256``), whatever form it is stored in.
"""

from __future__ import annotations

import email.utils
import hashlib
import socket

__all__ = ["MessageForm", "trace_fields"]

_FROM = b"From "


def _clean(text: str) -> str:
    """``text`` made safe for a header field: no control characters, no angle brackets."""
    return "".join("?" if ord(c) < 0x20 or c in "\x7f<>" else c for c in text)


def trace_fields(
    *, user: str, host: str, tls: bool, delivered_to: bool, received: bool, now: float
) -> bytes:
    """The ``Delivered-To:`` and ``Received:`` fields (LF line ends), each if asked for.

    The recipient is the POP3 user name if it is an address, else
    ``user@host``. The Received: field reads like fetchmail's::

        Received: from pop.example.org [pop.example.org]
        \tby laptop with POP3S (pop3 fetch)
        \tfor <alice@pop.example.org>; Mon, 07 Dec 2026 06:31:44 +0000
    """
    recipient = _clean(user if "@" in user else f"{user}@{host}")
    server = _clean(host)
    fields = ""
    if delivered_to:
        fields += f"Delivered-To: {recipient}\n"
    if received:
        local = _clean(socket.gethostname() or "localhost")
        date = email.utils.formatdate(now, localtime=True)
        fields += (
            f"Received: from {server} [{server}]\n"
            f"\tby {local} with {'POP3S' if tls else 'POP3'} (pop3 fetch)\n"
            f"\tfor <{recipient}>; {date}\n"
        )
    return fields.encode("utf-8", "surrogateescape")


class MessageForm:
    """Turns the message, fed as RETR delivers it (in chunks cut anywhere), into its stored form.

    ``feed()`` returns the stored bytes for the input so far (holding back at
    most a few octets whose form depends on what follows), ``end()`` the rest.
    ``size`` and ``sha256`` describe the input: the message as retrieved.
    """

    def __init__(self, head: bytes = b"", *, crlf: bool = False, mbox: bool = False) -> None:
        self._crlf = crlf
        self._mbox = mbox
        self._head = head.replace(b"\n", b"\r\n") if crlf else head
        self._cr = b""  # a CR at the end of the input so far (LF mode): is a LF next?
        self._line = b""  # the start of a line, shorter than "From " (mbox mode)
        self._line_start = True
        self._ends_with_newline = True  # nothing emitted yet: nothing to end
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the input so far."""
        return self._hash.hexdigest()

    def feed(self, data: bytes) -> bytes:
        self._hash.update(data)
        self.size += len(data)
        out, self._head = self._head, b""
        if not self._crlf:
            data = self._cr + data
            self._cr = b"\r" if data.endswith(b"\r") else b""
            data = data[: len(data) - len(self._cr)].replace(b"\r\n", b"\n")
        if self._mbox:
            data = self._quote(data)
        return self._emit(out + data)

    def _emit(self, out: bytes) -> bytes:
        if out:
            self._ends_with_newline = out.endswith(b"\n")
        return out

    def _quote(self, data: bytes) -> bytes:
        """``>`` before each line that starts with ``From ``, across chunk boundaries."""
        lead = b"\n" if self._line_start else b""
        text = lead + self._line + data
        self._line = b""
        tail_at = text.rfind(b"\n") + 1
        tail = text[tail_at:]
        if tail_at and len(tail) < len(_FROM) and _FROM.startswith(tail):
            self._line, text = tail, text[:tail_at]  # "Fro" may become "From ": wait
        self._line_start = text.endswith(b"\n") if len(text) > len(lead) else self._line_start
        return text.replace(b"\nFrom ", b"\n>From ")[len(lead) :]

    def end(self) -> bytes:
        """The rest of the stored form, which ends with a line end (unless it is empty)."""
        out = self.feed(b"") + self._emit(self._line + self._cr)
        self._cr = self._line = b""
        if not self._ends_with_newline:
            out += self._emit(b"\r\n" if self._crlf else b"\n")
        return out
