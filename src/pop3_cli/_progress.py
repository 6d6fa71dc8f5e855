"""A one-line progress display on stderr, shown only when stderr is a terminal; counts in words."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "counted", "human_size"]

_INTERVAL = 0.1  # seconds between redraws


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 message``, ``2 messages``: ``count`` and ``noun``, plural unless ``count`` is 1."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def human_size(octets: int) -> str:
    """``1.5 MiB`` style."""
    size = float(octets)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{octets} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class Progress:
    """Messages and octets done out of a total; redrawn at most ten times a second."""

    def __init__(
        self,
        messages: int,
        octets: int,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total_messages = messages
        self.total_octets = octets
        self.messages = 0
        self.octets = 0
        self._drawn = 0.0
        self._width = 0

    def advance(self, octets: int) -> None:
        """``octets`` more received."""
        self.octets += octets
        self._draw()

    def message_done(self) -> None:
        """One more message stored."""
        self.messages += 1
        self._draw(force=self.messages == self.total_messages)

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < _INTERVAL:
            return
        self._drawn = now
        percent = 100 * self.octets // self.total_octets if self.total_octets else 100
        line = (
            f"fetching: {self.messages}/{counted(self.total_messages, 'message')}, "
            f"{human_size(self.octets)} of {human_size(self.total_octets)} ({percent}%)"
        )
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """Erase the line, leaving the terminal as it was."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
