"""SASLprep (RFC 4013): the stringprep (RFC 3454) profile for user names and passwords."""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["saslprep"]

# RFC 4013 section 2.3: the prohibited output tables (C.1.2 and C.2.1 to C.9).
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, *, allow_unassigned: bool = False) -> str:
    """Prepare *text* with SASLprep and return the result (possibly empty).

    ``allow_unassigned=False`` treats *text* as a "stored string", ``True`` as a
    "query" (RFC 3454 section 7). Raises ``ValueError`` if *text* contains a
    prohibited or (for stored strings) unassigned code point, or fails the
    bidirectional check.
    """
    if text.isascii() and text.isprintable():
        # Fast path: printable ASCII is left unchanged by every step.
        return text
    # RFC 4013 section 2.1: non-ASCII spaces (C.1.2) map to SPACE and the
    # "commonly mapped to nothing" characters (B.1) are removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    # RFC 4013 section 2.2: Unicode normalization form KC.
    normalized = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not normalized:
        return normalized
    for ch in normalized:
        if any(in_table(ch) for in_table in _PROHIBITED):
            raise ValueError(f"SASLprep: prohibited character U+{ord(ch):04X}")
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError(f"SASLprep: unassigned code point U+{ord(ch):04X}")
    # RFC 4013 section 2.4 / RFC 3454 section 6: a string with any RandALCat
    # character must contain no LCat character and start and end with RandALCat.
    if any(stringprep.in_table_d1(ch) for ch in normalized) and (
        any(stringprep.in_table_d2(ch) for ch in normalized)
        or not stringprep.in_table_d1(normalized[0])
        or not stringprep.in_table_d1(normalized[-1])
    ):
        raise ValueError("SASLprep: string fails the bidirectional check")
    return normalized
