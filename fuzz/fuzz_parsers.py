"""Atheris harness for the parsers: CAPA, STAT/LIST/UIDL lines and listings, response
codes, strict base64 and the Maildir file-name -> unique-id mapping.

The input's first byte picks the parser (harness_common.PARSERS); the rest is its input.

Run: ``python fuzz/fuzz_parsers.py fuzz/corpus/parsers -max_total_time=60``
(see fuzz/README.md). ``check(data)`` needs no atheris: the smoke tests call it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if __name__ == "__main__":
    import atheris

    # Instrument the code before anything imports it, so coverage guides the search.
    with atheris.instrument_imports(include=["pop3_sansio", "pop3_maildrop"]):
        import pop3_maildrop  # noqa: F401
        import pop3_sansio  # noqa: F401

from harness_common import check_parsers


def check(data: bytes) -> None:
    """Raise if the parsers' invariants fail for ``data`` (see harness_common)."""
    check_parsers(data)


def TestOneInput(data: bytes) -> None:  # noqa: N802 -- the name atheris looks for
    check(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
