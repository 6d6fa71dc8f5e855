"""Every Python example in the documentation runs.

The convention, for everyone who writes a page in docs/:

- A fenced block opened with three backticks and ``python`` is EXECUTED. All the ``python``
  blocks of one page run in order, as one script (a later block sees what an earlier one
  defined), in a fresh temporary directory as the working directory, with the project's
  interpreter, no network but loopback, and a time limit of ``PAGE_TIMEOUT`` seconds for the
  page. So a block must be complete: it starts and stops any server it needs (on 127.0.0.1,
  port 0 for a free port), creates the files it reads, and prints or asserts something real.
- Any other fence is shown, never run: ``console`` for shell sessions (``$ pop3 ...`` lines),
  ``text`` for output, ``toml``/``ini``/``yaml`` for files, ``pycon`` for an interpreter
  session. Use ``py`` (highlighted as Python, not run) for a fragment that cannot run here
  (a server on port 110, a real provider's host); keep those few.
- A failure names the page and the line in it: the script is compiled with the page's
  name as its file name and each block at its own line numbers.

README.md's python blocks run too, as a user would run them: the client example against the
demo server (``pop3 serve``, which the README tells the reader to start), and the server example
with a ``users`` file in its directory, until it answers a connection. The README's port, 1110,
is replaced by a free one, so that a demo server already running cannot get in the way.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGE_TIMEOUT = 60.0
"""Seconds one page's examples may take together (each runs in well under a second alone)."""

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


def python_lines(text: str) -> tuple[str, int]:
    """The page as a script: its python blocks at their own line numbers, other lines blank.

    A block indented under a list item or an admonition loses its fence's indentation.
    Returns the script and how many python blocks it holds. An unclosed fence is an error.
    """
    out: list[str] = []
    blocks = 0
    fence: str | None = None
    indent = ""
    running = False
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            out.append("")
            if match:
                fence, indent = match["fence"], match["indent"]
                running = match["info"].strip().split(" ")[0] == "python"
                blocks += running
        elif match and match["fence"].startswith(fence) and not match["info"].strip():
            out.append("")
            fence = None
        else:
            out.append(line.removeprefix(indent) if running else "")
        assert len(out) == number
    if fence is not None:
        raise ValueError("a code fence is never closed")
    return "\n".join(out) + "\n", blocks


def run_script(
    source: str, name: str, cwd: Path, timeout: float = PAGE_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as the file ``name`` (for tracebacks) in ``cwd``, in a new interpreter."""
    bootstrap = "import sys; exec(compile(sys.stdin.read(), sys.argv[1], 'exec'))"
    return subprocess.run(
        # A deprecated API in an example fails it: the docs show the current one.
        [sys.executable, "-W", "error::DeprecationWarning", "-c", bootstrap, name],
        input=source,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("POP3_")},
    )


def pages() -> list[Path]:
    found = sorted(DOCS.rglob("*.md"))
    assert len(found) >= 10  # the glob found the site
    return found


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    name = str(page.relative_to(ROOT))
    source, blocks = python_lines(page.read_text(encoding="utf-8"))
    if blocks == 0:
        return  # a page of prose and shell sessions: nothing to run
    result = run_script(source, name, tmp_path)
    assert result.returncode == 0, (
        f"{name}: its python examples failed (the line numbers are the page's):\n"
        f"{result.stderr[-4000:]}"
    )


def test_a_failing_example_names_its_page_and_line(tmp_path: Path) -> None:
    page = "First line.\n\n```python\nx = 1\n```\n\nProse.\n\n```python\nassert x == 2\n```\n"
    source, blocks = python_lines(page)
    assert blocks == 2
    result = run_script(source, "docs/sample.md", tmp_path, timeout=30)
    assert result.returncode != 0
    assert 'File "docs/sample.md", line 10' in result.stderr


def test_only_python_fences_run() -> None:
    page = (
        "```console\n$ pop3 serve\n```\n"
        "```py\nnot run\n```\n"
        "````python\nran = True\n```text\ninside\n```\n````\n"
        "```text\nnot python\n```\n"
    )
    source, blocks = python_lines(page)
    assert blocks == 1
    assert [line for line in source.splitlines() if line] == [
        "ran = True",
        "```text",
        "inside",
        "```",
    ]


def test_an_indented_block_runs_dedented(tmp_path: Path) -> None:
    page = "1. A step:\n\n    ```python\n    x = 2\n    assert x == 2\n    ```\n"
    source, blocks = python_lines(page)
    assert blocks == 1
    assert source.splitlines()[3:5] == ["x = 2", "assert x == 2"]
    assert run_script(source, "docs/sample.md", tmp_path, timeout=30).returncode == 0


def test_an_unclosed_fence_is_an_error() -> None:
    with pytest.raises(ValueError, match="never closed"):
        python_lines("```python\nx = 1\n")


# --- README.md ---------------------------------------------------------------------------


def readme_blocks() -> list[tuple[int, str]]:
    """``(line of the fence, code)`` of each python block of README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    ]
    assert len(blocks) >= 2
    return blocks


README_CLIENTS = [b for b in readme_blocks() if "serve_forever" not in b[1]]
README_SERVERS = [b for b in readme_blocks() if "serve_forever" in b[1]]


def _wait_for_greeting(port: int, deadline: float) -> bytes:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                return sock.recv(512)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _on_port(block: str, port: int) -> str:
    """``block`` with the README's demo port replaced by ``port`` (it must name it once)."""
    assert block.count("1110") == 1, block
    return block.replace("1110", str(port))


def _python_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("POP3_")}


@pytest.mark.parametrize(
    ("line", "client"), README_CLIENTS, ids=[f"line {n}" for n, _ in README_CLIENTS]
)
def test_readme_client_example_runs_against_the_demo_server(
    line: int, client: str, tmp_path: Path
) -> None:
    assert line > 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pop3_cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_for_greeting(port, time.monotonic() + 20).startswith(b"+OK")
        result = run_script("\n" * line + _on_port(client, port), "README.md", tmp_path, timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert lines  # the demo maildrop has messages: one line each, "msgno uid size"
    assert all(re.fullmatch(r"\d+ \S+ \d+", line) for line in lines), lines


@pytest.mark.parametrize(
    ("line", "server_code"), README_SERVERS, ids=[f"line {n}" for n, _ in README_SERVERS]
)
def test_readme_server_example_serves(line: int, server_code: str, tmp_path: Path) -> None:
    assert line > 0
    port = _free_port()
    users = tmp_path / "users"
    users.write_text("demo:demo\n")
    users.chmod(0o600)
    script = tmp_path / "readme_server.py"
    script.write_text("\n" * line + _on_port(server_code, port))
    bootstrap = "import sys; exec(compile(open(sys.argv[1]).read(), 'README.md', 'exec'))"
    with open(tmp_path / "stderr", "w+b") as err:
        server = subprocess.Popen(
            [sys.executable, "-c", bootstrap, str(script)],
            cwd=tmp_path,
            env=_python_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            greeting = _wait_for_greeting(port, time.monotonic() + 20)
            running = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=10)
        err.seek(0)
        assert greeting.startswith(b"+OK") and running, err.read().decode(errors="replace")


# --- console sessions: the pop3 options they use exist --------------------------------------


def console_commands(text: str) -> list[tuple[int, list[str]]]:
    """``(line, argv)`` of each ``$ pop3 ...`` command in the page's ``console`` blocks.

    A command continued with a backslash is joined; ``#`` starts a comment.
    """
    commands: list[tuple[int, list[str]]] = []
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match and match["info"].strip().split(" ")[0] == "console":
                fence = match["fence"]
            continue
        if match and match["fence"].startswith(fence) and not match["info"].strip():
            fence = None
            continue
        if pending is not None:
            start, joined = pending
            pending = None
            line = joined + " " + line.strip()
        elif line.startswith("$ "):
            start, line = number, line[2:]
        else:
            continue  # output
        if line.endswith("\\"):
            pending = (start, line[:-1])
            continue
        argv = shlex.split(line, comments=True)
        if argv and argv[0] == "pop3":
            commands.append((start, argv))
    return commands


def pop3_help() -> dict[str, str]:
    """``pop3 COMMAND --help`` for each command ``pop3 --help`` lists."""
    run = [sys.executable, "-m", "pop3_cli"]
    top = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True).stdout
    names = re.findall(r"^ {4}(\w+) ", top, re.MULTILINE)
    assert {"serve", "fetch"} <= set(names)
    return {
        name: subprocess.run(
            [*run, name, "--help"], capture_output=True, text=True, check=True
        ).stdout
        for name in names
    }


def unknown_options(text: str, where: str, helps: dict[str, str]) -> tuple[int, list[str]]:
    """How many options the page's ``$ pop3`` commands use, and those the help does not list."""
    checked = 0
    unknown: list[str] = []
    for line, argv in console_commands(text):
        if argv[1:2] == ["--help"]:
            continue
        if len(argv) < 2 or argv[1] not in helps:
            unknown.append(f"{where}:{line}: no command {argv[1:2]}")
            continue
        for arg in argv[2:]:
            option = arg.split("=", 1)[0]
            if not option.startswith("-"):
                continue
            checked += 1
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helps[argv[1]]):
                unknown.append(f"{where}:{line}: pop3 {argv[1]} has no {option}")
    return checked, unknown


def test_console_examples_use_options_that_exist() -> None:
    """Each ``$ pop3 COMMAND --option`` in a console block is in ``pop3 COMMAND --help``.

    Cheap (one ``--help`` per command), and it catches a page left behind by a renamed flag.
    """
    helps = pop3_help()
    total = 0
    unknown: list[str] = []
    for page in [*pages(), ROOT / "README.md"]:
        name = str(page.relative_to(ROOT))
        checked, found = unknown_options(page.read_text(encoding="utf-8"), name, helps)
        total += checked
        unknown += found
    assert total > 20
    assert unknown == []


def test_console_commands_are_found() -> None:
    page = (
        "```console\n$ pop3 serve --port 0  # a comment --nope\n"
        "$ pop3 fetch --host h \\\n      --keep\nfetched 1 message\n```\n"
        "```text\n$ pop3 serve --not-checked\n```\n"
    )
    assert console_commands(page) == [
        (2, ["pop3", "serve", "--port", "0"]),
        (3, ["pop3", "fetch", "--host", "h", "--keep"]),
    ]
    helps = {"serve": "  --port PORT  the port\n  --port-range", "fetch": "--host --keep"}
    assert unknown_options(page, "p.md", helps) == (3, [])
    stale = "```console\n$ pop3 serve --port 1 --por 2 --range\n$ pop3 pw\n```\n"
    assert unknown_options(stale, "p.md", helps) == (
        3,
        [
            "p.md:2: pop3 serve has no --por",
            "p.md:2: pop3 serve has no --range",
            "p.md:3: no command ['pw']",
        ],
    )
