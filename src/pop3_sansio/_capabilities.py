"""The CAPA response (RFC 2449 section 5) as a structured value, both ways."""

from __future__ import annotations

from ._errors import RemoteProtocolError
from ._values import Value, init_field

__all__ = ["Capabilities"]

_MAX_CAPA_LINE = 512  # RFC 2449 section 3: a capability line is at most 512 octets.


def _delay(args: tuple[str, ...], tag: str) -> tuple[int, bool]:
    if not args or not args[0].isascii() or not args[0].isdigit() or len(args[0]) > 10:
        raise RemoteProtocolError(f"bad {tag} capability: {args!r}", reason="bad-capability")
    return int(args[0]), len(args) > 1 and args[1].upper() == "USER"


class Capabilities(Value):
    """What a server announced in answer to CAPA.

    ``tags`` maps each upper-cased tag to its arguments as sent; tags are
    case-insensitive (RFC 2449 section 5). The typed fields below are derived
    from it for the capabilities RFC 2449, 2595, 5034 and 6856 define.
    """

    __slots__ = __match_args__ = ("tags",)
    tags: dict[str, tuple[str, ...]]

    def __init__(self, tags: dict[str, tuple[str, ...]] | None = None) -> None:
        init_field(self, "tags", {} if tags is None else tags)

    @classmethod
    def parse(cls, body: bytes) -> Capabilities:
        """Parse the body of a CAPA response (lines ending in CRLF, terminator removed).

        Raises ``RemoteProtocolError`` for a line over 512 octets, non-ASCII
        text, or a malformed LOGIN-DELAY/EXPIRE argument.
        """
        tags: dict[str, tuple[str, ...]] = {}
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError(
                "CAPA response is not ASCII", reason="bad-capability"
            ) from None
        for line in text.split("\n"):
            if len(line) + 1 > _MAX_CAPA_LINE:
                raise RemoteProtocolError("capability line too long", reason="bad-capability")
            words = line.rstrip("\r").split()
            if words:
                tags[words[0].upper()] = tuple(words[1:])
        caps = cls(tags)
        # Validate the arguments with a defined syntax now, not when first read.
        caps.login_delay  # noqa: B018
        caps.expire  # noqa: B018
        return caps

    def encode(self) -> bytes:
        """The body of a CAPA response: one ``TAG args`` line each, CRLF-terminated."""
        return b"".join(
            " ".join((tag, *args)).encode("ascii") + b"\r\n" for tag, args in self.tags.items()
        )

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and tag.upper() in self.tags

    def args(self, tag: str) -> tuple[str, ...] | None:
        """The arguments of ``tag``, or ``None`` if it was not announced."""
        return self.tags.get(tag.upper())

    @property
    def top(self) -> bool:
        """TOP is implemented (RFC 2449 section 6.1)."""
        return "TOP" in self.tags

    @property
    def user(self) -> bool:
        """USER/PASS is allowed (RFC 2449 section 6.2)."""
        return "USER" in self.tags

    @property
    def uidl(self) -> bool:
        """UIDL is implemented (RFC 2449 section 6.8)."""
        return "UIDL" in self.tags

    @property
    def stls(self) -> bool:
        """STLS is available (RFC 2595 section 4)."""
        return "STLS" in self.tags

    @property
    def pipelining(self) -> bool:
        """Commands may be pipelined (RFC 2449 section 6.6).

        ``PIPELINE`` (Twisted's misspelling) counts too: such servers process
        commands in order, which is all pipelining needs.
        """
        return "PIPELINING" in self.tags or "PIPELINE" in self.tags

    @property
    def resp_codes(self) -> bool:
        """Response codes are sent (RFC 2449 section 6.4)."""
        return "RESP-CODES" in self.tags

    @property
    def auth_resp_code(self) -> bool:
        """The ``[AUTH]`` response code is sent (RFC 3206 section 6)."""
        return "AUTH-RESP-CODE" in self.tags

    @property
    def utf8(self) -> bool:
        """The UTF8 command is available (RFC 6856 section 2)."""
        return "UTF8" in self.tags

    @property
    def sasl(self) -> tuple[str, ...]:
        """The SASL mechanisms offered, upper-cased (RFC 5034 section 3); ``()`` if none."""
        return tuple(m.upper() for m in self.tags.get("SASL", ()))

    @property
    def implementation(self) -> str | None:
        """Free text naming the server; never to change behaviour (RFC 2449 section 6.9)."""
        args = self.tags.get("IMPLEMENTATION")
        return None if args is None else " ".join(args)

    @property
    def login_delay(self) -> tuple[int, bool] | None:
        """``(seconds, per_user)`` from ``LOGIN-DELAY`` (RFC 2449 section 6.5), or ``None``."""
        args = self.tags.get("LOGIN-DELAY")
        if args is None:
            return None
        return _delay(args, "LOGIN-DELAY")

    @property
    def expire(self) -> tuple[int | None, bool] | None:
        """``(days, per_user)`` from ``EXPIRE`` (RFC 2449 section 6.7); ``None`` days: NEVER."""
        args = self.tags.get("EXPIRE")
        if args is None:
            return None
        if args and args[0].upper() == "NEVER":
            return None, len(args) > 1 and args[1].upper() == "USER"
        return _delay(args, "EXPIRE")
