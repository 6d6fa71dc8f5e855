"""Extended response codes (RFC 2449 section 8, RFC 3206)."""

from __future__ import annotations

from ._values import Value, init_field

__all__ = [
    "AUTH",
    "IN_USE",
    "LOGIN_DELAY",
    "SYS_PERM",
    "SYS_TEMP",
    "UTF8",
    "ResponseCode",
    "split_response_code",
]

# RFC 2449 section 3: rchar = %x21-2E / %x30-5C / %x5E-7F, i.e. printable
# ASCII without "/" and "]".
_RCHARS = frozenset(range(0x21, 0x80)) - {0x2F, 0x5D}


class ResponseCode(Value):
    """A hierarchical response code such as ``[SYS/TEMP]``.

    ``levels`` holds the upper-cased levels, e.g. ``("SYS", "TEMP")``; codes are
    case-insensitive (RFC 2449 section 8). ``str(code)`` gives ``SYS/TEMP``.
    """

    __slots__ = __match_args__ = ("levels",)
    levels: tuple[str, ...]

    def __init__(self, levels: tuple[str, ...]) -> None:
        init_field(self, "levels", levels)

    @classmethod
    def parse(cls, code: str) -> ResponseCode:
        """Build a code from ``"SYS/TEMP"`` (no brackets); ``ValueError`` if malformed."""
        levels = code.split("/")
        for level in levels:
            if not level or any(ord(c) not in _RCHARS for c in level):
                raise ValueError(f"not a response code: {code!r}")
        return cls(tuple(level.upper() for level in levels))

    def matches(self, other: str | ResponseCode) -> bool:
        """True when ``other`` is this code or a prefix of its hierarchy.

        ``[SYS/TEMP/DISK]`` matches ``"SYS/TEMP"`` and ``"SYS"``: clients must
        ignore hierarchical detail they do not know (RFC 2449 section 8).
        """
        if isinstance(other, str):
            other = ResponseCode.parse(other)
        return self.levels[: len(other.levels)] == other.levels

    def __str__(self) -> str:
        return "/".join(self.levels)


def split_response_code(text: str) -> tuple[ResponseCode | None, str]:
    """Split ``"[IN-USE] locked"`` into ``(ResponseCode(("IN-USE",)), "locked")``.

    Text that does not start with a well-formed ``[...]`` code is returned whole,
    with no code (servers put brackets in plain text too).
    """
    if not text.startswith("["):
        return None, text
    end = text.find("]")
    if end < 0:
        return None, text
    try:
        code = ResponseCode.parse(text[1:end])
    except ValueError:
        return None, text
    rest = text[end + 1 :]
    if rest.startswith(" "):
        rest = rest[1:]
    return code, rest


LOGIN_DELAY = ResponseCode(("LOGIN-DELAY",))
"""``[LOGIN-DELAY]`` (RFC 2449 section 8.1.1): logging in again so soon is refused."""
IN_USE = ResponseCode(("IN-USE",))
"""``[IN-USE]`` (RFC 2449 section 8.1.2): the maildrop is locked by another session."""
SYS_TEMP = ResponseCode(("SYS", "TEMP"))
"""``[SYS/TEMP]`` (RFC 3206 section 4): a temporary failure; trying later may succeed."""
SYS_PERM = ResponseCode(("SYS", "PERM"))
"""``[SYS/PERM]`` (RFC 3206 section 4): a permanent failure; trying again will not help."""
AUTH = ResponseCode(("AUTH",))
"""``[AUTH]`` (RFC 3206 section 5): the credentials were wrong."""
UTF8 = ResponseCode(("UTF8",))
"""``[UTF8]`` (RFC 6856): what was asked for needs UTF-8 mode (the ``UTF8`` command) first."""
