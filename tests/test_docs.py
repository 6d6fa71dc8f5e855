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


def _text_files(*tops: str) -> list[Path]:
    return sorted(
        path
        for top in tops
        for path in (ROOT / top).rglob("*")
        if path.suffix in {".py", ".md"} and "__pycache__" not in path.parts
    )


def test_cited_invariants_are_defined_in_the_architecture_document() -> None:
    # A definition is a numbered item of the "The invariants" section: "N. **...".
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## 3. The invariants", 1)[1].split("\n## ", 1)[0]
    defined = {int(n) for n in re.findall(r"^(\d+)\. \*\*", section, re.MULTILINE)}
    assert defined == set(range(1, len(defined) + 1)) and len(defined) >= 7
    cited: dict[int, list[str]] = {}
    for path in _text_files("src", "fuzz", "tests"):
        for n in re.findall(r"\binvariant (\d+)", path.read_text(), re.IGNORECASE):
            cited.setdefault(int(n), []).append(str(path.relative_to(ROOT)))
    assert len(cited) >= 5
    assert {n: files for n, files in cited.items() if n not in defined} == {}


def test_no_reference_to_a_design_file_outside_the_repository() -> None:
    # The name is built here so that this file does not match itself.
    name = "DESIGN" + ".md"
    files = [*_text_files("src", "fuzz", "tests", "docs"), ROOT / "README.md"]
    assert [str(f.relative_to(ROOT)) for f in files if name in f.read_text()] == []


def test_architecture_md_cites_existing_tests_and_files() -> None:
    # A name marked with a dagger is one the document announces before it exists.
    text = (ROOT / "docs" / "architecture.md").read_text()
    spans = re.findall(r"`([^`\n]+)`(†?)", text)
    tests = {s for s, planned in spans if re.fullmatch(r"test_\w+", s) and not planned}
    assert len(tests) > 20
    assert tests - defined_tests() == set()
    files = {
        s
        for s, planned in spans
        if re.fullmatch(r"(?:tests|fuzz|src|benchmarks)/[\w/.]+(?:::test_\w+)?", s) and not planned
    }
    assert len(files) > 10
    missing = {f for f in files if not (ROOT / f.split("::")[0]).is_file()}
    assert missing == set()
    assert {f.split("::")[1] for f in files if "::" in f} - defined_tests() == set()
