"""``pop3 fetch``'s accounts, secrets, state key, status, trace and daemon, with real processes.

``pop3 fetch`` runs as a subprocess against ``pop3 serve`` (``served.PopServer``) or
against a server of this process (``bindings.serving``, for OAuth 2.0 tokens), on
127.0.0.1. Each run gets ``XDG_CONFIG_HOME`` of its own, so no config file of the
machine is read. The secrets are distinctive strings that are searched for in every
output.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from bindings import serving
from fetched import mbox_messages, unwrap
from ourserver import PASSWORD as SERVED_PASSWORD, USER as SERVED_USER, serve_maildir
from pop3_cli import main
from pop3_cli._config import RUN_OPTIONS, config_keys, resolve_accounts
from pop3_cli._errors import CliError, UsageError
from pop3_cli._main import _octets, build_parser
from pop3_cli._passwords import run_secret_command
from pop3_cli._state import JOURNAL_FILE, STATE_FILE
from pop3_maildrop import Backend, MaildirStorage, UserDB
from served import AS_RETRIEVED, PopServer, crlf, deliver, env, pop3, stored, write_users

ROOT = Path(__file__).resolve().parents[1]
USER = "alice"
PASSWORD = "Cfg-pw-5e1f7a"  # distinctive, so it can be looked for in any output
TOKEN = "ya29.Tok-9c8b7a-oauth"
SUMMARY = re.compile(r"fetched ([0-9]+) messages? \(([0-9]+) octets?\)")


def message(n: int, size: int = 0) -> bytes:
    return f"Subject: message {n}\n\nbody {n}\n".encode() + b"x" * size + b"\n"


@contextmanager
def pop_server(
    tmp_path: Path, messages: list[bytes], users: dict[str, str] | None = None
) -> Iterator[PopServer]:
    """``pop3 serve`` with ``messages`` in alice's Maildir (and the other users' empty)."""
    users = users or {USER: PASSWORD}
    root = tmp_path / "served"
    for name in users:
        for sub in ("tmp", "new", "cur"):
            (root / name / sub).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        deliver(root / USER, f"{1_700_000_000 + i}.M{i}P1.test", raw)
    with PopServer(tmp_path, "asyncio", write_users(tmp_path / "users", users), root) as server:
        yield server


def on_server(tmp_path: Path) -> dict[str, bytes]:
    return stored(tmp_path / "served" / USER)


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def run(
    tmp_path: Path, *args: str, timeout: float = 60, **environ: str
) -> subprocess.CompletedProcess[str]:
    """``pop3 fetch ARGS`` to its end, with a config directory of its own."""
    environ.setdefault("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return subprocess.run(
        pop3("fetch", *args),
        env=env(**environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``pop3 fetch ARGS`` in this process (for runs that stop before connecting)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    code = main(["fetch", *args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def plain_args(port: int, dest: Path, *args: str) -> list[str]:
    return [
        *("--host", "127.0.0.1", "--port", str(port), "--user", USER),
        *("--password-env", "POP3_TEST_PASSWORD", "--maildir", str(dest), *AS_RETRIEVED, *args),
    ]


def one_line(text: str) -> bool:
    return text.count("\n") == 1 and text.endswith("\n") and "Traceback" not in text


# --- the config file ---------------------------------------------------------------------------


def test_config_fetches_every_account_in_order_and_flags_override_the_file(
    tmp_path: Path,
) -> None:
    messages = [message(n) for n in range(3)]
    with pop_server(tmp_path, messages, {USER: PASSWORD, "bob": "bob-pw"}) as server:
        deliver(tmp_path / "served" / "bob", "1.M1P1.bob", b"Subject: for bob\n\nhi\n")
        config = write_config(
            tmp_path / "cfg" / "fetch.toml",
            f"""
[defaults]
host = "127.0.0.1"
port = {server.port}
keep = true

[accounts.work]
user = "{USER}"
password_env = "POP3_TEST_PASSWORD"
maildir = "mail/work"        # relative to this file's directory

[accounts.home]
user = "bob"
password_command = "printf '%s\\\\n' bob-pw"
maildir = "~/mail/home"
keep = false
""",
        )
        home = tmp_path / "home"
        result = run(tmp_path, "--config", str(config), POP3_TEST_PASSWORD=PASSWORD, HOME=str(home))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        # In file order, each summary naming its account.
        assert result.stdout.splitlines() == [
            "work: fetched 3 messages (96 octets)",
            "home: fetched 1 message (24 octets), 1 deleted on the server",
        ]
        assert len(stored(tmp_path / "cfg" / "mail" / "work")) == 3
        # Stored in the default form: LF line ends, Delivered-To: and Received: in front.
        assert [unwrap(m, "bob@127.0.0.1") for m in stored(home / "mail" / "home").values()] == [
            b"Subject: for bob\n\nhi\n"
        ]
        assert len(on_server(tmp_path)) == 3  # keep = true
        assert stored(tmp_path / "served" / "bob") == {}  # keep = false

        # A flag overrides the file, for every account: nothing is deleted now; and
        # --account picks accounts (repeatable), in the order given.
        deliver(tmp_path / "served" / "bob", "2.M2P1.bob", b"Subject: again\n\nhi\n")
        result = run(
            tmp_path,
            *("--config", str(config), "--account", "home", "--keep", "-q"),
            HOME=str(home),
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert len(stored(tmp_path / "served" / "bob")) == 1
        assert len(stored(home / "mail" / "home")) == 2


def test_a_failing_account_does_not_stop_the_others_and_sets_the_exit_status(
    tmp_path: Path,
) -> None:
    with pop_server(tmp_path, [message(1)]) as server:
        config = write_config(
            tmp_path / "fetch.toml",
            f"""
[accounts.wrong]
host = "127.0.0.1"
port = {server.port}
user = "{USER}"
password_command = "echo Wr0ng-{PASSWORD}"
maildir = "wrong"

[accounts.broken]
host = "127.0.0.1"
port = {server.port}
user = "{USER}"
password_command = "echo oops >&2; exit 3"
maildir = "broken"

[accounts.right]
host = "127.0.0.1"
port = {server.port}
user = "{USER}"
password_command = "echo {PASSWORD}"
maildir = "right"
keep = true
""",
        )
        result = run(tmp_path, "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    # The command's own stderr is passed through; each failure is one line naming its account.
    assert lines[0].startswith("pop3 fetch: account wrong: login to 127.0.0.1:")
    assert lines[1:] == [
        "oops",
        "pop3 fetch: account broken: --password-command: the command exited with status 3",
    ]
    assert result.stdout == "right: fetched 1 message (32 octets)\n"
    assert PASSWORD not in result.stderr


def test_the_default_config_file_is_read_when_no_host_is_given(tmp_path: Path) -> None:
    with pop_server(tmp_path, [message(1), message(2)]) as server:
        xdg = tmp_path / "xdg"
        write_config(
            xdg / "pop3" / "fetch.toml",
            f"""
[accounts.only]
host = "127.0.0.1"
port = {server.port}
user = "{USER}"
password_env = "POP3_TEST_PASSWORD"
maildir = "{tmp_path / "dest"}"
""",
        )
        result = run(tmp_path, POP3_TEST_PASSWORD=PASSWORD, XDG_CONFIG_HOME=str(xdg))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "fetched 2 messages (64 octets), 2 deleted on the server\n"
        # Without a config file: the required options are named, exit status 2.
        missing = run(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "none"))
        assert missing.returncode == 2
        assert "error: --host is required" in missing.stderr


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_config_file_others_can_read_or_write_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    config = write_config(tmp_path / "fetch.toml", '[accounts.a]\nhost = "h"\n')
    config.chmod(mode)
    result = run_here(capsys, monkeypatch, tmp_path, "--config", str(config))
    assert result.returncode == 1
    assert one_line(result.stderr)
    assert f"the config file {config} (mode {mode:04o}) can be" in result.stderr
    assert "chmod go-" in result.stderr


BASE = 'host = "h"\nuser = "u"\npassword_env = "V"\nmaildir = "d"\n'


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ("prot = 110", "account 'a': prot: unknown key"),
        ('port = "x"', "account 'a': port: a port is a number from 0 to 65535"),
        ("port = 70000", "account 'a': port: a port is a number from 0 to 65535"),
        ("port = true", "account 'a': port: expected a value"),
        ('keep = "yes"', "account 'a': keep: expected true or false"),
        ("timeout = -1", "account 'a': timeout: expected a positive number of seconds"),
        ('auth = "kerberos"', "account 'a': auth: expected one of user, apop,"),
        ("ca_file = 7", "account 'a': ca_file: expected a string"),
        ("daemon = 60", "account 'a': daemon: unknown key (it says how to run"),
        (
            "starttls = true\nimplicit_tls = true",
            "account 'a': starttls and implicit_tls cannot be used together",
        ),
        (
            'password_file = "f"',
            "account 'a': password_env and password_file cannot be used together",
        ),
    ],
)
def test_a_bad_config_is_a_usage_error_naming_the_file_the_account_and_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    error: str,
) -> None:
    config = write_config(tmp_path / "fetch.toml", f"[accounts.a]\n{BASE}{table}\n")
    result = run_here(capsys, monkeypatch, tmp_path, "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert f"error: {config}: {error}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[accounts.a\n", "not valid TOML: "),
        ("host = 'h'\n", "unknown table or key 'host'"),
        ("[defaults]\nkeep = true\n", "no [accounts.NAME] table"),
        ("[defaults]\nkeep = 1\n", "[defaults]: keep: expected true or false"),
        ("defaults = 1\n", "[defaults] is not a table"),
        ("accounts = 3\n", "no [accounts.NAME] table"),
        (f"[accounts.a]\n{BASE}[accounts.b]\nhost = 'h'\n", "account 'b': --user is required"),
    ],
)
def test_a_malformed_config_file_is_a_usage_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    error: str,
) -> None:
    config = write_config(tmp_path / "fetch.toml", text)
    result = run_here(capsys, monkeypatch, tmp_path, "--config", str(config), "--account", "b")
    if "[accounts.a]" in text and "[accounts.b]" not in text:
        error = "no account 'b' (it has a)"
    assert result.returncode == 2
    assert error in result.stderr, result.stderr


def test_config_keys_are_the_long_options_of_fetch_whatever_they_are(tmp_path: Path) -> None:
    _, subparsers = build_parser()
    parser = subparsers["fetch"]
    # Each option's first long name (--received, not its negation --no-received).
    longs = {
        next(o for o in action.option_strings if o.startswith("--"))[2:].replace("-", "_")
        for action in parser._actions
        if any(o.startswith("--") for o in action.option_strings)
    }
    assert set(config_keys(parser)) == longs - RUN_OPTIONS
    assert {"host", "password_command", "oauth2_token_command", "state_key", "keep"} <= longs
    assert {"mbox", "mda", "max_size", "keep_days", "received", "delivered_to"} <= longs

    # An option the command gains is a config key at once, checked by its own type.
    parser.add_argument("--min-size", type=_octets, metavar="OCTETS")
    parser.add_argument("--spool", metavar="FILE")
    config = write_config(
        tmp_path / "c" / "fetch.toml",
        f'[accounts.a]\n{BASE}min_size = 1000\nspool = "box"\n[accounts.b]\n{BASE}min_size = -5\n',
    )

    def resolve(*argv: str) -> list[argparse.Namespace]:
        args = parser.parse_args(["--config", str(config), *argv])
        args.given = {
            a.dest for a in parser._actions if getattr(args, a.dest, a.default) != a.default
        }
        return [account.options for account in resolve_accounts(args, parser)]

    (a,) = resolve("--account", "a")
    assert a.min_size == 1000 and a.spool == str(tmp_path / "c" / "box")
    with pytest.raises(UsageError, match=r"account 'b': min_size: expected a whole number"):
        resolve()
    # The command line wins, for an option of a mutually exclusive group too.
    (a,) = resolve("--account", "a", "--min-size", "7", "--password-file", "pw")
    assert (a.min_size, a.password_env, a.password_file) == (7, None, "pw")


# --- password sources -----------------------------------------------------------------------


def test_the_password_is_the_first_line_a_password_command_prints(tmp_path: Path) -> None:
    with pop_server(tmp_path, [message(1)]) as server:
        dest = tmp_path / "dest"
        base = ["--host", "127.0.0.1", "--port", str(server.port), "--user", USER]
        base += ["--maildir", str(dest), "--keep"]
        # The first line of the output is the password; the environment reaches the shell.
        ok = run(
            tmp_path,
            *base,
            "--password-command",
            'printf "%s\\nsecond line\\n" "$POP3_TEST_SECRET"',
            POP3_TEST_SECRET=PASSWORD,
        )
        assert (ok.returncode, ok.stderr) == (0, ""), ok.stderr
        assert SUMMARY.search(ok.stdout)


def test_password_command_failures_name_the_option_never_the_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four accounts whose commands fail, in one run (in-process: nothing connects)."""
    failures = {
        "status": ("echo problem >&2; exit 4", "the command exited with status 4"),
        "empty": ("true", "the command printed an empty first line"),
        "killed": ("kill -9 $$", "the command was killed by signal 9"),
        "binary": (f"printf '{PASSWORD}\\377\\n'", "the command's output is not UTF-8"),
    }
    config = write_config(
        tmp_path / "fetch.toml",
        "".join(
            f'[accounts.{name}]\nhost = "127.0.0.1"\nport = 1\nuser = "u"\nmaildir = "d"\n'
            f"password_command = {json.dumps(command)}\n"
            for name, (command, _) in failures.items()
        ),
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert main(["fetch", "--config", str(config)]) == 1
    out, err = capfd.readouterr()
    assert out == ""
    # The command's own stderr is passed through, then one line per account.
    assert err.splitlines() == [
        "problem",
        *(
            f"pop3 fetch: account {name}: --password-command: {error}"
            for name, (_, error) in failures.items()
        ),
    ]


def test_a_password_command_that_hangs_or_floods_is_stopped() -> None:
    for command in ("sleep 30", "yes", "echo pw; exec sleep 30"):
        started = time.monotonic()
        with pytest.raises(CliError, match=r"did not finish within 0\.5 seconds"):
            run_secret_command(command, "--password-command", 0.5)
        assert time.monotonic() - started < 5
    # Of a megabyte on one line, 64 KiB are kept.
    flood = "head -c 1048576 /dev/zero | tr '\\0' a"
    assert run_secret_command(flood, "--password-command", 30) == "a" * 65536


def on_a_terminal(argv: list[str], environ: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """``argv`` started with a new pseudo-terminal as its controlling terminal and stdio;
    the process and the terminal's master side."""
    master, slave = os.openpty()

    def take_terminal() -> None:  # in the child, a session leader since start_new_session
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(
            argv,
            env=environ,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
    finally:
        os.close(slave)
    return proc, master


def test_the_password_is_asked_for_on_a_terminal(tmp_path: Path) -> None:
    """No source given and a terminal on stdin: getpass asks, without echo (a real pty)."""
    with pop_server(tmp_path, [message(1), message(2)]) as server:
        dest = tmp_path / "dest"
        argv = pop3(
            "fetch",
            *("--host", "127.0.0.1", "--port", str(server.port), "--user", USER),
            *("--maildir", str(dest)),
        )
        environ = env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        for answer in (b"\x04", PASSWORD.encode() + b"\n"):  # Ctrl-D, then the password
            proc, fd = on_a_terminal(argv, environ)
            try:
                output = read_until(fd, b"Password for alice@127.0.0.1: ")
                os.write(fd, answer)
                output += read_until(fd, None)
                status = proc.wait(timeout=30)
            finally:
                proc.kill()
                proc.wait()
                os.close(fd)
            if answer == b"\x04":
                assert status == 1, output
                assert output.endswith(b"pop3 fetch: no password was typed\r\n"), output
    assert status == 0, output
    assert b"fetched 2 messages" in output
    assert PASSWORD.encode() not in output  # not echoed
    assert len(stored(dest)) == 2


def read_until(fd: int, wanted: bytes | None, timeout: float = 30) -> bytes:
    """What the pty shows until ``wanted`` appears (``None``: until the child closes it)."""
    out = b""
    deadline = time.monotonic() + timeout
    while wanted is None or wanted not in out:
        left = deadline - time.monotonic()
        assert left > 0, out
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child has exited and closed the terminal
                chunk = b""
            if not chunk:
                assert wanted is None, out
                return out
            out += chunk
    return out


def test_the_password_from_the_system_keyring(tmp_path: Path) -> None:
    """keyring with keyrings.alt's file backend: a real keyring that works without a desktop."""
    keyring_env = {
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    with pop_server(tmp_path, [message(1)]) as server:
        base = ["--host", "127.0.0.1", "--port", str(server.port), "--user", USER]
        base += ["--maildir", str(tmp_path / "dest")]
        missing = run(tmp_path, *base, "--password-keyring", "pop3-test", **keyring_env)
        assert missing.returncode == 1
        assert one_line(missing.stderr)
        assert "no password for alice under 'pop3-test' in the keyring" in missing.stderr
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import keyring, sys; keyring.set_password('pop3-test', 'alice', sys.argv[1])",
                PASSWORD,
            ],
            env=env(**keyring_env),
            check=True,
            timeout=30,
        )
        result = run(tmp_path, *base, "--password-keyring", "pop3-test", **keyring_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "fetched 1 message (32 octets), 1 deleted on the server\n"


# --- OAuth 2.0 ------------------------------------------------------------------------------


def secret_forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.b64encode(f"user={USER}\x01auth=Bearer {secret}\x01\x01".encode()).decode(),
        base64.b64encode(f"n,a={USER},\x01auth=Bearer {secret}\x01\x01".encode()).decode(),
        base64.b64encode(b"\0" + USER.encode() + b"\0" + raw).decode(),
    ]


def test_oauth2_token_command_logs_in_with_the_token(tmp_path: Path) -> None:
    """XOAUTH2, OAUTHBEARER and the automatic choice; a wrong token fails that account only."""
    maildir = tmp_path / "served"
    for i in range(2):
        deliver(maildir, f"{i}.M{i}P1.test", message(i))
    tokens: list[tuple[str, str]] = []

    def check_token(user: str, token: str) -> bool:
        tokens.append((user, token))
        return (user, token) == (USER, TOKEN)

    backend = Backend(
        UserDB.from_pairs({USER: PASSWORD}), MaildirStorage(maildir), check_token=check_token
    )
    with serving(
        "asyncio", backend, mechanisms=["XOAUTH2", "OAUTHBEARER"], failed_login_delay=0
    ) as port:
        account = (
            f'host = "127.0.0.1"\nport = {port}\nuser = "{USER}"\nkeep = true\n'
            'oauth2_token_command = "echo $POP3_TEST_TOKEN"\n'
        )
        config = write_config(
            tmp_path / "fetch.toml",
            f'[accounts.wrong]\n{account.replace("echo ", "echo Wrong-")}maildir = "wrong"\n'
            f'[accounts.auto]\n{account}maildir = "auto"\n'
            f'[accounts.xoauth2]\n{account}maildir = "xoauth2"\nauth = "xoauth2"\n'
            f'[accounts.oauthbearer]\n{account}maildir = "oauthbearer"\nauth = "oauthbearer"\n',
        )
        result = run(tmp_path, "--config", str(config), "-vv", POP3_TEST_TOKEN=TOKEN)
    assert result.returncode == 1, result.stderr
    failure = [line for line in result.stderr.splitlines() if line.startswith("pop3 fetch:")]
    assert len(failure) == 1 and failure[0].startswith("pop3 fetch: account wrong: login to ")
    assert result.stdout.splitlines() == [
        f"{name}: fetched 2 messages (64 octets)" for name in ("auto", "xoauth2", "oauthbearer")
    ]
    assert tokens == [(USER, f"Wrong-{TOKEN}")] + [(USER, TOKEN)] * 3
    # The better mechanism when both are offered, or the one asked for.
    mechanisms = re.findall(r"C: AUTH ([A-Z0-9]+) \[", result.stderr)
    assert mechanisms == ["OAUTHBEARER", "OAUTHBEARER", "XOAUTH2", "OAUTHBEARER"]
    for form in [*secret_forms(TOKEN), *secret_forms(f"Wrong-{TOKEN}")]:
        assert form not in result.stderr, form
    for name in ("auto", "xoauth2", "oauthbearer"):
        assert len(stored(tmp_path / name)) == 2


def test_auth_and_the_secret_source_must_agree(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(
        tmp_path / "fetch.toml",
        '[accounts.a]\nhost = "h"\nuser = "u"\nmaildir = "d"\npassword_env = "V"\n'
        '[accounts.b]\nhost = "h"\nuser = "u"\nmaildir = "d"\n',
    )
    # Checked for every account before anything runs; no terminal to ask on here.
    result = run_here(capsys, monkeypatch, tmp_path, "--config", str(config))
    assert result.returncode == 2
    assert "error: account b: no password source: give --password-env," in result.stderr
    base = ["--host", "h", "--user", "u", "--maildir", str(tmp_path / "d")]
    here = (capsys, monkeypatch, tmp_path)
    token = run_here(*here, *base, "--auth", "xoauth2", "--password-env", "X")
    assert token.returncode == 2
    assert "--auth xoauth2 needs --oauth2-token-command" in token.stderr
    password = run_here(*here, *base, "--auth", "plain", "--oauth2-token-command", "echo t")
    assert password.returncode == 2
    assert "--auth plain needs a password, not --oauth2-token-command" in password.stderr


# --- -v, -vv, --status ------------------------------------------------------------------------


def test_trace_shows_the_exchange_but_no_secret(tmp_path: Path) -> None:
    """``-vv`` with every login method that sends the password in some form."""
    with pop_server(tmp_path, [message(1), message(2, size=5000)]) as server:
        for auth in ["user", "plain", "login", "scram-sha-256", "apop", "cram-md5"]:
            result = run(
                tmp_path,
                *plain_args(server.port, tmp_path / auth, "-vv", "--keep", "--auth", auth),
                POP3_TEST_PASSWORD=PASSWORD,
            )
            assert result.returncode == 0, result.stderr
            trace = [
                line.split(": ", 1)[1]
                for line in result.stderr.splitlines()
                if "pop3.trace[" in line
            ]
            assert trace[0].startswith("S: +OK ")
            assert "C: CAPA" in trace and "C: UIDL" in trace
            assert trace.index("C: RETR 1") < trace.index("C: RETR 2") < trace.index("C: QUIT")
            # A message's lines are not traced, only their size.
            assert "S: [5035 octets of listing or message]" in trace
            if auth == "user":
                assert "C: USER alice" in trace
                assert f"C: [{len('PASS ' + PASSWORD)} octets hidden]" in trace
            elif auth == "apop":  # "APOP alice <32 hex digits>": the digest is hidden too
                assert f"C: [{len('APOP alice ') + 32} octets hidden]" in trace
            else:
                assert any(line.startswith(f"C: AUTH {auth.upper()}") for line in trace), auth
            for form in secret_forms(PASSWORD):
                assert form not in result.stderr, (auth, form)


def test_verbose_shows_one_line_per_message_stored(tmp_path: Path) -> None:
    with pop_server(tmp_path, [message(n) for n in range(3)]) as server:
        result = run(
            tmp_path, *plain_args(server.port, tmp_path / "d", "-v"), POP3_TEST_PASSWORD=PASSWORD
        )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "pop3.fetch[" in line]
    assert len(lines) == 3, result.stderr
    for n, line in enumerate(lines, 1):
        assert re.search(rf": message {n} \(\S+\): 32 octets to \S+/new/\S+$", line), line
    assert "pop3.trace" not in result.stderr  # the protocol trace needs -vv


def test_status_counts_new_messages_and_fetches_nothing(tmp_path: Path) -> None:
    with pop_server(tmp_path, [message(1), message(2)]) as server:
        dest = tmp_path / "dest"
        assert (
            run(
                tmp_path, *plain_args(server.port, dest, "--keep"), POP3_TEST_PASSWORD=PASSWORD
            ).returncode
            == 0
        )
        deliver(tmp_path / "served" / USER, "1800000000.M9P1.test", message(3, size=100))
        before = on_server(tmp_path)
        result = run(
            tmp_path, *plain_args(server.port, dest, "--status", "-vv"), POP3_TEST_PASSWORD=PASSWORD
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{USER}@127.0.0.1: 3 messages (196 B, 196 octets), 1 new\n"
        assert "C: RETR" not in result.stderr and "C: DELE" not in result.stderr
        assert on_server(tmp_path) == before
        assert len(stored(dest)) == 2
        # A fresh destination: everything is new.
        fresh = run(
            tmp_path,
            *plain_args(server.port, tmp_path / "fresh", "--status"),
            POP3_TEST_PASSWORD=PASSWORD,
        )
        assert fresh.stdout.endswith("3 new\n")


def test_an_mbox_account_of_the_config_file_and_its_status(tmp_path: Path) -> None:
    """The target keys, a negated flag (``received = false``), and ``--status`` reading
    the state an mbox keeps beside it."""
    mails = [f"Subject: {n}\n\nbody {n}\n".encode() for n in (1, 2)]
    with pop_server(tmp_path, mails) as server:
        config = write_config(
            tmp_path / "cfg" / "fetch.toml",
            f"""\
[accounts.box]
host = "127.0.0.1"
port = {server.port}
user = "{USER}"
password_env = "POP3_TEST_PASSWORD"
mbox = "mail/inbox"
received = false
keep = true
""",
        )
        mbox = tmp_path / "cfg" / "mail" / "inbox"
        mbox.parent.mkdir()
        result = run(tmp_path, "--config", str(config), POP3_TEST_PASSWORD=PASSWORD)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        # Delivered-To: but no Received: field; LF line ends.
        assert sorted(mbox_messages(mbox)) == [
            f"Delivered-To: {USER}@127.0.0.1\n".encode() + m for m in mails
        ]
        assert (mbox.parent / ".inbox.pop3-fetch-state.json").exists()
        deliver(tmp_path / "served" / USER, "1800000000.M9P1.test", message(3))
        status = run(tmp_path, "--config", str(config), "--status", POP3_TEST_PASSWORD=PASSWORD)
        assert status.returncode == 0, status.stderr
        assert status.stdout.endswith(", 1 new\n"), status.stdout
        assert len(mbox_messages(mbox)) == 2
        # A key of the wrong type is refused, naming it.
        write_config(config, config.read_text().replace("received = false", 'received = "no"'))
        bad = run(tmp_path, "--config", str(config), POP3_TEST_PASSWORD=PASSWORD)
        assert bad.returncode == 2
        assert "account 'box': received: expected true or false" in bad.stderr


def test_status_of_a_server_without_uidl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 1939 makes UIDL optional: the count and size are shown, "new" is unknown."""
    answers = {
        b"CAPA": b"-ERR no CAPA",
        b"USER": b"+OK",
        b"PASS": b"+OK logged in",
        b"STAT": b"+OK 2 320",
        b"UIDL": b"-ERR no UIDL",
        b"QUIT": b"+OK bye",
    }
    commands: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"+OK ready\r\n")
            for line in lines:
                verb = line.split()[0].upper()
                commands.append(verb)
                conn.sendall(answers.get(verb, b"-ERR unexpected") + b"\r\n")
                if verb == b"QUIT":
                    break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with listener:
        port = listener.getsockname()[1]
        monkeypatch.setenv("POP3_TEST_PASSWORD", PASSWORD)
        result = run_here(
            capsys, monkeypatch, tmp_path, *plain_args(port, tmp_path / "d", "--status")
        )
        thread.join(10)
    assert (result.returncode, result.stderr) == (0, "")
    assert (
        result.stdout
        == "alice@127.0.0.1: 2 messages (320 B, 320 octets), new ones unknown (no UIDL)\n"
    )
    assert commands == [b"CAPA", b"USER", b"PASS", b"STAT", b"UIDL", b"QUIT"]


# --- the state follows the maildrop ---------------------------------------------------------


@pytest.fixture
def tls_served(tmp_path: Path, ca: trustme.CA) -> Iterator[tuple[int, int, Path, Path]]:
    """One maildrop served with STLS and with implicit TLS: (port, tls_port, ca_file, maildir)."""
    cert = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    messages = [message(n) for n in range(4)]
    with serve_maildir("asyncio", tmp_path / "served", ca, cert, messages=messages) as served:
        yield served.port, served.tls_port, served.ca_file, served.maildir


def tls_fetch(
    tmp_path: Path, host: str, port: int, ca_file: Path, dest: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return run(
        tmp_path,
        *("--host", host, "--port", str(port), "--user", SERVED_USER, "--ca-file", str(ca_file)),
        *("--password-env", "POP3_TEST_PASSWORD", "--maildir", str(dest), "--keep", *args),
        POP3_TEST_PASSWORD=SERVED_PASSWORD,
    )


def test_kept_mail_is_not_fetched_again_after_moving_from_stls_to_implicit_tls(
    tmp_path: Path, tls_served: tuple[int, int, Path, Path]
) -> None:
    port, tls_port, ca_file, _ = tls_served
    dest = tmp_path / "dest"
    first = tls_fetch(tmp_path, "localhost", port, ca_file, dest, "--starttls")
    assert first.stdout == "fetched 4 messages (128 octets)\n", first.stderr
    again = tls_fetch(tmp_path, "localhost", tls_port, ca_file, dest, "--implicit-tls")
    assert again.stdout == "fetched 0 messages (0 octets), 4 already stored\n", again.stderr
    assert len(stored(dest)) == 4


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("pop.example.org:110:alice", "alice@pop.example.org"),
        ("pop.example.org:995:alice@example.org", "alice@example.org@pop.example.org"),
        ("::1:1110:bob", "bob@::1"),  # an IPv6 address holds colons
        ("Mail.Example.:110:Carol", "Carol@mail.example"),  # host names in lower case
    ],
)
def test_the_keys_of_old_state_files_name_the_maildrop(old: str, new: str) -> None:
    from pop3_cli._state import _upgraded_key

    assert _upgraded_key(old) == new


def test_a_version_2_state_file_is_migrated(
    tmp_path: Path, tls_served: tuple[int, int, Path, Path]
) -> None:
    """A state file written by the version that keyed by host:port:user, for two ports."""
    port, tls_port, ca_file, _ = tls_served
    dest = tmp_path / "dest"
    assert tls_fetch(tmp_path, "localhost", port, ca_file, dest, "--starttls").returncode == 0
    data = json.loads((dest / STATE_FILE).read_text())
    assert data["version"] == 3 and list(data["accounts"]) == ["alice@localhost"]
    records = data["accounts"]["alice@localhost"]
    uids = sorted(records)
    # As the old version wrote it: two ports' records (one of them in the journal).
    old = {
        "version": 2,
        "accounts": {
            f"localhost:{port}:alice": {u: records[u] for u in uids[:2]},
            "other.example:995:bob": {"x": [1, "0" * 64]},
        },
    }
    (dest / STATE_FILE).write_text(json.dumps(old))
    journal = [[f"localhost:{tls_port + 1}:alice", u, *records[u]] for u in uids[2:]]
    (dest / JOURNAL_FILE).write_text("".join(json.dumps(line) + "\n" for line in journal))

    again = tls_fetch(tmp_path, "localhost", tls_port, ca_file, dest, "--implicit-tls")
    assert again.stdout == "fetched 0 messages (0 octets), 4 already stored\n", again.stderr
    data = json.loads((dest / STATE_FILE).read_text())
    assert data == {
        "version": 3,
        "accounts": {"alice@localhost": records, "bob@other.example": {"x": [1, "0" * 64]}},
    }


def test_state_key_names_one_maildrop_reached_under_two_names(
    tmp_path: Path, tls_served: tuple[int, int, Path, Path]
) -> None:
    port, tls_port, ca_file, _ = tls_served
    dest = tmp_path / "dest"
    key = ["--state-key", "alice@mail.example"]
    first = tls_fetch(tmp_path, "localhost", port, ca_file, dest, "--starttls", *key)
    assert first.stdout.startswith("fetched 4 messages"), first.stderr
    # Another name for the same server (a proxy's, an address): the same key, nothing again.
    again = tls_fetch(tmp_path, "127.0.0.1", tls_port, ca_file, dest, "--implicit-tls", *key)
    assert again.stdout == "fetched 0 messages (0 octets), 4 already stored\n", again.stderr
    # Without it the other name is another maildrop as far as the state knows.
    other = tls_fetch(
        tmp_path, "127.0.0.1", tls_port, ca_file, tmp_path / "other", "--implicit-tls"
    )
    assert other.stdout.startswith("fetched 4 messages"), other.stderr


# --- --daemon -------------------------------------------------------------------------------


def start(tmp_path: Path, *args: str, name: str = "daemon") -> subprocess.Popen[str]:
    with open(tmp_path / f"{name}.err", "w") as err:
        return subprocess.Popen(
            pop3("fetch", *args),
            env=env(POP3_TEST_PASSWORD=PASSWORD, XDG_CONFIG_HOME=str(tmp_path / "xdg")),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    assert proc.stdout is not None
    ready = select.select([proc.stdout], [], [], timeout)[0]
    assert ready, "no output in time"
    return proc.stdout.readline()


STOPPED = (
    "pop3 fetch: stopped by SIGTERM; nothing was deleted on the server in the fetch it "
    "interrupted\n"
)


def test_daemon_polls_and_sigterm_between_fetches_ends_it_at_once(tmp_path: Path) -> None:
    with pop_server(tmp_path, [message(1)]) as server:
        dest = tmp_path / "dest"
        proc = start(tmp_path, *plain_args(server.port, dest, "--daemon", "0.3"))
        try:
            first = read_line(proc)
            assert (
                first == "alice@127.0.0.1: fetched 1 message (32 octets), 1 deleted on the server\n"
            )
            deliver(tmp_path / "served" / USER, "1800000000.M9P1.test", message(2))
            deadline = time.monotonic() + 30
            while len(stored(dest)) < 2:  # fetched by a later poll
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]

        # A long interval: SIGTERM while it sleeps ends it at once.
        proc = start(tmp_path, *plain_args(server.port, dest, "--daemon", "3600"), name="d2")
        try:
            assert read_line(proc).startswith("alice@127.0.0.1: fetched 0 messages")
            time.sleep(0.5)  # into its sleep
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - sent < 2
        finally:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    # The first one polls every 0.3 s: SIGTERM may have come during a fetch.
    assert (tmp_path / "daemon.err").read_text() in ("", STOPPED)
    assert (tmp_path / "d2.err").read_text() == ""
    assert on_server(tmp_path) == {}


def test_daemon_sigterm_during_a_fetch_deletes_nothing_and_loses_nothing(tmp_path: Path) -> None:
    messages = [message(n, size=4000) for n in range(200)]
    with pop_server(tmp_path, messages) as server:
        dest = tmp_path / "dest"
        proc = start(tmp_path, *plain_args(server.port, dest, "--daemon", "3600"))
        try:
            deadline = time.monotonic() + 30
            while not (dest / "new").is_dir() or len(os.listdir(dest / "new")) < 10:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        assert (tmp_path / "daemon.err").read_text() == STOPPED
        got = stored(dest)
        assert 10 <= len(got) < 200
        # Every stored file is a whole message; nothing half-written is left in tmp/.
        assert set(got.values()) <= {crlf(m) for m in messages}
        assert list((dest / "tmp").iterdir()) == []
        time.sleep(0.3)  # let the server see the connection close
        assert len(on_server(tmp_path)) == 200  # no QUIT: nothing deleted

        # The next run stores the rest, each message once, and deletes them all.
        result = run(tmp_path, *plain_args(server.port, dest), POP3_TEST_PASSWORD=PASSWORD)
        assert result.returncode == 0, result.stderr
    assert Counter(stored(dest).values()) == Counter(crlf(m) for m in messages)
    assert on_server(tmp_path) == {}


def test_sigterm_stops_a_single_fetch_with_143_deleting_nothing(tmp_path: Path) -> None:
    messages = [message(n, size=4000) for n in range(200)]
    with pop_server(tmp_path, messages) as server:
        dest = tmp_path / "dest"
        proc = start(tmp_path, *plain_args(server.port, dest), name="once")
        try:
            deadline = time.monotonic() + 30
            while not (dest / "new").is_dir() or len(os.listdir(dest / "new")) < 10:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 143
        finally:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        time.sleep(0.3)
        assert len(on_server(tmp_path)) == 200
    assert one_line((tmp_path / "once.err").read_text())


# --- documentation: systemd units, config examples ------------------------------------------


UNITS = sorted((ROOT / "docs" / "systemd").glob("pop3-fetch*"))


def test_the_systemd_units_are_valid(tmp_path: Path) -> None:
    """``systemd-analyze verify`` (as a user manager) finds nothing to say about them."""
    assert {u.name for u in UNITS} == {
        "pop3-fetch.service",
        "pop3-fetch.timer",
        "pop3-fetch-daemon.service",
    }
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        from peers import unavailable

        unavailable("systemd-analyze is not installed (Debian package systemd)")
    units = tmp_path / "units"
    units.mkdir()
    pop3_script = Path(sys.executable).parent / "pop3"
    assert pop3_script.exists()
    for unit in UNITS:
        text = unit.read_text()
        assert "ExecStart=%h/.local/bin/pop3 fetch" in text or unit.suffix == ".timer"
        # The installed script of this environment stands in for the user's.
        (units / unit.name).write_text(text.replace("%h/.local/bin/pop3", str(pop3_script)))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        [analyze, "--user", "verify", *(str(units / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"},
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def doc_tomls() -> list[str]:
    text = (ROOT / "docs" / "fetch.md").read_text()
    return re.findall(r"^```toml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_the_config_examples_in_the_docs_are_valid(tmp_path: Path) -> None:
    blocks = doc_tomls()
    assert len(blocks) >= 3
    _, subparsers = build_parser()
    parser = subparsers["fetch"]
    for n, block in enumerate(blocks):
        tomllib.loads(block)
        config = write_config(tmp_path / f"example{n}.toml", block)
        args = parser.parse_args(["--config", str(config)])
        accounts = resolve_accounts(args, parser)
        assert accounts, block


def test_every_config_key_is_documented() -> None:
    text = (ROOT / "docs" / "fetch.md").read_text()
    table = text.split("### Every key", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE))
    _, subparsers = build_parser()
    assert documented == set(config_keys(subparsers["fetch"]))
