"""The documentation site builds with warnings as errors, and documents every public name.

``mkdocs build --strict`` (what ``make docs`` runs) fails on any warning: a broken link or
anchor, a page missing from the nav, a docstring mkdocstrings cannot render, a name it cannot
resolve. The API reference (docs/reference/) is generated from the docstrings; a name that is
exported but has no docstring renders nothing, so a new export without documentation fails
``test_every_public_name_is_in_the_reference``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pop3_sansio

ROOT = Path(__file__).resolve().parents[1]

# The public modules: tests/test_public_api.py and tests/test_public_modules.py say which.
PUBLIC_MODULES = [
    "pop3_sansio",
    "pop3_sansio.client",
    "pop3_sansio.server",
    "pop3_sansio.sasl",
    "pop3_sansio.proxy",
    "pop3_sansio.codec",
    "pop3_asyncio",
    "pop3_trio",
    "pop3_sync",
    "pop3_sync.poplib",
    "pop3_maildrop",
    "pop3_testing",
    "pop3_testing.plugin",
]


def test_every_public_module_is_in_the_reference() -> None:
    """The list above is every package and every module whose name has no underscore.

    ``pop3_cli`` is the ``pop3`` command, documented in docs/cli.md. A new package or
    public module fails here until it has a page in docs/reference/ and a line above.
    """
    found = {
        ".".join(path.relative_to(ROOT / "src").with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "src").rglob("*.py")
        if path.name == "__init__.py" or not path.name.startswith("_")
    }
    assert "pop3_sansio.client" in found
    assert found - {"pop3_cli"} == set(PUBLIC_MODULES)
    pages = "".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    assert [m for m in PUBLIC_MODULES if f"::: {m}\n" not in pages] == []


def _build(site: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's banner, not a build warning
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module's tests."""
    out = tmp_path_factory.mktemp("site")
    result = _build(out)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    warnings = [line for line in log.splitlines() if re.match(r"(WARNING|ERROR)\b", line)]
    assert warnings == []
    return out


def _anchors(site: Path) -> set[str]:
    return {
        anchor
        for page in (site / "reference").rglob("*.html")
        for anchor in re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8"))
    }


def test_site_builds_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "reference" / "pop3_sansio" / "index.html").is_file()
    assert (site / "search" / "search_index.json").is_file()


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_reference(site: Path, module: str) -> None:
    """Each name of the module's ``__all__`` has its own entry (an anchor) in the reference."""
    names = importlib.import_module(module).__all__
    assert names
    anchors = _anchors(site)
    assert module in anchors
    assert [name for name in names if f"{module}.{name}" not in anchors] == []


def test_moved_names_are_documented_where_they_live(site: Path) -> None:
    """The old top-level names of ``pop3_sansio`` are documented in their submodule."""
    anchors = _anchors(site)
    moved = pop3_sansio._MOVED
    assert len(moved) > 50
    assert [
        f"{sub}.{n}" for n, sub in moved.items() if f"pop3_sansio.{sub}.{n}" not in anchors
    ] == []


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """The strict build is what catches a broken link: the check itself can fail."""
    config = (ROOT / "mkdocs.yml").read_text()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](missing.md).\n")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\n"
        + config[config.index("validation:") : config.index("theme:")]
        + "nav:\n  - index.md\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "missing.md" in result.stderr


def test_readme_links_work_on_a_package_index() -> None:
    """PyPI shows README.md without the repository: every link in it must be absolute."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert len(links) >= 6
    assert [link for link in links if not link.startswith("https://")] == []


def test_project_urls() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    urls = project["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert all(
        url.startswith("https://github.com/pop3-sansio/pop3-sansio") for url in urls.values()
    )
    assert urls["Changelog"].endswith("/CHANGELOG.md") and (ROOT / "CHANGELOG.md").is_file()
