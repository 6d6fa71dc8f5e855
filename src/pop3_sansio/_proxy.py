"""The PROXY protocol, versions 1 and 2: who the client is when a proxy connects for it.

A load balancer in front of the server (HAProxy, nginx's stream module, a
cloud load balancer) opens its own TCP connection, so the server would see
the proxy's address. With the PROXY protocol the proxy first sends one header
that names the client's address; the client's own bytes follow (the TLS
ClientHello, with implicit TLS). The format is HAProxy's specification,
"The PROXY protocol, versions 1 & 2":

- version 1, text: ``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` or
  ``PROXY UNKNOWN ...\\r\\n``, at most 107 octets;
- version 2, binary: a 12-octet signature, a version/command octet (LOCAL or
  PROXY), a family/transport octet, a 2-octet length, the addresses, then
  type-length-value records (TLVs), which are checked for framing and ignored.

``ProxyParser`` reads one header incrementally. Its ``wanted`` tells how many
octets may be read next without reading past the header, so a binding never
consumes what follows it, which may have to go to TLS rather than to the
session.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, TypeVar

from ._errors import LocalProtocolError, RemoteProtocolError
from ._state import NEED_DATA, Sentinel

__all__ = [
    "MAX_PROXY_V1_LENGTH",
    "MAX_PROXY_V2_LENGTH",
    "PROXY_V2_SIGNATURE",
    "ProxyCommand",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyParser",
]

MAX_PROXY_V1_LENGTH: Final = 107
"""The longest version 1 header, CRLF included (the specification's bound)."""
MAX_PROXY_V2_LENGTH: Final = 4096
"""The default bound on a version 2 header's length field (addresses and TLVs)."""
PROXY_V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 octets every version 2 header starts with."""

_V1_PREFIX = b"PROXY "
_V2_FIXED = 16  # signature, version/command, family/transport, length
# The shortest complete version 1 header for each protocol: what may be read
# at once without risking the octets after it.
_V1_SHORTEST = {
    b"TCP4": len(b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n"),
    b"TCP6": len(b"PROXY TCP6 :: :: 0 0\r\n"),
    b"UNKNOWN": len(b"PROXY UNKNOWN\r\n"),
}
_FIRST_READ = min(_V1_SHORTEST[b"UNKNOWN"], _V2_FIXED)

_PORT = rb"(0|[1-9][0-9]{0,4})"
_V1_LINE = re.compile(
    rb"PROXY (?:(?P<proto>TCP4|TCP6) (?P<src>[0-9A-Fa-f.:]+) (?P<dst>[0-9A-Fa-f.:]+) "
    rb"(?P<sport>" + _PORT + rb") (?P<dport>" + _PORT + rb")|UNKNOWN(?: [^\r\n]*)?)\r\n"
)

# Version 2: the command (low nibble of octet 12) and the family/transport octet.
_LOCAL, _PROXY = 0x0, 0x1
_UNSPEC = 0x0
_INET, _INET6, _UNIX = 0x1, 0x2, 0x3
_TRANSPORTS = (0x0, 0x1, 0x2)  # UNSPEC, STREAM, DGRAM
_ADDRESS_LENGTH = {_UNSPEC: 0, _INET: 12, _INET6: 36, _UNIX: 216}

_T = TypeVar("_T")

ProxyCommand: TypeAlias = Literal["PROXY", "LOCAL", "UNKNOWN"]
"""A PROXY header's command: a proxied connection, the proxy's own (v2 LOCAL), or unknown."""


class ProxyHeaderError(RemoteProtocolError):
    """The connection did not start with a valid PROXY header.

    ``reason`` is one of ``"proxy-signature"`` (neither version's start),
    ``"proxy-too-long"`` (over 107 octets, or a version 2 length over the
    bound), ``"proxy-malformed"`` (anything else that breaks the format) and
    ``"proxy-incomplete"`` (the connection ended first) and ``"proxy-timeout"``
    (``result()`` was asked for before the header was complete).
    """


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A PROXY header, parsed.

    ``command`` is ``"PROXY"`` when the header names the connection's
    endpoints: then ``source`` is the client's (address, port) and
    ``destination`` the address it connected to. ``"LOCAL"`` (version 2: the
    proxy's own connection, e.g. a health check) and ``"UNKNOWN"`` (version 1
    UNKNOWN, or a version 2 family without IP addresses) carry none: the
    socket's own addresses stand.
    """

    version: int
    command: ProxyCommand
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None

    def client_address(self, connected: _T) -> tuple[str, int] | _T:
        """``source`` when the header names one, else ``connected`` (the socket's peer)."""
        return connected if self.source is None else self.source


def _error(message: str, reason: str, data: bytes | bytearray) -> ProxyHeaderError:
    return ProxyHeaderError(message, reason=reason, state="PROXY", line=bytes(data))


def _v1_address(proto: bytes, text: bytes) -> str:
    try:
        # The pattern lets no "%" through: a scope id would name an interface
        # of the proxy's host, not an address.
        if proto == b"TCP4":
            return str(ipaddress.IPv4Address(text.decode("ascii")))
        return str(ipaddress.IPv6Address(text.decode("ascii")))
    except ValueError:
        raise _error("bad address in a PROXY header", "proxy-malformed", text) from None


def _v1_port(text: bytes) -> int:
    port = int(text)  # at most five digits: the pattern says so
    if port > 0xFFFF:
        raise _error("bad port in a PROXY header", "proxy-malformed", text)
    return port


def _parse_v1(line: bytes) -> ProxyHeader:
    match = _V1_LINE.fullmatch(line)
    if match is None:
        raise _error("malformed PROXY version 1 header", "proxy-malformed", line)
    proto = match["proto"]
    if proto is None:
        return ProxyHeader(1, "UNKNOWN")
    return ProxyHeader(
        1,
        "PROXY",
        (_v1_address(proto, match["src"]), _v1_port(match["sport"])),
        (_v1_address(proto, match["dst"]), _v1_port(match["dport"])),
    )


def _check_tlvs(tlvs: bytes, header: bytes) -> None:
    """TLVs are ignored, but they must fill the rest of the header exactly."""
    pos = 0
    while pos < len(tlvs):
        if len(tlvs) - pos < 3:
            raise _error("truncated TLV in a PROXY header", "proxy-malformed", header)
        pos += 3 + int.from_bytes(tlvs[pos + 1 : pos + 3], "big")
        if pos > len(tlvs):
            raise _error("a TLV overruns the PROXY header", "proxy-malformed", header)


def _check_v2_fixed(header: bytes | bytearray, max_length: int) -> int:
    """Validate octets 12-15; return the length of the rest."""
    version, command = header[12] >> 4, header[12] & 0x0F
    if version != 2 or command not in (_LOCAL, _PROXY):
        raise _error("bad PROXY version 2 version or command", "proxy-malformed", header)
    family, transport = header[13] >> 4, header[13] & 0x0F
    if command == _PROXY and (
        family not in _ADDRESS_LENGTH
        or transport not in _TRANSPORTS
        or (family == _UNSPEC) != (transport == 0)
    ):
        raise _error("bad PROXY version 2 address family", "proxy-malformed", header)
    length = int.from_bytes(header[14:16], "big")
    if length > max_length:
        raise _error("PROXY version 2 header too long", "proxy-too-long", header[:16])
    if command == _PROXY and length < _ADDRESS_LENGTH[family]:
        raise _error("PROXY version 2 addresses truncated", "proxy-malformed", header)
    return length


def _parse_v2(header: bytes) -> ProxyHeader:
    """A complete version 2 header whose fixed part was checked."""
    if header[12] & 0x0F == _LOCAL:
        return ProxyHeader(2, "LOCAL")  # the family and the addresses are ignored
    family = header[13] >> 4
    if family == _UNSPEC:
        return ProxyHeader(2, "UNKNOWN")  # no address layout: all of it is ignored
    body = header[_V2_FIXED:]
    _check_tlvs(body[_ADDRESS_LENGTH[family] :], header)
    if family == _UNIX:
        return ProxyHeader(2, "UNKNOWN")  # socket paths, not addresses
    width = 4 if family == _INET else 16
    source = str(ipaddress.ip_address(body[:width]))
    destination = str(ipaddress.ip_address(body[width : 2 * width]))
    sport = int.from_bytes(body[2 * width : 2 * width + 2], "big")
    dport = int.from_bytes(body[2 * width + 2 : 2 * width + 4], "big")
    return ProxyHeader(2, "PROXY", (source, sport), (destination, dport))


class ProxyParser:
    """Reads the PROXY header (version 1 or 2) a connection starts with.

    Feed it the connection's first octets with ``feed()`` until it returns a
    ``ProxyHeader``; ``b""`` means the connection ended. Read at most
    ``wanted`` octets at a time and nothing after the header is ever consumed;
    octets fed beyond the header are kept in ``leftover``. Anything that is
    not a valid header raises ``ProxyHeaderError``, and keeps raising it. At
    most 107 octets are buffered for version 1, and ``16 + max_v2_length``
    for version 2.
    """

    def __init__(self, *, max_v2_length: int = MAX_PROXY_V2_LENGTH) -> None:
        self.max_v2_length = max_v2_length
        self.header: ProxyHeader | None = None
        """The header, once complete."""
        self.leftover = b""
        """Octets fed after the header (none if reads kept to ``wanted``)."""
        self._buffer = bytearray()
        self._error: ProxyHeaderError | None = None

    @property
    def wanted(self) -> int:
        """How many octets to read next: all of them belong to the header (0 when done)."""
        if self.header is not None or self._error is not None:
            return 0
        buffer = self._buffer
        if len(buffer) < _FIRST_READ:
            return _FIRST_READ - len(buffer)
        if buffer[0] != _V1_PREFIX[0]:
            if len(buffer) < _V2_FIXED:
                return _V2_FIXED - len(buffer)
            return _V2_FIXED + int.from_bytes(buffer[14:16], "big") - len(buffer)
        proto = bytes(buffer[6:]).partition(b" ")[0].partition(b"\r")[0]
        shortest = _V1_SHORTEST.get(proto, _FIRST_READ)
        if len(buffer) < shortest:
            return shortest - len(buffer)
        return 1 if buffer[-1] == 0x0D else 2  # at least the line end

    def result(self) -> ProxyHeader:
        """The header; ``ProxyHeaderError`` (``"proxy-timeout"``) if it is not complete.

        A binding calls it once ``wanted`` is 0, or when the time it allows
        for the header is up.
        """
        if self.header is None and self._error is None:
            self._error = _error("no complete PROXY header in time", "proxy-timeout", self._buffer)
            self._buffer.clear()
        if self._error is not None:
            raise self._error
        assert self.header is not None
        return self.header

    def feed(self, data: bytes) -> ProxyHeader | Literal[Sentinel.NEED_DATA]:
        """Take received octets (``b""``: the connection ended); the header or ``NEED_DATA``.

        Raises ``ProxyHeaderError`` when the octets cannot start a valid
        header, and ``LocalProtocolError`` if called after the header.
        """
        if self._error is not None:
            raise self._error
        if self.header is not None:
            raise LocalProtocolError("the PROXY header is complete", reason="proxy-done")
        try:
            return self._feed(data)
        except ProxyHeaderError as exc:
            self._error = exc
            self._buffer.clear()
            raise

    def _feed(self, data: bytes) -> ProxyHeader | Literal[Sentinel.NEED_DATA]:
        buffer = self._buffer
        if not data:
            raise _error("the connection ended inside the PROXY header", "proxy-incomplete", buffer)
        # Never buffer more than the longest header: the rest is leftover.
        room = max(MAX_PROXY_V1_LENGTH, _V2_FIXED + self.max_v2_length) - len(buffer)
        buffer += data[:room]
        extra = data[room:]
        signature = _V1_PREFIX if buffer[0] == _V1_PREFIX[0] else PROXY_V2_SIGNATURE
        start = bytes(buffer[: len(signature)])
        if not signature.startswith(start):
            raise _error("no PROXY header", "proxy-signature", start)
        if signature is _V1_PREFIX:
            header, end = self._v1()
        else:
            header, end = self._v2()
        if header is None:
            return NEED_DATA
        self.header = header
        self.leftover = bytes(buffer[end:]) + extra
        buffer.clear()
        return header

    def _v1(self) -> tuple[ProxyHeader | None, int]:
        window = bytes(self._buffer[:MAX_PROXY_V1_LENGTH])
        end = window.find(b"\n") + 1
        if end == 0:
            if b"\r" in window[:-1]:
                raise _error("CR without LF in a PROXY header", "proxy-malformed", window)
            if len(window) == MAX_PROXY_V1_LENGTH:
                raise _error("PROXY header too long", "proxy-too-long", window)
            return None, 0
        return _parse_v1(window[:end]), end

    def _v2(self) -> tuple[ProxyHeader | None, int]:
        buffer = self._buffer
        if len(buffer) < _V2_FIXED:
            return None, 0
        end = _V2_FIXED + _check_v2_fixed(buffer, self.max_v2_length)
        if len(buffer) < end:
            return None, 0
        return _parse_v2(bytes(buffer[:end])), end
