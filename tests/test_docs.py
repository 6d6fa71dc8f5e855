"""The documents that cite tests cite tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        names.update(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE))
    return names


def test_security_md_cites_existing_tests_and_files() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    cited = set(re.findall(r"`(test_\w+)`", text))
    assert len(cited) > 30
    assert cited - defined_tests() == set()
    files = set(re.findall(r"`((?:tests|fuzz|src)/[\w/.]+)`", text))
    assert files and {f for f in files if not (ROOT / f).exists()} == set()
