"""Facts about connections that clients and servers share: TLS modes, ports, peers.

Pure: addresses are parsed, never resolved or connected to.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Literal, TypeAlias

    TlsMode: TypeAlias = Literal["implicit", "starttls"] | None
    """How a client protects its connection: implicit TLS (port 995), STLS, or not at all."""
else:

    def __getattr__(name: str) -> object:
        # TlsMode is built on first use: a client's import does not load ``typing``
        # (docs/architecture.md, section 8).
        if name != "TlsMode":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from typing import Literal

        value = Literal["implicit", "starttls"] | None
        globals()[name] = value
        return value


__all__ = ["TlsMode", "default_port", "is_loopback_address", "peer_host"]


def default_port(tls: TlsMode) -> int:
    """995 for implicit TLS (RFC 8314), 110 otherwise (RFC 1939)."""
    return 995 if tls == "implicit" else 110


def peer_host(peer: object) -> str:
    """The host of a peer: ``peer[0]`` of a socket address, a string as it is, else ``"?"``."""
    if isinstance(peer, str):
        return peer
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return "?"


def is_loopback_address(peer: object) -> bool:
    """Whether a peer (a socket address or a host) is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104."""
    import ipaddress  # here: most clients never ask, and the import costs a millisecond

    try:
        address = ipaddress.ip_address(peer_host(peer))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
