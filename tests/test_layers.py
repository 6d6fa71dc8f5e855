"""The dependency rule of docs/architecture.md, read from the source's import statements.

Every import is counted, at module level or inside a function, so a lazy import
cannot hide a dependency; imports under ``if TYPE_CHECKING:`` are counted too,
except that they may name I/O modules (``ssl.SSLContext`` as a type).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

PROTOCOL, NEUTRAL, CLIENT, SERVER, FACADE = "protocol", "neutral", "client", "server", "facade"

LAYER = {
    # The protocol engine: connections, events, framing. Imports only its own layer.
    "_errors": PROTOCOL,
    "_values": PROTOCOL,
    "_codes": PROTOCOL,
    "_state": PROTOCOL,
    "_commands": PROTOCOL,
    "_parse": PROTOCOL,
    "_events": PROTOCOL,
    "_base64": PROTOCOL,
    "_apop": PROTOCOL,
    "_receivebuffer": PROTOCOL,
    "_multiline": PROTOCOL,
    "_listing": PROTOCOL,
    "_capabilities": PROTOCOL,
    "_connection": PROTOCOL,
    # What both roles share above the engine.
    "_instructions": NEUTRAL,
    "_net": NEUTRAL,
    "_saslprep": NEUTRAL,
    "_scram": NEUTRAL,
    "_sasl": NEUTRAL,
    # One role each; neither imports the other.
    "_client_session": CLIENT,
    "_client_guard": CLIENT,
    "_async_client": CLIENT,
    "_storage": SERVER,
    "_server_session": SERVER,
    "_server_driver": SERVER,
    "_server_options": SERVER,
    "_accept": SERVER,
    "_lifecycle": SERVER,
    "_serverlog": SERVER,
    "_proxy": SERVER,
    # Re-exports only, each name imported on first use.
    "__init__": FACADE,
    "_lazy": FACADE,
    "client": FACADE,
    "server": FACADE,
    "sasl": FACADE,
    "proxy": FACADE,
    "codec": FACADE,
}
"""Every module of pop3_sansio and its layer; a new module must be placed here."""

MAY_IMPORT = {
    PROTOCOL: {PROTOCOL},
    NEUTRAL: {PROTOCOL, NEUTRAL},
    CLIENT: {PROTOCOL, NEUTRAL, CLIENT},
    SERVER: {PROTOCOL, NEUTRAL, SERVER},
    FACADE: {PROTOCOL, NEUTRAL, CLIENT, SERVER, FACADE},
}

PACKAGES_BELOW = {
    "pop3_sansio": set(),
    "pop3_maildrop": {"pop3_sansio"},
    "pop3_asyncio": {"pop3_sansio"},
    "pop3_trio": {"pop3_sansio"},
    "pop3_sync": {"pop3_sansio"},
    "pop3_cli": {"pop3_sansio", "pop3_maildrop", "pop3_asyncio", "pop3_trio", "pop3_sync"},
    "pop3_testing": {"pop3_sansio", "pop3_maildrop", "pop3_asyncio", "pop3_trio", "pop3_sync"},
}
"""Which of our packages each package may import: one way only, toward the core."""

IO_MODULES = {
    "asyncio",
    "io",
    "logging",
    "os",
    "random",
    "secrets",
    "selectors",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "time",
    "trio",
}
"""What the core never imports at run time: it does no I/O, reads no clock, draws no
randomness (docs/architecture.md, invariant 1)."""


class Import:
    def __init__(self, module: str, names: list[str], line: int, typing_only: bool) -> None:
        self.module = module
        self.names = names
        self.line = line
        self.typing_only = typing_only

    def __repr__(self) -> str:
        return f"line {self.line}: {self.module} {self.names}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> Iterator[Import]:
    """Every import in ``path``, relative ones resolved to absolute module names."""
    package = path.parent.name
    tree = ast.parse(path.read_text(), str(path))
    typing_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                typing_lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    for node in ast.walk(tree):
        typing_only = getattr(node, "lineno", 0) in typing_lines
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, [], node.lineno, typing_only)
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level:
                base = package if node.level == 1 else ""
                module = f"{base}.{node.module}" if node.module else base
                if node.module is None:  # from . import _events
                    for name in names:
                        yield Import(f"{package}.{name}", [], node.lineno, typing_only)
                    continue
            else:
                module = node.module or ""
            yield Import(module, names, node.lineno, typing_only)


def core_modules() -> list[Path]:
    return sorted((SRC / "pop3_sansio").glob("*.py"))


def test_every_core_module_has_a_layer() -> None:
    assert {path.stem for path in core_modules()} == set(LAYER)


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: path.stem)
def test_core_modules_import_only_their_layer_and_below(path: Path) -> None:
    layer = LAYER[path.stem]
    wrong = [
        found
        for found in imports(path)
        if found.module.startswith("pop3_sansio.")
        and LAYER[found.module.split(".")[1]] not in MAY_IMPORT[layer]
    ]
    assert wrong == [], f"{path.stem} ({layer}) imports from a layer it may not"


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: path.stem)
def test_the_core_does_no_io(path: Path) -> None:
    wrong = [
        found
        for found in imports(path)
        if found.module.split(".")[0] in IO_MODULES and not found.typing_only
    ]
    assert wrong == []


def all_modules() -> list[Path]:
    return sorted(path for package in PACKAGES_BELOW for path in (SRC / package).glob("*.py"))


@pytest.mark.parametrize("path", all_modules(), ids=lambda path: f"{path.parent.name}.{path.stem}")
def test_packages_import_only_the_packages_below_them(path: Path) -> None:
    package = path.parent.name
    ours = set(PACKAGES_BELOW)
    wrong = [
        found
        for found in imports(path)
        if found.module.split(".")[0] in ours
        and found.module.split(".")[0] not in PACKAGES_BELOW[package] | {package}
    ]
    assert wrong == []


@pytest.mark.parametrize("path", all_modules(), ids=lambda path: f"{path.parent.name}.{path.stem}")
def test_private_names_stay_in_their_module(path: Path) -> None:
    """No module takes a ``_name`` from another, nor another package's ``_module``."""
    package = path.parent.name
    wrong = []
    for found in imports(path):
        top, _, rest = found.module.partition(".")
        if top not in PACKAGES_BELOW:
            continue
        if top != package and rest.startswith("_"):
            wrong.append(found)  # another package's private module
        elif any(name.startswith("_") and name != "__version__" for name in found.names):
            wrong.append(found)  # a private name of another module
    assert wrong == []


def test_the_rule_catches_a_crossing(tmp_path: Path) -> None:
    """The checks above see a client-to-server import, a private name and a lazy import."""
    module = tmp_path / "pop3_sansio" / "_client_session.py"
    module.parent.mkdir()
    module.write_text(
        "from ._server_session import ServerSession\n"
        "def f():\n"
        "    from ._connection import _private\n"
        "    import socket\n"
    )
    found = list(imports(module))
    assert [(i.module, i.names) for i in found] == [
        ("pop3_sansio._server_session", ["ServerSession"]),
        ("pop3_sansio._connection", ["_private"]),
        ("socket", []),
    ]
    assert LAYER["_server_session"] not in MAY_IMPORT[LAYER["_client_session"]]


@pytest.mark.parametrize(
    "path",
    [path for path in core_modules() if LAYER[path.stem] == PROTOCOL],
    ids=lambda path: path.stem,
)
def test_the_protocol_layer_imports_neither_dataclasses_nor_typing(path: Path) -> None:
    """The import-time rule (docs/architecture.md, section 8): types only under TYPE_CHECKING."""
    wrong = [
        found
        for found in imports(path)
        if found.module in {"dataclasses", "typing"} and not found.typing_only
    ]
    assert wrong == []


CLIENT_MODULES = [
    SRC / "pop3_sync" / "_client.py",
    SRC / "pop3_asyncio" / "_client.py",
    SRC / "pop3_asyncio" / "_stream.py",
    SRC / "pop3_trio" / "_client.py",
]


@pytest.mark.parametrize("path", CLIENT_MODULES, ids=lambda path: f"{path.parent.name}.{path.stem}")
def test_bindings_client_modules_import_no_server_sasl_or_proxy(path: Path) -> None:
    wrong = [
        found
        for found in imports(path)
        if found.module in {"pop3_sansio.server", "pop3_sansio.sasl", "pop3_sansio.proxy"}
    ]
    assert wrong == []
