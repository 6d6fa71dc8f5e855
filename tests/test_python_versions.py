"""The Pythons the package claims are the Pythons CI tests.

``noxfile.py``'s ``PYTHONS`` is the matrix: ``make test`` runs the whole suite on the default
Python and ``make test-versions`` the version tier on each other one. The classifiers,
``requires-python``, ruff's and mypy's target versions and the README must say the same, so
that no change can claim a Python the matrix does not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import nox
import pytest

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER = re.compile(r"Programming Language :: Python :: (3\.\d+)$")


def load_noxfile(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``noxfile.py`` as a module; the ``PATH`` it extends is restored after the test."""
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    nox.registry.reset()  # nox registers each session once per process
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def noxfile(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_noxfile(monkeypatch)


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def minor(version: str) -> int:
    major, minor = version.split(".")
    assert major == "3"
    return int(minor)


def test_the_matrix_is_every_minor_version_from_the_lowest_up(noxfile: ModuleType) -> None:
    pythons = noxfile.PYTHONS
    assert pythons, "the matrix names no Python"
    low, high = minor(pythons[0]), minor(pythons[-1])
    assert pythons == [f"3.{m}" for m in range(low, high + 1)]


def test_classifiers_name_exactly_the_matrix(noxfile: ModuleType, project: dict[str, Any]) -> None:
    classifiers = project["project"]["classifiers"]
    claimed = [m.group(1) for c in classifiers if (m := CLASSIFIER.match(c))]
    assert sorted(claimed, key=minor) == noxfile.PYTHONS
    assert "Programming Language :: Python :: 3 :: Only" in classifiers


def test_requires_python_is_the_lowest_of_the_matrix(
    noxfile: ModuleType, project: dict[str, Any]
) -> None:
    assert project["project"]["requires-python"] == f">={noxfile.PYTHONS[0]}"


def test_the_tools_check_against_the_lowest_python(
    noxfile: ModuleType, project: dict[str, Any]
) -> None:
    lowest = noxfile.PYTHONS[0]
    assert project["tool"]["mypy"]["python_version"] == lowest
    assert project["tool"]["ruff"]["target-version"] == "py3" + lowest.split(".")[1]


def test_the_readme_states_the_lowest_python(noxfile: ModuleType) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"python3` ({noxfile.PYTHONS[0]} or newer)" in readme


def test_nox_runs_every_claimed_python_but_the_one_running_the_whole_suite(
    noxfile: ModuleType,
) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running in noxfile.PYTHONS, f"the suite runs on {running}, which is not claimed"
    # The Pythons nox runs the session on, as its registry holds them after loading the file.
    matrix = nox.registry.get()["versions"].python
    assert sorted(matrix, key=minor) == [v for v in noxfile.PYTHONS if v != running]
    assert running == noxfile.DEFAULT
    assert nox.options.sessions == ["versions"]
    # A claimed Python that is missing fails the run instead of being skipped.
    assert nox.options.error_on_missing_interpreters is True


def test_ci_runs_the_whole_suite_then_the_other_pythons() -> None:
    steps = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("POP3_REQUIRE_PEERS=1 make")
    ]
    assert steps == ["POP3_REQUIRE_PEERS=1 make test", "POP3_REQUIRE_PEERS=1 make test-versions"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test-versions: .*\n\t\$\(PY\) -m nox ", makefile, re.MULTILINE)


def test_the_version_tier_leaves_out_only_the_interpreter_independent_tiers(
    noxfile: ModuleType,
) -> None:
    tier = set(noxfile.version_tier())
    every = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")}
    left_out = every - tier
    assert tier <= every
    # Each pattern still names a tier that exists: a rename cannot widen the exclusion unseen.
    for pattern in noxfile.NOT_VERSION_DEPENDENT:
        assert list((ROOT / "tests").glob(pattern)), pattern
    assert left_out == {
        p
        for p in every
        if re.fullmatch(
            r"tests/test_(interop_\w+|proxy_haproxy|fail2ban|load|crash_safety|docs_site"
            r"|fetch_dovecot|postgres_(cluster|serve|crash|scale|delivery|hosts))\.py",
            p,
        )
    }
    for core in (
        "test_connection_client.py",
        "test_connection_server.py",
        "test_asyncio.py",
        "test_trio.py",
        "test_sync.py",
        "test_cli.py",
        "test_conformance.py",
        "test_python_versions.py",
    ):
        assert f"tests/{core}" in tier


def test_pyenv_builds_are_appended_to_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for version in ("3.12.1", "3.13.0"):
        (tmp_path / "versions" / version / "bin").mkdir(parents=True)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", os.pathsep.join(["/first", str(tmp_path / "versions/3.13.0/bin")]))
    noxfile = load_noxfile(monkeypatch)
    assert os.environ["PATH"].split(os.pathsep) == [
        "/first",
        str(tmp_path / "versions/3.13.0/bin"),  # already there: not repeated
        str(tmp_path / "versions/3.12.1/bin"),
    ]
    monkeypatch.delenv("PYENV_ROOT")
    monkeypatch.setenv("PATH", "/first")
    noxfile._add_pyenv_builds_to_path()  # no pyenv at all: PATH unchanged
    assert os.environ["PATH"] == "/first"
