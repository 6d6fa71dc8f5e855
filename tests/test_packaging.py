"""Invariants of the distribution itself: a pure core, typed packages, runnable examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# docs/architecture.md, invariant 1: the core imports no I/O module and nothing from PyPI.
FORBIDDEN = {
    "socket",
    "ssl",
    "asyncio",
    "trio",
    "anyio",
    "selectors",
    "threading",
    "subprocess",
    "mailbox",
    "shutil",
    "tempfile",
    "logging",
    "pop3_maildrop",
    "pop3_asyncio",
    "pop3_cli",
}


def test_core_imports_no_io_module() -> None:
    code = (
        "import sys; before = set(sys.modules); import pop3_sansio; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "pop3_sansio" in loaded
    assert not {name.split(".")[0] for name in loaded} & FORBIDDEN
    site = [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names]
    assert all(m.startswith("pop3_sansio") for m in site), site


@pytest.mark.parametrize(
    "package",
    [
        "pop3_sansio",
        "pop3_maildrop",
        "pop3_asyncio",
        "pop3_trio",
        "pop3_sync",
        "pop3_cli",
        "pop3_testing",
    ],
)
def test_packages_are_typed(package: str) -> None:
    assert (ROOT / "src" / package / "py.typed").is_file()


def test_the_example_dialogue_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dialogue.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("S: +OK POP3 server ready <")
    assert "C: RETR 2" in lines
    assert "S: ..A line that starts with a dot" in lines  # stuffed on the wire
    assert lines[-1] == "   (client state: CLOSED, server state: CLOSED)"


def test_public_names_are_exported() -> None:
    import pop3_sansio

    missing = [name for name in pop3_sansio.__all__ if not hasattr(pop3_sansio, name)]
    assert missing == []
    assert len(set(pop3_sansio.__all__)) == len(pop3_sansio.__all__)


def test_the_parse_benchmark_runs_and_checks_its_results() -> None:
    # A smoke run (tiny sizes): the benchmark verifies the decoded output
    # before timing, so a decoder bug or an API change fails here.
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_parse.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| RETR email" in result.stdout and "target checks pass" in result.stdout


def test_the_sessions_benchmark_runs_without_failed_sessions(tmp_path: Path) -> None:
    # A smoke run against the asyncio server only (N = 1 and 20, 2 s each, 50 idle
    # connections, two message sizes): every session must succeed, timings aside.
    out = tmp_path / "sessions.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_sessions.py"), "--quick"]
    result = subprocess.run(
        [*command, "--servers", "asyncio", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sessions/s" in result.stdout and "Memory per idle session" in result.stdout
    results = json.loads(out.read_text())
    cells = results["sessions"]["pop3 asyncio"]
    assert set(cells) == {"1", "20"}
    for cell in cells.values():
        assert cell["ok"] > 0 and cell["failed"] == 0 and cell["timed_out"] == 0, cell
    idle = results["idle"]["pop3 asyncio"]
    assert idle["greeted"] == idle["logged_in"] == idle["connections"] == 50, idle
    assert set(results["sizes"]["pop3 asyncio"]) == {"4 KB", "1 MB"}


def test_the_startup_benchmark_runs_and_lists_module_sets(tmp_path: Path) -> None:
    # One timed run of each command: the commands must succeed and the module
    # sets be listed, timings aside (they are the benchmark's, not a test's).
    out = tmp_path / "startup.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_startup.py"), "--runs", "1"]
    result = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "target import pop3_sync / import poplib" in result.stdout
    results = json.loads(out.read_text())
    assert {"import pop3_sync", "import pop3_asyncio", "pop3 --help"} <= set(results["commands"])
    assert "pop3_sync._client" in results["modules"]["pop3_sync"]["modules"]


# docs/architecture.md, section 8: what a client-only import may load. A deny list,
# not an exact stdlib set, so that a new Python version does not break it; our own
# modules are an exact set.
CLIENT_PATH = {
    "pop3_sansio",
    "pop3_sansio._apop",
    "pop3_sansio._base64",
    "pop3_sansio._capabilities",
    "pop3_sansio._client_guard",
    "pop3_sansio._client_session",
    "pop3_sansio._codes",
    "pop3_sansio._commands",
    "pop3_sansio._connection",
    "pop3_sansio._errors",
    "pop3_sansio._events",
    "pop3_sansio._instructions",
    "pop3_sansio._lazy",
    "pop3_sansio._listing",
    "pop3_sansio._multiline",
    "pop3_sansio._net",
    "pop3_sansio._parse",
    "pop3_sansio._receivebuffer",
    "pop3_sansio._state",
    "pop3_sansio._values",
    "pop3_sansio.client",
}
OURS = {
    "pop3_sync": CLIENT_PATH | {"pop3_sync", "pop3_sync._client"},
    "pop3_asyncio": CLIENT_PATH
    | {"pop3_sansio._async_client", "pop3_asyncio", "pop3_asyncio._client", "pop3_asyncio._stream"},
}
# What asyncio itself loads (typing, inspect, logging, threading, contextlib) is
# allowed for pop3_asyncio; what poplib does not load is denied for pop3_sync.
DENIED = {"dataclasses", "json", "hashlib", "hmac", "ipaddress", "unicodedata", "stringprep"}
DENIED_SYNC = DENIED | {"inspect", "ast", "dis", "typing", "logging", "threading", "contextlib"}


def _loaded(code: str) -> set[str]:
    script = f"import sys\nbefore = set(sys.modules)\n{code}\nprint(*set(sys.modules) - before)"
    argv = [sys.executable, "-W", "error", "-c", script]
    return set(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split())


@pytest.mark.parametrize("binding", ["pop3_sync", "pop3_asyncio"])
def test_a_client_import_loads_only_the_client_path(binding: str) -> None:
    loaded = _loaded(f"import {binding}")
    assert {m for m in loaded if m.startswith("pop3")} == OURS[binding]
    assert not loaded & (DENIED_SYNC if binding == "pop3_sync" else DENIED)


def test_a_user_pass_login_loads_no_sasl() -> None:
    """A USER/PASS login (here against a scripted server) never imports SASL or SCRAM."""
    code = (
        "from pop3_sansio.client import READ, ClientSession\n"
        "replies = [b'+OK hi\\r\\n', b'-ERR no CAPA\\r\\n', b'+OK u\\r\\n', b'+OK in\\r\\n']\n"
        "s = ClientSession(allow_plaintext_login=True)\n"
        "for op in (s.start(), s.login('u', 'pw', mechanism='USER')):\n"
        "    try:\n"
        "        step = next(op)\n"
        "        while True:\n"
        "            if step is READ:\n"
        "                s.receive_data(replies.pop(0))\n"
        "            step = op.send(None)\n"
        "    except StopIteration:\n"
        "        pass\n"
        "assert not replies and s.connection.our_state.name == 'TRANSACTION'\n"
    )
    loaded = _loaded(code)
    assert not {m for m in loaded if "sasl" in m or "scram" in m}
    assert not loaded & {"json", "hashlib", "hmac", "stringprep", "unicodedata"}


def test_pop3_help_loads_no_server_storage_or_event_loop() -> None:
    loaded = _loaded("import pop3_cli._main as m; m.build_parser()[0].format_help()")
    assert not {m for m in loaded if m.startswith(("pop3_sansio", "pop3_maildrop"))}
    assert not {m for m in loaded if m.split(".")[0] in {"asyncio", "trio", "email", "tempfile"}}
    assert not {m for m in loaded if m.startswith(("pop3_sync", "pop3_asyncio", "pop3_trio"))}


def test_pop3_deliver_loads_no_server_sasl_or_other_command() -> None:
    """``pop3 deliver`` runs once per message: only the storage, never a server or SASL.

    Run to its end against a port nothing listens on (exit 75 after a second). psycopg
    itself imports asyncio (for its async classes), so the event loop is denied only
    among our modules: no binding, no server session, no other command's module.
    """
    code = (
        "import io, sys\n"
        "sys.argv = ['pop3', 'deliver', '--storage', "
        "'postgresql://postgres@127.0.0.1:1/none?connect_timeout=1', '--user', 'alice', "
        "'--storage-timeout', '1']\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(b'Subject: x\\n\\nhi\\n'))\n"
        "from pop3_cli._main import main\n"
        "assert main() == 75\n"
    )
    loaded = _loaded(code)
    ours = {m for m in loaded if m.startswith("pop3")}
    assert "pop3_cli._mda" in ours and "pop3_maildrop._postgres" in ours
    denied = {
        "pop3_asyncio",
        "pop3_trio",
        "pop3_sync",
        "pop3_cli._serve",
        "pop3_cli._lmtp",
        "pop3_cli._fetch",
        "pop3_sansio._sasl",
        "pop3_sansio._scram",
        "pop3_sansio._server_session",
        "pop3_sansio._server_driver",
        # The other storages (pop3_maildrop imports each when it is first named).
        "pop3_maildrop._maildir",
        "pop3_maildrop._mbox",
        "pop3_maildrop._memory",
        "pop3_maildrop._eml",
        "pop3_maildrop._backend",
    }
    assert not {m for m in ours if m.split(".")[0] in denied or m in denied}
    assert not {m for m in loaded if m.split(".")[0] in {"trio", "anyio", "aiosmtpd", "mailbox"}}
