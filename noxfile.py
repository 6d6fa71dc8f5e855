"""The test matrix: every Python the package metadata claims.

``make test`` runs the whole suite on the default Python (the one ``.venv`` is made with);
``nox -s versions`` (``make test-versions``) runs the version tier on each other Python in
``PYTHONS``. ``tests/test_python_versions.py`` checks that ``PYTHONS``, the classifiers,
``requires-python`` and the tools' target versions agree, so the metadata cannot claim a
Python that this matrix does not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

# Every Python the package supports, lowest first (requires-python is the first).
PYTHONS = ["3.11", "3.12", "3.13"]

# The Python running nox is the one `make test` ran the whole suite on.
DEFAULT = f"{sys.version_info.major}.{sys.version_info.minor}"

# The tiers whose outcome depends on the Python version: the core, the bindings (asyncio,
# trio, blocking sockets, TLS), the CLI, conformance, the dialogues, hostile peers, the
# storage and the packaging checks. Left to the default Python's whole-suite run: the tiers
# that measure something other than the interpreter, and take most of the suite's time --
# interop with real peers (their programs are the same on every Python; our side of each
# dialogue is exercised here by the conformance tier), the 60-second load run, the
# SIGKILL crash runs, and the servers on PostgreSQL (the storage's own contract against
# it stays in the tier).
NOT_VERSION_DEPENDENT = (
    "test_interop_*.py",  # curl, mpop, fetchmail, getmail6, Dovecot, Twisted
    "test_proxy_haproxy.py",  # HAProxy in front of each server
    "test_fail2ban.py",  # fail2ban-regex on the servers' log
    "test_load.py",
    "test_crash_safety.py",
    "test_docs_site.py",  # mkdocs reads the sources statically (the examples run everywhere)
    "test_fetch_dovecot.py",  # pop3 fetch against Dovecot
    "test_postgres_cluster.py",  # the tests' own PostgreSQL
    "test_postgres_serve.py",  # pop3 serve on a real PostgreSQL, stopped and restarted
    "test_postgres_crash.py",
    "test_postgres_scale.py",  # 200 MB through PostgreSQL; 1,000 sessions
    "test_postgres_delivery.py",  # pop3 deliver, lmtp and import against PostgreSQL
    "test_postgres_hosts.py",  # three servers behind HAProxy, one PostgreSQL, under load
)

TESTS = Path(__file__).parent / "tests"

nox.options.sessions = ["versions"]
# A claimed Python that is not installed is a failure, never a silent skip.
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"


def version_tier() -> list[str]:
    """The test files run on every Python: all of them but ``NOT_VERSION_DEPENDENT``."""
    excluded = {path for pattern in NOT_VERSION_DEPENDENT for path in TESTS.glob(pattern)}
    return sorted(
        path.relative_to(TESTS.parent).as_posix()
        for path in TESTS.glob("test_*.py")
        if path not in excluded
    )


def _pyenv_root() -> Path | None:
    """Where pyenv keeps its builds: ``$PYENV_ROOT``, else what ``pyenv root`` says."""
    if root := os.environ.get("PYENV_ROOT"):
        return Path(root)
    if pyenv := shutil.which("pyenv"):
        # pyenv found on PATH, with a fixed argument: nothing here comes from input.
        out = subprocess.run(  # noqa: S603
            [pyenv, "root"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return None


def _add_pyenv_builds_to_path() -> None:
    """Append each installed pyenv build's ``bin`` directory to ``PATH``.

    pyenv's shims answer only for the versions it has been told to activate, so a
    ``python3.12`` shim fails when 3.12 is installed but not selected. Appending (not
    prepending) the builds keeps ``python3`` on PATH what it was.
    """
    root = _pyenv_root()
    if root is None:
        return
    builds = sorted((root / "versions").glob("3.*/bin"), reverse=True)
    path = os.environ.get("PATH", "").split(os.pathsep)
    path += [str(b) for b in builds if str(b) not in path]
    os.environ["PATH"] = os.pathsep.join(path)


_add_pyenv_builds_to_path()


@nox.session(python=[v for v in PYTHONS if v != DEFAULT])
def versions(session: nox.Session) -> None:
    """The version tier on one Python, with the project and its test extra installed."""
    if DEFAULT not in PYTHONS:
        session.error(f"nox runs on Python {DEFAULT}, which the package does not claim")
    session.install("-e", ".[test]")
    # -bb and the warnings-as-errors filters of pyproject.toml, as in `make test`.
    # Arguments after `--` go to pytest: `nox -s versions-3.13 -- -x --durations=10`.
    session.run(
        "python",
        "-bb",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        *version_tier(),
        *session.posargs,
    )
