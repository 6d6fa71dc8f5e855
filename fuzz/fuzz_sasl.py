"""Atheris harness for the SASL mechanisms, both sides.

The input's first byte picks the mechanism, the side and the options; the rest,
split on 0xFF, is the decoded client responses (server side) or server challenges
(client side).

Run: ``python fuzz/fuzz_sasl.py fuzz/corpus/sasl -max_total_time=60``
(see fuzz/README.md). ``check(data)`` needs no atheris: the smoke tests call it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if __name__ == "__main__":
    import atheris

    # Instrument the core before anything imports it, so coverage guides the search.
    with atheris.instrument_imports(include=["pop3_sansio"]):
        import pop3_sansio  # noqa: F401

from harness_common import check_sasl


def check(data: bytes) -> None:
    """Raise if the SASL mechanism invariants fail for ``data`` (see harness_common)."""
    check_sasl(data)


def TestOneInput(data: bytes) -> None:  # noqa: N802 -- the name atheris looks for
    check(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
