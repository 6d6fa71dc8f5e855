"""Parsers for the answers clients read: drop, scan and unique-id listings.

RFC 1939 section 5 (STAT, LIST) and section 7 (UIDL). All numbers are
decimal digits only; their length is capped before ``int()`` is called, so a
hostile line of a million digits costs a length check, not quadratic work.
"""

from __future__ import annotations

import re

from ._errors import RemoteProtocolError

__all__ = [
    "MAX_NUMBER_DIGITS",
    "MAX_UID_LENGTH",
    "parse_scan_line",
    "parse_scan_listing",
    "parse_stat",
    "parse_uid_line",
    "parse_uid_listing",
]

MAX_NUMBER_DIGITS = 20
"""The longest decimal number accepted anywhere (sizes up to 10**20 - 1)."""

MAX_UID_LENGTH = 512
"""Longest unique id a client accepts. RFC 1939 says 1-70 octets; real servers
sometimes send more, and a client loses nothing by tolerating them."""


def _number(token: str, what: str) -> int:
    if not (0 < len(token) <= MAX_NUMBER_DIGITS and token.isascii() and token.isdigit()):
        raise RemoteProtocolError(f"bad {what}: {token[:40]!r}", reason="bad-number")
    return int(token)


def _uid(token: str) -> str:
    # RFC 1939 section 7: unique-ids are 0x21-0x7E.
    if not (
        0 < len(token) <= MAX_UID_LENGTH
        and token.isascii()
        and token.isprintable()
        and " " not in token
    ):
        raise RemoteProtocolError(f"bad unique-id: {token[:40]!r}", reason="bad-uid")
    return token


def parse_stat(text: str) -> tuple[int, int]:
    """``"2 320"`` (the text of ``+OK 2 320``) -> ``(count, size)``.

    Anything after the two numbers is ignored (RFC 1939 section 5 discourages
    it but clients meet it). Raises ``RemoteProtocolError`` if malformed.
    """
    parts = text.split(" ", 2)
    if len(parts) < 2:
        raise RemoteProtocolError(f"bad drop listing: {text[:80]!r}", reason="bad-listing")
    return _number(parts[0], "message count"), _number(parts[1], "maildrop size")


def parse_scan_line(text: str) -> tuple[int, int]:
    """``"1 120"`` -> ``(msgno, size)``; the text of ``+OK`` to ``LIST n`` or one listing line."""
    return parse_stat(text)


def parse_uid_line(text: str) -> tuple[int, str]:
    """``"1 whqtswO00WBw418f9t5JxYwZ"`` -> ``(msgno, uid)`` (RFC 1939 section 7)."""
    parts = text.split(" ")
    if len(parts) != 2:
        raise RemoteProtocolError(f"bad unique-id listing: {text[:80]!r}", reason="bad-listing")
    return _number(parts[0], "message number"), _uid(parts[1])


# The common shapes, matched in one pass by the regex engine. Each line is
# deterministic (digits, one space, a token without spaces, a line end), so
# matching is linear with no backtracking.
# Possessive repeats (``++``, ``{m,n}+``) skip sre's backtracking bookkeeping and
# halve the time of the match; they accept exactly the same strings here.
_SCAN_LISTING = re.compile(rb"(?:[0-9]{1,20}+ [0-9]{1,20}+\r?\n)*+")
_UID_LISTING = re.compile(rb"(?:[0-9]{1,20}+ [!-~]{1,%d}+\r?\n)*+" % MAX_UID_LENGTH)


def _lines(body: bytes) -> list[str]:
    if body and not body.endswith(b"\n"):
        raise RemoteProtocolError("listing does not end with a line end", reason="bad-listing")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("listing is not ASCII", reason="bad-listing") from None
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")[:-1]]


def parse_scan_listing(body: bytes) -> dict[int, int]:
    """The body of a multi-line LIST -> ``{msgno: size}``.

    Raises ``RemoteProtocolError`` for a malformed line or a repeated number.
    """
    if _SCAN_LISTING.fullmatch(body):
        numbers = iter(map(int, body.split()))
        result = dict(zip(numbers, numbers, strict=False))
        lines = body.count(b"\n")
    else:
        # Extra text after the size is allowed (RFC 1939 section 5).
        text_lines = _lines(body)
        lines = len(text_lines)
        result = dict(map(parse_scan_line, text_lines))
    if len(result) != lines:
        raise RemoteProtocolError("repeated message number in listing", reason="bad-listing")
    return result


def parse_uid_listing(body: bytes) -> dict[int, str]:
    """The body of a multi-line UIDL -> ``{msgno: uid}``.

    Raises ``RemoteProtocolError`` for a malformed line or a repeated number.
    """
    if _UID_LISTING.fullmatch(body):
        tokens = body.decode("ascii").split()
        result = dict(zip(map(int, tokens[0::2]), tokens[1::2], strict=True))
        lines = len(tokens) // 2
    else:
        text_lines = _lines(body)
        lines = len(text_lines)
        result = dict(map(parse_uid_line, text_lines))
    if len(result) != lines:
        raise RemoteProtocolError("repeated message number in listing", reason="bad-listing")
    return result
