"""I/O instructions that both roles' sans-IO code yields to a binding.

``ClientSession`` operations and ``SessionDriver.run()`` are generators; what
they yield tells the binding what to do next. These three are shared by both
roles, so they live here and neither role's code imports the other's:

- ``Write(data)``: write these bytes, then resume;
- ``READ``: read some bytes, hand them over (``b""`` at end of stream), then resume;
- ``StartTls()``: write what is pending, run the TLS handshake, then resume.
  It is also the ``ServerSession`` request of the same meaning, after ``+OK``
  to STLS (RFC 2595 section 4).

Each role adds its own: the client ``Chunk`` (a piece of a message for the
caller), the server ``Call`` and ``Sleep``.
"""

from __future__ import annotations

from ._values import Value, init_field

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Final

__all__ = ["READ", "Read", "StartTls", "Write"]


class Write(Value):
    """Write ``data`` to the peer."""

    __slots__ = __match_args__ = ("data",)
    _hidden = frozenset(__slots__)
    data: bytes

    def __init__(self, data: bytes) -> None:
        init_field(self, "data", data)


class Read:
    """The type of ``READ``; there is only that one instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "READ"


READ: Final = Read()
"""Read bytes from the peer and hand them to the session (``b""`` at end of stream)."""


class StartTls(Value):
    """Write ``data_to_send()``, run the TLS handshake, then call ``tls_established()``."""

    __slots__ = ()
