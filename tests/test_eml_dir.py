"""``pop3 serve --eml-dir DIR``: a folder of .eml files served from memory.

The server runs as ``pop3 serve`` in a subprocess on a free port (``served.serving``)
and is read with the standard library's poplib; the usage errors run ``main()`` in-process.
"""

from __future__ import annotations

import poplib
from pathlib import Path

import pytest

from pop3_cli import main
from served import crlf, serving

MESSAGES = {
    "2-second.eml": b"Subject: second\r\n\r\nCRLF already\r\n",
    "1-first.eml": b"Subject: first\n\n.a line starting with a dot\n",
    "3-third.EML": b"Subject: third\n\nno final newline",
}


@pytest.fixture
def eml_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mail"
    folder.mkdir()
    for name, data in MESSAGES.items():
        (folder / name).write_bytes(data)
    (folder / "README.txt").write_bytes(b"not a message")
    return folder


def messages_of(port: int, user: str, password: str, *, delete: int | None = None) -> list[bytes]:
    client = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        client.user(user)
        client.pass_(password)
        count = client.stat()[0]
        got = [b"".join(line + b"\r\n" for line in client.retr(n)[1]) for n in range(1, count + 1)]
        if delete is not None:
            client.dele(delete)
    finally:
        client.quit()
    return got


IN_NAME_ORDER = [crlf(MESSAGES[name]) for name in sorted(MESSAGES)]


def test_each_user_gets_a_copy_and_deletions_stay_in_memory(tmp_path: Path, eml_dir: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:alice-pw:not-used-with-eml-dir\n")
    users.chmod(0o600)
    args = ("--eml-dir", str(eml_dir), "--users", str(users), "--user", "bob:bob-pw")
    with serving(tmp_path, *args, "--backend", "sync") as server:
        assert messages_of(server.port, "alice", "alice-pw", delete=1) == IN_NAME_ORDER
        assert messages_of(server.port, "alice", "alice-pw") == IN_NAME_ORDER[1:]
        assert messages_of(server.port, "bob", "bob-pw") == IN_NAME_ORDER  # a copy of his own
        log = server.stderr
    files = {p.name: p.read_bytes() for p in eml_dir.iterdir() if p.name != "README.txt"}
    assert files == MESSAGES  # untouched
    assert not (tmp_path / "not-used-with-eml-dir").exists()
    assert f"serving 3 messages of {eml_dir} from memory to 2 user(s)" in log


def test_the_demo_user_is_served_the_folder(tmp_path: Path, eml_dir: Path) -> None:
    with serving(tmp_path, "--eml-dir", str(eml_dir), until=b"Stop with Ctrl-C.") as server:
        assert messages_of(server.port, "demo", "demo") == IN_NAME_ORDER
    assert f"Demo maildrop: the .eml files of {eml_dir}, in memory".encode() in server.stdout
    assert b"curl pop3://demo:demo@127.0.0.1:" in server.stdout


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["--eml-dir", "{tmp}/missing"],
            1,
            "pop3 serve: --eml-dir: no such directory: {tmp}/missing",
        ),
        (["--eml-dir", "{tmp}/empty"], 1, "pop3 serve: --eml-dir: no .eml files in {tmp}/empty"),
        (["--eml-dir", "{tmp}/file.eml"], 1, "pop3 serve: --eml-dir: not a directory: {tmp}/file"),
        (
            ["--eml-dir", "{tmp}/empty", "--maildir", "{tmp}"],
            2,
            "cannot be combined with --maildir",
        ),
        (["--eml-dir", "{tmp}/empty", "--workers", "2"], 2, "one process's memory: drop --workers"),
    ],
)
def test_bad_eml_dir_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "note.txt").write_text("no messages here")
    (tmp_path / "file.eml").write_bytes(b"Subject: x\n\nx\n")
    assert main(["serve", *(arg.format(tmp=tmp_path) for arg in argv)]) == code
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err
    if code == 1:
        assert err.count("\n") == 1


def test_help_says_what_eml_dir_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--eml-dir DIR serve the *.eml files of DIR from memory" in out
    assert "each of those users, every user getting a copy of its own" in out
    assert "Deletions last until the server stops; the files are never changed." in out
