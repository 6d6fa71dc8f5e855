"""APOP (RFC 1939 section 7): the greeting timestamp and the digest."""

from __future__ import annotations

__all__ = ["apop_digest", "check_apop_digest", "find_timestamp", "make_timestamp"]

_MAX_TIMESTAMP = 256


def make_timestamp(token: str, clock: int, host: str) -> str:
    """A greeting timestamp ``<token.clock@host>`` (RFC 1939 section 7).

    It must differ on every greeting: the caller passes fresh randomness as
    ``token`` (e.g. ``secrets.token_hex(8)``) and the current time as
    ``clock``; the core has neither. Raises ``ValueError`` for characters that
    do not belong in a msg-id.
    """
    stamp = f"<{token}.{clock}@{host}>"
    inner = stamp[1:-1]
    if (
        not inner.isascii()
        or not inner.isprintable()
        or any(c in inner for c in " <>")
        or len(stamp) > _MAX_TIMESTAMP
    ):
        raise ValueError(f"unusable APOP timestamp: {stamp!r}")
    return stamp


def find_timestamp(text: str) -> str | None:
    """The APOP timestamp in a greeting's text, brackets included, or ``None``.

    Lenient on what is inside (Dovecot's contain ``=``), but it must look like a
    msg-id: printable ASCII, no spaces, an ``@``. Linear time: no regex that
    could backtrack (CVE-2018-1060).
    """
    start = text.find("<")
    while start >= 0:
        end = text.find(">", start + 1)
        if end < 0:
            return None
        # Every "<" before the last one in text[start:end] opens a candidate
        # that contains that last "<", so jump to it: each character is then
        # examined a bounded number of times (linear even on "<a<a<a...>").
        start = text.rfind("<", start, end)
        if end - start + 1 <= _MAX_TIMESTAMP:
            inner = text[start + 1 : end]
            if "@" in inner and " " not in inner and inner.isascii() and inner.isprintable():
                return text[start : end + 1]
        start = text.find("<", end + 1)
    return None


def apop_digest(timestamp: str, secret: str) -> str:
    """MD5(timestamp + secret) as 32 lower-case hex digits (RFC 1939 section 7)."""
    import hashlib  # here, not at the top: a greeting's timestamp is parsed without it

    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


def check_apop_digest(timestamp: str, secret: str, digest: str) -> bool:
    """Whether ``digest`` is right for ``timestamp`` and ``secret``; constant-time."""
    import hmac

    expected = apop_digest(timestamp, secret).encode("ascii")
    return hmac.compare_digest(expected, digest.lower().encode("utf-8"))
