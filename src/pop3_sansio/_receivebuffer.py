"""The receive buffer shared by both roles.

Bytes are kept as the chunks they arrived in, so that a multi-line body can be
passed on without copying; a line that spans chunks is stitched into a small
``bytearray`` that only ever holds the part of one line seen so far. Every
byte is searched once and copied into the stitch buffer at most once, so any
chunking costs linear time.
"""

from __future__ import annotations

from collections import deque

from ._multiline import BodyDecoder

__all__ = ["BufferFullError", "LineTooLongError", "ReceiveBuffer"]


class BufferFullError(Exception):
    """Internal: more bytes are waiting than the connection's cap allows."""


class LineTooLongError(Exception):
    """Internal: the line being read is longer than the limit."""

    def __init__(self, prefix: bytes) -> None:
        super().__init__("line too long")
        self.prefix = prefix


class ReceiveBuffer:
    """Bytes received but not yet consumed.

    Order of the bytes: ``_partial`` (a line begun but not ended), then
    ``_chunks[0][_offset:]``, then the other chunks.
    """

    __slots__ = ("_chunks", "_offset", "_partial", "_size")

    # _size counts the unread bytes in _chunks; _partial is counted apart.

    def __init__(self) -> None:
        self._partial = bytearray()
        self._chunks: deque[bytes] = deque()
        self._offset = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size + len(self._partial)

    def append(self, data: bytes, limit: int) -> None:
        """Queue ``data`` (kept as the same object: no copy).

        Raises ``BufferFullError`` instead if more than ``limit`` bytes are
        already waiting, so the cap holds however the bytes are chunked.
        """
        if self._size + len(self._partial) > limit:
            raise BufferFullError
        self._chunks.append(data)
        self._size += len(data)

    def read_line(self, limit: int) -> bytes | None:
        """Consume and return one line including its LF, or ``None`` if none is complete.

        Raises ``LineTooLongError`` when the line (LF included) is, or can only
        become, longer than ``limit`` octets -- whatever way it was chunked.
        """
        partial = self._partial
        chunks = self._chunks
        while chunks:
            chunk = chunks[0]
            start = self._offset
            end = chunk.find(b"\n", start)
            if end >= 0:
                end += 1
                if len(partial) + end - start > limit:
                    # The prefix is cut to ``limit`` octets so that the
                    # error (and its ``line``) is the same for any chunking.
                    raise LineTooLongError((bytes(partial) + chunk[start:end])[:limit])
                if end == len(chunk):
                    chunks.popleft()
                    self._offset = 0
                else:
                    self._offset = end
                self._size -= end - start
                if partial:
                    partial += chunk[start:end]
                    line = bytes(partial)
                    partial.clear()
                    return line
                return chunk[start:end]
            # No end of line in this chunk: stitch it and look at the next one.
            partial += chunk[start:] if start else chunk
            chunks.popleft()
            self._offset = 0
            self._size -= len(chunk) - start
            if len(partial) >= limit:
                raise LineTooLongError(bytes(partial[:limit]))
        return None

    def peek_partial(self, n: int) -> bytes:
        """The first ``n`` bytes of an unfinished line (fewer if fewer are known)."""
        out = bytes(self._partial[:n])
        offset = self._offset
        for chunk in self._chunks:
            if len(out) >= n:
                break
            out += chunk[offset : offset + n - len(out)]
            offset = 0
        return out

    def decode_body(self, decoder: BodyDecoder) -> tuple[bytes, bool] | None:
        """Run ``decoder`` over the unread bytes, a whole chunk at a time.

        Returns ``(data, finished)`` as soon as there is body data or the end
        of the body (data may be empty only when finished), ``None`` once every
        buffered byte is consumed without either. Only valid at a line
        boundary (nothing stitched). One method rather than "peek, feed,
        consume" calls: this is the per-chunk hot path of every RETR.
        """
        assert not self._partial
        chunks = self._chunks
        while chunks:
            chunk = chunks[0]
            start = self._offset
            data, end, finished = decoder.feed(chunk, start)
            self._size -= end - start
            if end == len(chunk):
                chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
            if data or finished:
                return data, finished
        return None
