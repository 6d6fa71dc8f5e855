"""The test suite's own shape: test modules share code through helpers.py and conftest.py.

A test module that imports another runs that module's fixtures and set-up wherever it is
imported (an autouse fixture imported for its side effect, a fake copied in two
variants), so what is shared lives in a module that is not itself collected.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (in functions, under ``if`` too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            names.update(
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return {name.split(".")[0] for name in names}


def test_no_test_module_imports_another() -> None:
    modules = sorted(TESTS.glob("test_*.py"))
    assert len(modules) > 40  # the glob found the suite
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.startswith("test_"))
        for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import test_a\n"
        "from test_b import x\n"
        "def f():\n"
        "    from test_c.sub import y\n"
        "    importlib.import_module('test_d')\n"
        "from helpers import FakeBackend\n"
    )
    assert imported_modules(sample) == {"test_a", "test_b", "test_c", "test_d", "helpers"}
