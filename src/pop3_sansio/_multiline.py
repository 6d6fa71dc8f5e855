"""Multi-line bodies: the client's unstuffing decoder, the server's encoder.

RFC 1939 section 3: each line of a multi-line response ends in CRLF; a line
that starts with "." is sent with an extra "." in front; the response ends with
a line holding only "." (so the stream ends with CRLF "." CRLF). The receiving
side strips the first "." of any line where octets other than CRLF follow it.
A "." line ended by a bare LF is accepted as the end too.

Both coders are streaming state machines: they take chunks split anywhere and
keep at most two octets of state between chunks, never a buffered line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["BodyDecoder", "BodyEncoder", "TopFilter", "message_size"]

_LF = 0x0A
_CR = 0x0D
_DOT = 0x2E
# sre's literal-prefix search scans for LF "." at about 1.3 GB/s where
# bytes.find(b"\n.") manages about 0.8 GB/s (CPython 3.11).
_LINE_DOT_SEARCH = re.compile(rb"\n\.").search
_LINE_DOT_SUB = re.compile(rb"\n\.").sub


# _BARE_LF_END: a line of "." ended by a bare LF also ends the body. RFC 1939
# wants CRLF, but a server that sends bare LF line ends (as status lines are
# accepted with them) would otherwise leave the client waiting for a CRLF that
# never comes. A conforming server stuffs every line-start dot, so "." LF is
# never body.


def _find_line_dot(chunk: bytes, pos: int) -> int:
    """Index of the first "." that follows a LF in ``chunk[pos:]``, or -1."""
    m = _LINE_DOT_SEARCH(chunk, pos)
    return m.end() - 1 if m is not None else -1


# What _after_dot found after a line-start ".": the chunk ended right after the
# "." or after "." CR (held for the next chunk), or the dot is stuffing.
_HOLD_DOT = -1
_HOLD_DOT_CR = -2
_STUFFED = 0


def _after_dot(chunk: bytes, after: int) -> int:
    """Classify what follows a line-start "." whose next octet is ``chunk[after]``.

    Returns the index just past the terminating "." CRLF (or "." LF, see
    _BARE_LF_END) when the body ends there; ``_HOLD_DOT`` or ``_HOLD_DOT_CR``
    when the chunk ends before that is known; else ``_STUFFED``: the dot is
    stuffing (or a lone leading dot) and the body goes on at ``after``.
    """
    n = len(chunk)
    if after == n:
        return _HOLD_DOT
    octet = chunk[after]
    if octet == _CR:
        if after + 1 == n:
            return _HOLD_DOT_CR
        if chunk[after + 1] == _LF:
            return after + 2
    elif octet == _LF:
        return after + 1
    return _STUFFED


class BodyDecoder:
    """Turns the wire form of a multi-line body back into the body.

    ``feed(chunk, start)`` decodes ``chunk[start:]`` and returns
    ``(data, end, finished)``: the body bytes found (CRLF kept, stuffing
    removed), the index just past what was consumed, and whether the
    terminating ``.`` CRLF was reached. After ``finished``, ``chunk[end:]`` is
    not part of the body.
    """

    __slots__ = ("_bol", "_held")

    def __init__(self) -> None:
        # At the beginning of a line: the status line's CRLF was just read.
        self._bol = True
        # A line-start "." (or "." CR) seen at the end of the previous chunk.
        self._held = b""

    def restart(self) -> BodyDecoder:
        """Make this decoder ready for a new body, and return it (cheaper than a new one)."""
        self._bol = True
        self._held = b""
        return self

    def feed(self, chunk: bytes, start: int = 0) -> tuple[bytes, int, bool]:
        """Decode non-empty ``chunk[start:]``; see the class docstring."""
        n = len(chunk)
        pos = start
        prefix = b""
        held = self._held
        if held:
            # The previous chunk ended in a line-start "." (or "." CR): put it
            # back in front of this chunk's first octets and classify as one.
            self._held = b""
            k = len(held)
            head = held + chunk[pos : pos + 2]
            after = _after_dot(head, 1)
            if after < 0:  # "." then only CR in this chunk
                self._held = b".\r"
                return b"", n, False
            if after:
                return b"", pos + after - k, True
            # Stuffing: after "." CR the CR is body, after "." this chunk is.
            prefix = head[1:k]
            self._bol = False
        if self._bol and chunk[pos] == _DOT:
            dot = pos
        elif chunk.find(b".", pos) < 0:
            # memchr: no dot at all, so no line starts with one (10+ GB/s).
            dot = -1
        else:
            dot = _find_line_dot(chunk, pos)
        if dot < 0:
            # The fast path: no line in this chunk starts with a dot, so the
            # chunk is body as it is (no copy when it is taken whole).
            self._bol = chunk[n - 1] == _LF
            if prefix:
                return prefix + chunk[pos:], n, False
            return (chunk if pos == 0 else chunk[pos:]), n, False
        # The body is chunk[pos:] minus each line-start dot: collect the spans
        # between those dots, then copy once.
        spans: list[tuple[int, int]] = []
        seg = pos
        while True:
            spans.append((seg, dot))
            after = dot + 1
            # A dot before an ordinary octet is stuffing; only a CR, a LF or
            # the chunk's end needs _after_dot (no call for most dot lines).
            if after == n or chunk[after] == _CR or chunk[after] == _LF:
                found = _after_dot(chunk, after)
                if found < 0:
                    self._held = b"." if found == _HOLD_DOT else b".\r"
                    end, finished = n, False
                    break
                if found:
                    end, finished = found, True
                    break
            # A stuffed (or lone leading) dot: drop it, keep the rest.
            seg = after
            dot = _find_line_dot(chunk, seg)
            if dot < 0:
                spans.append((seg, n))
                self._bol = chunk[n - 1] == _LF
                end, finished = n, False
                break
        if len(spans) == 1 and not prefix:
            # The usual case (a message with no dot line): one slice, one copy.
            a, b = spans[0]
            return chunk[a:b], end, finished
        view = memoryview(chunk)
        pieces: list[bytes | memoryview] = [view[a:b] for a, b in spans]
        if prefix:
            pieces.insert(0, prefix)
        return b"".join(pieces), end, finished


# Dots inside lines that _stuff() steps over one memchr at a time before it
# hands the chunk to sre: text has a sentence dot on most lines, where sre's
# single scan is faster; a base64 attachment or a message whose only dots
# start lines never gets there.
_STUFF_MISSES = 2


def _stuff(data: bytes, bol: bool) -> bytes:
    """``data`` (CRLF lines) with a "." put before each "." that starts a line.

    ``bol``: the octet before ``data`` ended a line. RFC 1939 section 3.
    """
    dot = data.find(b".")  # memchr, 10+ GB/s
    if dot < 0:
        return data
    cuts: list[int] = []
    misses = 0
    while dot >= 0:
        if data[dot - 1] == _LF if dot else bol:
            cuts.append(dot)
        else:
            misses += 1
            if misses > _STUFF_MISSES:
                out = _LINE_DOT_SUB(b"\n..", data)
                return b"." + out if bol and data[0] == _DOT else out
        dot = data.find(b".", dot + 1)
    if not cuts:
        return data
    view = memoryview(data)
    starts = [0, *cuts]
    ends = [*cuts, len(data)]
    # Each line-start dot begins a piece; joining the pieces with "." doubles it.
    return b".".join([view[a:b] for a, b in zip(starts, ends, strict=True)])


class _LineEnds:
    """Normalises LF or CRLF line ends to CRLF across chunk boundaries.

    A lone CR that is not followed by LF is kept as it is, except at the very
    end of the message where it is completed to CRLF.
    """

    __slots__ = ("_cr", "_empty", "bol")

    def __init__(self) -> None:
        self._cr = False  # the last chunk ended with CR
        self._empty = True
        self.bol = True  # the output so far ends at a line boundary

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._empty = False
        head = b""
        if self._cr and data[0] == _LF:
            # The CR of this CRLF ended the previous chunk.
            head = b"\n"
            data = data[1:]
        if b"\r" not in data:
            # The common stored form (LF only): one pass, and none without LF.
            data = data.replace(b"\n", b"\r\n")
        else:
            lf = data.count(b"\n")
            if lf != data.count(b"\r\n"):
                data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if head:
            data = head + data
        self._cr = data[-1] == _CR
        self.bol = data[-1] == _LF
        return data

    def finish(self) -> bytes:
        """The line end that completes a last line lacking one (``b""`` if none is needed)."""
        if self._empty or self.bol:
            return b""
        return b"\n" if self._cr else b"\r\n"


class BodyEncoder:
    """Turns message bytes (LF or CRLF line ends, any chunking) into wire bytes.

    ``encode(chunk)`` returns CRLF line ends with dot-stuffing; ``finish()``
    returns the CRLF a last line lacked (if any) and the ``.`` CRLF terminator.
    """

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines = _LineEnds()

    def encode(self, data: bytes) -> bytes:
        """Encode one chunk of the body."""
        bol = self._lines.bol
        out = self._lines.feed(data)
        if not out:
            return b""
        return _stuff(out, bol)

    def finish(self) -> bytes:
        """End the body: a final line end if one is missing, then ``.`` CRLF."""
        return self._lines.finish() + b".\r\n"


def message_size(chunks: bytes | Iterable[bytes]) -> int:
    """The size RFC 1939 section 11 means: octets with CRLF line ends, no stuffing.

    This is exactly the number of body octets a client receives from RETR
    (docs/architecture.md, invariant 5), including the CRLF the server adds
    after a last line that lacks one.
    """
    lines = _LineEnds()
    if isinstance(chunks, bytes):
        chunks = (chunks,)
    return sum(len(lines.feed(c)) for c in chunks) + len(lines.finish())


class TopFilter:
    """Cuts a message down to what ``TOP msg n`` sends (RFC 1939 section 7).

    The headers, the blank line after them, then ``n`` lines of the body; the
    whole message if it is shorter. ``feed(chunk)`` returns the part of
    ``chunk`` to send; once ``done`` is true nothing more is needed.
    """

    __slots__ = ("_head", "_in_headers", "_lines_left", "done")

    def __init__(self, lines: int) -> None:
        self._lines_left = lines
        self._in_headers = True
        self._head = b""  # the first octets (at most 2) of the current header line
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """Return the prefix of ``chunk`` that belongs to the TOP output."""
        if self.done:
            return b""
        pos = 0
        if self._in_headers:
            while True:
                lf = chunk.find(b"\n", pos)
                if lf < 0:
                    self._head = (self._head + chunk[pos : pos + 2])[:2]
                    return chunk
                head = (self._head + chunk[pos : min(lf, pos + 2)])[:2]
                self._head = b""
                pos = lf + 1
                if head in (b"", b"\r"):
                    break  # the blank line that ends the headers
            self._in_headers = False
        while self._lines_left:
            lf = chunk.find(b"\n", pos)
            if lf < 0:
                return chunk
            pos = lf + 1
            self._lines_left -= 1
        self.done = True
        return chunk[:pos]
