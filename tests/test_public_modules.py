"""The public module layout: a small top level, public submodules, lazy old names.

The top level holds the protocol (connections, states, errors, events, limits);
everything else lives in ``pop3_sansio.client``, ``.server``, ``.sasl``, ``.proxy``
and ``.codec``, and is still served from the top level on first use (PEP 562).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import pop3_sansio

SRC = Path(__file__).resolve().parents[1] / "src" / "pop3_sansio"
SUBMODULES = ["client", "server", "sasl", "proxy", "codec"]


def _type_checking_names(path: Path) -> set[str]:
    """The names bound under ``if TYPE_CHECKING:`` (what mypy sees), imports and aliases."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for inner in node.body:
                if isinstance(inner, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in inner.names)
                elif isinstance(inner, ast.Assign):
                    names.update(t.id for t in inner.targets if isinstance(t, ast.Name))
    return names


def test_top_level_is_the_protocol_api() -> None:
    assert len(pop3_sansio.__all__) == 43
    assert len(set(pop3_sansio.__all__)) == 43
    assert {"ClientConnection", "ServerConnection", "Retr", "Ok", "ResponseCode"} <= set(
        pop3_sansio.__all__
    )
    assert not {"ClientSession", "ServerSession", "PlainClient", "ProxyParser"} & set(
        pop3_sansio.__all__
    )


def test_type_checking_block_agrees_with_the_lazy_table() -> None:
    """mypy sees exactly the names that ``__getattr__`` serves (moved and deprecated)."""
    seen = _type_checking_names(SRC / "__init__.py") - {"BackendProtocol", "MaildropProtocol"}
    assert seen == set(pop3_sansio._MOVED) | set(pop3_sansio._DEPRECATED)
    assert not set(pop3_sansio._MOVED) & set(pop3_sansio.__all__)


@pytest.mark.parametrize("name", SUBMODULES)
def test_submodule_type_checking_block_agrees_with_its_table(name: str) -> None:
    module = importlib.import_module(f"pop3_sansio.{name}")
    assert _type_checking_names(SRC / f"{name}.py") == set(module.__all__)
    assert set(module._EXPORTS) == set(module.__all__)
    assert sorted(dir(module)) == dir(module)
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("name", SUBMODULES)
def test_submodule_names_resolve(name: str) -> None:
    module = importlib.import_module(f"pop3_sansio.{name}")
    for export in module.__all__:
        value = getattr(module, export)
        assert module.__dict__[export] is value  # cached after the first use
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        module.Nope  # noqa: B018


@pytest.mark.parametrize("name", sorted(pop3_sansio._MOVED))
def test_moved_name_is_its_new_home_without_a_warning(name: str) -> None:
    home = importlib.import_module(f"pop3_sansio.{pop3_sansio._MOVED[name]}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(pop3_sansio, name) is getattr(home, name)
    assert name in dir(pop3_sansio)


def test_unknown_top_level_name() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pop3_sansio.Nope  # noqa: B018


def test_backend_is_deprecated_for_backend_protocol() -> None:
    from pop3_sansio.server import BackendProtocol

    with pytest.warns(DeprecationWarning, match=r"pop3_sansio\.server\.BackendProtocol"):
        assert pop3_sansio.Backend is BackendProtocol
    assert "Backend" not in pop3_sansio.__dict__  # not cached: every use warns
    assert "Backend" not in dir(pop3_sansio)


def test_maildrop_is_deprecated_for_maildrop_protocol() -> None:
    from pop3_sansio.server import MaildropProtocol

    with pytest.warns(DeprecationWarning, match=r"pop3_sansio\.server\.MaildropProtocol"):
        from pop3_sansio import Maildrop
    assert Maildrop is MaildropProtocol


def test_tls_mode_alias_is_built_on_first_use() -> None:
    from pop3_sansio import _net
    from pop3_sansio.client import TlsMode

    assert TlsMode == (_net.TlsMode)
    assert "implicit" in repr(TlsMode)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _net.Nope  # noqa: B018


def test_star_import_gives_the_top_level() -> None:
    code = "from pop3_sansio import *; print(sorted(k for k in globals() if not k.startswith('_')))"
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert ast.literal_eval(out) == sorted(pop3_sansio.__all__)


@pytest.mark.parametrize("binding", ["pop3_sync", "pop3_asyncio", "pop3_trio"])
def test_binding_server_names_load_on_first_use(binding: str) -> None:
    module = importlib.import_module(binding)
    server = importlib.import_module(f"{binding}._server")
    for name in ("Server", "ServerOptions", "serve"):
        assert getattr(module, name) is getattr(server, name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        module.Nope  # noqa: B018
