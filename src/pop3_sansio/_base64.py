"""Strict base64 for SASL lines (RFC 5034 section 4, RFC 4648 section 4)."""

from __future__ import annotations

import binascii
import re

__all__ = ["b64decode_strict", "b64encode"]

# The whole alphabet, "=" padding only at the very end, and the unused low bits
# of the last character before "=" zero (canonical form, RFC 4648 section 3.5:
# "QR==" would otherwise decode as "QQ==" does). Deterministic: linear time
# whatever the input.
_STRICT = re.compile(
    rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?"
)


def b64decode_strict(data: bytes) -> bytes | None:
    """Decode ``data``, or return ``None`` if it is not canonical base64.

    Non-alphabet characters, misplaced ``=``, a length that is not a
    multiple of four and non-zero pad bits are all rejected: both sides MUST
    reject invalid base64 (RFC 5034 section 4).
    """
    if not _STRICT.fullmatch(data):
        return None
    return binascii.a2b_base64(data)


def b64encode(data: bytes) -> bytes:
    """Encode ``data`` without line breaks."""
    return binascii.b2a_base64(data, newline=False)
