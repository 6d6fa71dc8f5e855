"""The ``pop3`` command: real processes and sockets on 127.0.0.1.

``pop3 serve`` runs in a subprocess (``python -m pop3_cli``) on a free port,
and is talked to by the standard library's poplib, by curl when installed, and
by ``pop3 fetch`` in another subprocess. Set ``POP3_REQUIRE_PEERS=1`` to make
a missing peer program (curl) a failure instead of a skip.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import os
import poplib
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

import pop3_maildrop
import pop3_sansio
import served
from helpers import log_fields, wait_for
from pop3_cli import main
from pop3_cli._errors import UsageError
from pop3_cli._progress import Progress
from pop3_cli._serve import load_users
from served import Served, env, pop3, serving

PASSWORD = "Tr0ub4dor&3-horse"  # distinctive, so it can be looked for in any output
WRONG_PASSWORD = "Wr0ng-battery-staple"
SUMMARY = re.compile(r"fetched ([0-9]+) messages? \(([0-9]+) octets?\)")


def require_peer(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install})"
        if os.environ.get("POP3_REQUIRE_PEERS") == "1":
            pytest.fail(message + " and POP3_REQUIRE_PEERS=1")
        pytest.skip(message)
    return path


def as_received(raw: bytes) -> bytes:
    """What RETR gives for a stored message: CRLF line ends, a final CRLF (RFC 1939)."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def one_line(text: str) -> bool:
    return text.count("\n") == 1 and text.endswith("\n") and "Traceback" not in text


# --- running processes ------------------------------------------------------------------


def fetch(
    port: int, dest: Path, *args: str, password: str = PASSWORD, user: str = "alice"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pop3(
            "fetch",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--user",
            user,
            "--password-env",
            "POP3_TEST_PASSWORD",
            "--maildir",
            str(dest),
            *served.AS_RETRIEVED,
            *args,
        ),
        env=env(POP3_TEST_PASSWORD=password),
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_maildir(root: Path, messages: list[bytes], start: int = 0) -> None:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for number, message in enumerate(messages, start):
        (root / "new" / f"{1_700_000_000 + number}.M{number}P1.test").write_bytes(message)


def sample_messages(count: int, size: int = 0) -> list[bytes]:
    """Messages with LF and CRLF line ends, dot lines, and no final newline."""
    out = []
    for n in range(count):
        body = (b"x" * 70 + b"\n") * (size // 71)
        message = (
            f"From: sender@example.org\nSubject: message {n}\nMessage-ID: <{n}@test>\n\n".encode()
            + b".a line starting with a dot\n..two\n.\n"
            + body
            + f"the end of {n}".encode()
        )
        if n % 3 == 1:
            message = message.replace(b"\n", b"\r\n") + b"\r\n"
        elif n % 3 == 2:
            message += b"\n"
        out.append(message)
    return out


def messages_in(maildir: Path) -> list[bytes]:
    return [path.read_bytes() for sub in ("new", "cur") for path in (maildir / sub).iterdir()]


# Every binding's server must pass the same command-line tests.
BACKENDS = ["asyncio", "trio", "sync"]


def serve_alice(tmp_path: Path, maildir: Path, *args: str) -> AbstractContextManager[Served]:
    return serving(tmp_path, "--maildir", str(maildir), "--user", f"alice:{PASSWORD}", *args)


# --- pop3 serve: the demo ------------------------------------------------------------------


def demo_expectations(out: bytes) -> tuple[Path, list[bytes]]:
    match = re.search(rb"Demo maildrop in (\S+) ", out)
    assert match is not None, out
    maildir = Path(os.fsdecode(match.group(1)))
    files = sorted((maildir / "new").iterdir())
    return maildir, [as_received(path.read_bytes()) for path in files]


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_serves_poplib_byte_exact_and_stops_on_sigint(tmp_path: Path, backend: str) -> None:
    with serving(tmp_path, "--backend", backend, until=b"Stop with Ctrl-C.") as server:
        assert b"curl pop3://demo:demo@127.0.0.1:%d/1" % server.port in server.stdout
        assert b"import poplib" in server.stdout
        maildir, expected = demo_expectations(server.stdout)
        raw = [path.read_bytes() for path in sorted((maildir / "new").iterdir())]
        # The edge cases the demo promises.
        assert any(re.search(rb"(?m)^\.", message) for message in raw)
        assert any(not message.endswith(b"\n") for message in raw)
        assert any(
            b"multipart/mixed" in message and b"Content-Disposition: attachment" in message
            for message in raw
        )

        client = poplib.POP3("127.0.0.1", server.port, timeout=10)
        assert client.user("demo").startswith(b"+OK")
        assert client.pass_("demo").startswith(b"+OK")
        assert client.stat() == (len(expected), sum(map(len, expected)))
        for number, message in enumerate(expected, 1):
            _, lines, _ = client.retr(number)
            assert b"".join(line + b"\r\n" for line in lines) == message
        client.quit()

        client = poplib.POP3("127.0.0.1", server.port, timeout=10)
        assert client.apop("demo", "demo").startswith(b"+OK")
        sasl = client.capa()["SASL"]
        assert {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"} <= set(sasl)
        client.quit()

        assert server.stop(signal.SIGINT) == 0
        assert not maildir.exists()  # the temporary maildrop is cleaned up
    logged = [
        log_fields(line.split("]: ", 1)[1])
        for line in server.stderr.splitlines()
        if " pop3.server[" in line
    ]
    sessions = [f for event, f in logged if event == "session ended"]
    assert [(f["rip"], f["user"], f["reason"]) for f in sessions] == [
        ("127.0.0.1", "<demo>", "quit")
    ] * 2
    logins = [f for event, f in logged if event == "login"]
    assert [(f["method"], f["user"]) for f in logins] == [("USER", "<demo>"), ("APOP", "<demo>")]
    assert "Traceback" not in server.stderr


@pytest.mark.parametrize(
    ("verbosity", "commands", "traced"),
    [((), False, False), (("-v",), True, False), (("-vv",), True, True)],
    ids=["default", "-v", "-vv"],
)
def test_serve_log_file_and_verbosity(
    tmp_path: Path, verbosity: tuple[str, ...], commands: bool, traced: bool
) -> None:
    """``--log-file`` takes every log line (stderr keeps none); -v adds a line a
    command, -vv the protocol trace, with the password hidden."""
    log = tmp_path / "logs" / "pop3.log"
    log.parent.mkdir()
    log.write_text("an earlier line\n")  # appended to, not replaced
    with serving(tmp_path, "--log-file", str(log), *verbosity) as server:
        client = poplib.POP3("127.0.0.1", server.port, timeout=10)
        client.user("demo")
        client.pass_("demo")
        client.retr(1)
        client.quit()
        wait_for(lambda: "session ended:" in log.read_text())
        assert server.stop() == 0
    assert server.stderr == ""
    text = log.read_text()
    assert text.startswith("an earlier line\n")
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d pop3\.server\[\d+\]: login: rip=127\.0\.0\.1 "
        r"rport=\d+ lip=127\.0\.0\.1 lport=\d+ tls=no method=USER user=<demo>$",
        text,
        re.M,
    ), text
    assert re.search(
        r"^.* session ended: .* user=<demo> failed=0 retr=1/\d+ .* reason=quit$", text, re.M
    )
    assert (" command: " in text) is commands, text
    assert (" status=+OK cmd=<PASS ***>" in text) is commands, text
    assert ("pop3.server.trace[" in text) is traced, text
    assert (" C: PASS ***" in text) is traced, text
    assert " C: PASS demo" not in text and "cmd=<PASS demo>" not in text


def test_serve_log_file_is_reopened_after_logrotate_moves_it(tmp_path: Path) -> None:
    log = tmp_path / "pop3.log"
    with serving(tmp_path, "--log-file", str(log)) as server:
        for expected in (1, 2):
            client = poplib.POP3("127.0.0.1", server.port, timeout=10)
            client.user("demo")
            client.pass_("demo")
            client.quit()
            wait_for(lambda: log.exists() and "session ended:" in log.read_text())
            if expected == 1:
                log.rename(tmp_path / "pop3.log.1")  # what logrotate does (no copytruncate)
        assert server.stop() == 0
    rotated = (tmp_path / "pop3.log.1").read_text()
    assert rotated.count("session ended:") == 1
    assert log.read_text().count("session ended:") == 1  # a new file, not the moved one


def test_serve_log_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        pop3("serve", "--log-file", str(tmp_path / "missing" / "pop3.log")),
        capture_output=True,
        text=True,
        env=env(),
        timeout=30,
    )
    assert result.returncode == 1
    assert one_line(result.stderr), result.stderr
    assert result.stderr.startswith("pop3 serve: cannot open the log file ")
    assert "No such file or directory" in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_serves_curl(tmp_path: Path, backend: str) -> None:
    curl = require_peer("curl", "apt-get install curl")
    with serving(tmp_path, "--backend", backend, until=b"Stop with Ctrl-C.") as server:
        _, expected = demo_expectations(server.stdout)
        url = f"pop3://demo:demo@127.0.0.1:{server.port}"
        for number, message in enumerate(expected, 1):
            got = subprocess.run(
                [curl, "-sS", "--max-time", "10", f"{url}/{number}"],
                capture_output=True,
                timeout=30,
                check=True,
            )
            assert got.stdout == message
        listing = subprocess.run(
            [curl, "-sS", "--max-time", "10", "--login-options", "AUTH=+APOP", f"{url}/"],
            capture_output=True,
            timeout=30,
            check=True,
        )
        assert listing.stdout == b"".join(
            b"%d %d\r\n" % (number, len(message)) for number, message in enumerate(expected, 1)
        )
        assert server.stop(signal.SIGTERM) == 0


# --- pop3 fetch from pop3 serve --------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_fetch_deletes_on_the_server_only_what_it_stored(tmp_path: Path, backend: str) -> None:
    source = tmp_path / "server"
    dest = tmp_path / "dest"
    messages = sample_messages(7)
    make_maildir(source, messages)
    with serve_alice(tmp_path, source, "--backend", backend) as server:
        result = fetch(server.port, dest)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # no progress display when stderr is not a terminal
        assert SUMMARY.search(result.stdout) is not None
        assert SUMMARY.search(result.stdout).groups() == (  # type: ignore[union-attr]
            "7",
            str(sum(len(as_received(m)) for m in messages)),
        )
        assert sorted(messages_in(dest)) == sorted(as_received(m) for m in messages)
        assert messages_in(source) == []
        assert list((dest / "tmp").iterdir()) == []

        again = fetch(server.port, dest)
        assert again.returncode == 0, again.stderr
        assert SUMMARY.search(again.stdout).group(1) == "0"  # type: ignore[union-attr]
        assert len(messages_in(dest)) == 7
        assert server.stop() == 0
    for output in (server.stderr, result.stdout, result.stderr):
        assert PASSWORD not in output
    assert "prefer --users FILE" in server.stderr  # the warning for --user NAME:PASSWORD
    assert re.search(
        r"session ended: rip=127\.0\.0\.1 .* user=<alice> .* reason=quit$", server.stderr, re.M
    ), server.stderr


def test_fetch_keep_fetches_only_new_mail(tmp_path: Path) -> None:
    source = tmp_path / "server"
    dest = tmp_path / "dest"
    messages = sample_messages(5)
    make_maildir(source, messages)
    on_server = sorted(messages_in(source))
    with serve_alice(tmp_path, source) as server:
        first = fetch(server.port, dest, "--keep")
        assert first.returncode == 0, first.stderr
        assert SUMMARY.search(first.stdout).group(1) == "5"  # type: ignore[union-attr]
        assert sorted(messages_in(dest)) == sorted(as_received(m) for m in messages)
        assert sorted(messages_in(source)) == on_server  # nothing deleted

        second = fetch(server.port, dest, "--keep")
        assert second.returncode == 0, second.stderr
        assert SUMMARY.search(second.stdout).groups() == ("0", "0")  # type: ignore[union-attr]
        assert len(messages_in(dest)) == 5

        # The state file alone remembers: mail read and deleted locally is not fetched again.
        for path in (dest / "new").iterdir():
            path.unlink()
        third = fetch(server.port, dest, "--keep")
        assert SUMMARY.search(third.stdout).group(1) == "0"  # type: ignore[union-attr]
        assert messages_in(dest) == []

        # New mail arrives: only it is fetched.
        make_maildir(source, [b"Subject: new\n\nfresh\n"], start=100)
        fourth = fetch(server.port, dest, "--keep")
        assert fourth.returncode == 0, fourth.stderr
        assert SUMMARY.search(fourth.stdout).group(1) == "1"  # type: ignore[union-attr]
        assert messages_in(dest) == [b"Subject: new\r\n\r\nfresh\r\n"]
        assert len(messages_in(source)) == 6
        assert server.stop() == 0


def start_fetch(port: int, dest: Path, stderr: Path) -> subprocess.Popen[bytes]:
    return served.start_fetch(port, "alice", PASSWORD, dest, stderr)


def wait_until_stored(dest: Path, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not (dest / "new").is_dir() or len(os.listdir(dest / "new")) < count:
        assert proc.poll() is None, "pop3 fetch ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.002)


def test_fetch_interrupted_or_killed_then_resumed_stores_each_message_once(
    tmp_path: Path,
) -> None:
    source = tmp_path / "server"
    dest = tmp_path / "dest"
    messages = sample_messages(200, size=4000)
    make_maildir(source, messages)
    with serve_alice(tmp_path, source) as server:
        # Ctrl-C: exit 130, one line, no QUIT so nothing deleted.
        proc = start_fetch(server.port, dest, tmp_path / "int.err")
        wait_until_stored(dest, 10, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        err = (tmp_path / "int.err").read_text()
        assert one_line(err) and "interrupted" in err, err
        interrupted = len(messages_in(dest))
        assert 10 <= interrupted < 200

        # Killed outright, after storing some more.
        proc = start_fetch(server.port, dest, tmp_path / "kill.err")
        wait_until_stored(dest, interrupted + 20, proc)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        stored = len(messages_in(dest))
        assert interrupted + 20 <= stored < 200, stored
        time.sleep(0.3)  # let the server see the connection close
        assert len(messages_in(source)) == 200  # never a QUIT: nothing deleted

        result = fetch(server.port, dest)
        assert result.returncode == 0, result.stderr
        fetched = int(SUMMARY.search(result.stdout).group(1))  # type: ignore[union-attr]
        assert fetched == 200 - stored
        assert collections.Counter(messages_in(dest)) == collections.Counter(
            as_received(m) for m in messages
        )
        assert messages_in(source) == []
        assert list((dest / "tmp").iterdir()) == []  # the killed run's partial file is gone
        assert server.stop() == 0


def test_wrong_password_fails_in_one_line_without_secrets(tmp_path: Path) -> None:
    source = tmp_path / "server"
    make_maildir(source, sample_messages(2))
    with serve_alice(tmp_path, source) as server:
        result = fetch(server.port, tmp_path / "dest", password=WRONG_PASSWORD)
        assert result.returncode == 1
        assert one_line(result.stderr), result.stderr
        assert result.stderr.startswith("pop3 fetch: login to 127.0.0.1:")
        assert "[AUTH]" in result.stderr
        assert WRONG_PASSWORD not in result.stderr + result.stdout
        assert len(messages_in(source)) == 2
        assert server.stop() == 0
    assert WRONG_PASSWORD not in server.stderr
    assert PASSWORD not in server.stderr
    # The failed login is logged with the user tried, and the session with no user.
    assert re.search(
        r"auth failed: rip=127\.0\.0\.1 rport=\d+ lip=127\.0\.0\.1 lport=\d+ tls=no "
        r"method=SCRAM-SHA-256 attempts=1 user=<alice>$",
        server.stderr,
        re.M,
    ), server.stderr
    assert re.search(r"session ended: .* user=<> failed=1 .* reason=", server.stderr), server.stderr


def test_connection_refused_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it
        result = fetch(port, tmp_path / "dest")
    assert result.returncode == 1
    assert one_line(result.stderr), result.stderr
    assert "connection refused" in result.stderr


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = subprocess.run(
            pop3("serve", "--port", str(sock.getsockname()[1])),
            capture_output=True,
            text=True,
            timeout=30,
            env=env(),
        )
    assert result.returncode == 1
    assert one_line(result.stderr), result.stderr
    assert result.stderr.startswith("pop3 serve: port ") and "is already in use" in result.stderr


# --- the users file ------------------------------------------------------------------------


def test_users_file_with_hashes_and_per_user_maildirs(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    make_maildir(tmp_path / "alice-box", [b"Subject: for alice\n\nhi\n"])
    make_maildir(root / "bob", [b"Subject: for bob\n\nhello\n"])
    digest = base64.b64encode(hashlib.sha256(b"bob-pw").digest()).decode()
    users = tmp_path / "users"
    users.write_text(
        f"# comment\nalice:{PASSWORD}:alice-box\nbob:{{SHA256}}{digest}\n", encoding="utf-8"
    )
    users.chmod(0o640)  # readable by the service's group: no warning
    with serving(tmp_path, "--users", str(users), "--maildir", str(root)) as server:
        client = poplib.POP3("127.0.0.1", server.port, timeout=10)
        assert b"<" not in client.welcome  # no APOP timestamp
        assert client.capa()["SASL"] == ["PLAIN", "LOGIN"]  # no plain secret for bob
        client.quit()
        alice = fetch(server.port, tmp_path / "a", "--keep")
        bob = fetch(server.port, tmp_path / "b", "--keep", user="bob", password="bob-pw")
        assert (alice.returncode, bob.returncode) == (0, 0), alice.stderr + bob.stderr
        assert messages_in(tmp_path / "a") == [b"Subject: for alice\r\n\r\nhi\r\n"]
        assert messages_in(tmp_path / "b") == [b"Subject: for bob\r\n\r\nhello\r\n"]
        assert server.stop() == 0
    assert "APOP, CRAM-MD5 and SCRAM are off" in server.stderr
    assert "prefer --users FILE" not in server.stderr
    assert "warning" not in server.stderr
    assert PASSWORD not in server.stderr and "bob-pw" not in server.stderr


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_users_file_that_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    users = tmp_path / "users"
    users.write_text(f"alice:{PASSWORD}\n")
    users.chmod(mode)
    # In a process of its own with a time limit: a server that does not refuse serves forever.
    argv = ["serve", "--port", "0", "--users", str(users), "--maildir", str(tmp_path / "mail")]
    done = subprocess.run(pop3(*argv), capture_output=True, text=True, env=env(), timeout=30)
    err = done.stderr
    assert done.returncode == 1, err
    assert one_line(err) and f"the users file {users} (mode {mode:04o})" in err
    assert "can be written by other users" in err and f"chmod go-w {users}" in err
    assert PASSWORD not in err
    assert not (tmp_path / "mail").exists()  # refused before anything else was done


def test_users_file_that_everyone_can_read_is_served_with_a_warning(tmp_path: Path) -> None:
    make_maildir(tmp_path / "mail" / "alice", [b"Subject: x\n\nhi\n"])
    users = tmp_path / "users"
    users.write_text(f"alice:{PASSWORD}\n")
    users.chmod(0o644)
    with serving(tmp_path, "--users", str(users), "--maildir", str(tmp_path / "mail")) as server:
        client = poplib.POP3("127.0.0.1", server.port, timeout=10)
        client.user("alice")
        client.pass_(PASSWORD)
        assert client.stat()[0] == 1
        client.quit()
        assert server.stop() == 0
    assert f"the users file {users} (mode 0644) can be read by every user" in server.stderr
    assert f"chmod o-rwx {users}" in server.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_password_file_that_others_can_read_or_write_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(mode)
    dest = tmp_path / "dest"
    argv = ["fetch", "--host", "127.0.0.1", "--port", "1", "--user", "u", "--maildir", str(dest)]
    assert main([*argv, "--password-file", str(secret)]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and f"the password file {secret} (mode {mode:04o}) can be" in err
    assert "chmod go-" in err and PASSWORD not in err
    assert not dest.exists()  # refused before connecting or creating anything

    secret.chmod(0o400)  # private to its owner, read-only: accepted
    assert main([*argv, "--password-file", str(secret)]) == 1
    assert "connection refused" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_secret_files_owned_by_another_user_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    os.chown(secret, 65534, 65534)  # nobody: it could rewrite the file whatever its mode
    argv = ["fetch", "--host", "127.0.0.1", "--port", "1", "--user", "u"]
    argv += ["--maildir", str(tmp_path / "dest"), "--password-file", str(secret)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "belongs to another user (uid 65534)" in err
    argv = ["serve", "--port", "0", "--users", str(secret), "--maildir", str(tmp_path / "mail")]
    done = subprocess.run(pop3(*argv), capture_output=True, text=True, env=env(), timeout=30)
    assert done.returncode == 1, done.stderr
    assert one_line(done.stderr)
    assert f"the users file {secret} belongs to another user" in done.stderr


def test_unreadable_users_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert main(["serve", "--users", str(missing), "--maildir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and f"cannot read the users file {missing}" in err

    bad = tmp_path / "users"
    bad.write_text(f"alice:{PASSWORD}\nbroken line\n")
    bad.chmod(0o600)
    assert main(["serve", "--users", str(bad), "--maildir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "line 2" in err and PASSWORD not in err


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    where = tmp_path_factory.mktemp("tls")
    files = {"ca": where / "ca.pem", "cert": where / "cert.pem", "key": where / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    with open(files["cert"], "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    return {name: str(path) for name, path in files.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["--starttls", "--implicit-tls"])
def test_fetch_over_tls(tmp_path: Path, tls_files: dict[str, str], mode: str, backend: str) -> None:
    source = tmp_path / "server"
    messages = sample_messages(3)
    make_maildir(source, messages)
    tls = ["--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"]]
    if mode == "--implicit-tls":
        tls.append("--implicit-tls")
    with serve_alice(tmp_path, source, "--backend", backend, *tls) as server:
        untrusted = fetch(server.port, tmp_path / "dest", mode, "--keep")
        assert untrusted.returncode == 1
        assert one_line(untrusted.stderr), untrusted.stderr
        assert "certificate" in untrusted.stderr
        assert messages_in(tmp_path / "dest") == []

        # --insecure: no verification at all (here, with --keep).
        insecure = fetch(server.port, tmp_path / "dest", mode, "--insecure", "--keep")
        assert insecure.returncode == 0, insecure.stderr
        assert len(messages_in(tmp_path / "dest")) == 3
        assert len(messages_in(source)) == 3

        # Verified with --ca-file; what --keep stored is deleted, not fetched again.
        result = fetch(server.port, tmp_path / "dest", mode, "--ca-file", tls_files["ca"])
        assert result.returncode == 0, result.stderr
        assert "fetched 0 messages (0 octets), 3 already stored" in result.stdout
        assert sorted(messages_in(tmp_path / "dest")) == sorted(as_received(m) for m in messages)
        assert messages_in(source) == []
        assert server.stop() == 0


def test_starttls_refused_when_not_offered(tmp_path: Path, tls_files: dict[str, str]) -> None:
    make_maildir(tmp_path / "server", sample_messages(1))
    with serve_alice(tmp_path, tmp_path / "server") as server:
        result = fetch(server.port, tmp_path / "dest", "--starttls", "--ca-file", tls_files["ca"])
        assert result.returncode == 1
        assert one_line(result.stderr) and "STLS" in result.stderr
        assert len(messages_in(tmp_path / "server")) == 1
        assert server.stop() == 0


# --- arguments -------------------------------------------------------------------------------


def test_unknown_option_exits_2_without_echoing_values(tmp_path: Path) -> None:
    result = subprocess.run(
        pop3(
            *("fetch", "--host", "127.0.0.1", "--user", "alice", "--password-env", "X"),
            *("--maildir", str(tmp_path), "--password", PASSWORD, "--pass=" + PASSWORD),
        ),
        capture_output=True,
        text=True,
        timeout=30,
        env=env(),
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --password ... --pass" in result.stderr
    assert PASSWORD not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--bogus"],
        ["serve", "--user", "alice"],  # no password
        ["serve", "--user", "alice:pw"],  # no --maildir
        ["serve", "--implicit-tls"],  # no certificate
        ["serve", "--backend", "carrier-pigeon"],
        ["serve", "--port", "70000"],
        ["serve", "--max-sessions", "0"],
        ["serve", "--max-sessions", "many"],
        ["serve", "--quick-read-size", "-1"],
        ["serve", "--quick-read-size", "big"],
        ["fetch", "--host", "h", "--user", "u", "--maildir", "d"],  # no password source
        ["fetch", "--host", "h", "--user", "u", "--password-env", "V"],  # no --maildir
        [
            "fetch",
            "--host",
            "h",
            "--user",
            "u",
            "--password-env",
            "V",
            "--maildir",
            "d",
            "--starttls",
            "--implicit-tls",
        ],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_password_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["fetch", "--host", "127.0.0.1", "--port", "1", "--user", "u"]
    base += ["--maildir", str(tmp_path / "dest")]
    os.environ.pop("POP3_TEST_UNSET", None)
    assert main([*base, "--password-env", "POP3_TEST_UNSET"]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "POP3_TEST_UNSET is not set" in err

    assert main([*base, "--password-file", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "cannot read the password file" in err

    # The first line is the password: the next step, connecting, is what fails.
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\nignored\n")
    secret.chmod(0o600)
    assert main([*base, "--password-file", str(secret)]) == 1
    err = capsys.readouterr().err
    assert one_line(err) and "connection refused" in err and PASSWORD not in err


def test_help_documents_the_insecure_effects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--insecure does TWO things" in out
    assert "certificate verification" in out
    assert "--ca-file" in out
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Prefer --users FILE" in out and "process listings" in out
    # The limits, with their defaults and how to lift the one per address.
    assert "(default 20; 0: no limit)" in out and "--login-timeout SECONDS" in out


def test_progress_is_shown_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    progress = Progress(2, 3000, stream=terminal)
    progress.advance(1000)
    progress.message_done()
    progress.advance(2000)
    progress.message_done()
    assert "fetching: 2/2 messages, 2.9 KiB of 2.9 KiB (100%)" in terminal.getvalue()
    progress.close()
    assert terminal.getvalue().endswith("\r")

    pipe = io.StringIO()
    quiet = Progress(2, 3000, stream=pipe)
    quiet.advance(3000)
    quiet.message_done()
    quiet.close()
    assert pipe.getvalue() == ""


def test_user_options_and_users_file_combine(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:first-pw:alice-box\n")
    combined = load_users([("bob", "with:colon")], str(users))
    assert sorted(combined) == ["alice", "bob"]
    assert combined.check_password("bob", "with:colon")
    assert not combined.check_password("bob", "with")
    assert combined.check_password("alice", "first-pw")
    assert (combined.maildir("alice"), combined.maildir("bob")) == ("alice-box", None)
    with pytest.raises(UsageError, match="'alice' is given with --user and in"):
        load_users([("alice", "other")], str(users))
    with pytest.raises(UsageError, match="'bob' is given twice"):
        load_users([("bob", "a"), ("bob", "b")], None)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [],
            {
                "quick_read_size": 65536,
                "max_sessions": 1000,
                "proxy_protocol": False,
                "max_sessions_per_address": 20,
                "login_timeout": 60.0,
            },
        ),
        (
            ["--quick-read-size", "0", "--max-sessions", "7", "--proxy-protocol"],
            {"quick_read_size": 0, "max_sessions": 7, "proxy_protocol": True},
        ),
        (
            ["--max-sessions-per-address", "3", "--login-timeout", "2.5"],
            {"max_sessions_per_address": 3, "login_timeout": 2.5},
        ),
        (["--max-sessions-per-address", "0"], {"max_sessions_per_address": None}),  # no limit
    ],
)
def test_serve_options_reach_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], expected: dict[str, object]
) -> None:
    import pop3_cli._serve as serve_module

    seen: list[dict[str, object]] = []
    monkeypatch.setitem(
        serve_module.BACKENDS, "asyncio", lambda config: seen.append(config.options)
    )
    code = main(["serve", "-q", "--maildir", str(tmp_path), "--user", "a:b", *argv])
    assert code == 0 and len(seen) == 1
    assert {key: seen[0][key] for key in expected} == expected
    assert "max_sessions_per_address" in seen[0]
    pop3_sansio.ServerOptions(**seen[0])  # every key is an option the bindings take


def test_help_defaults_agree_with_the_server_and_serve() -> None:
    """``pop3 --help`` reads pop3_cli/_defaults.py, not the server: the two must agree."""
    from pop3_cli import _defaults, _serve
    from pop3_sansio.server import ServerOptions

    assert ServerOptions.max_sessions_per_address == _defaults.MAX_SESSIONS_PER_ADDRESS
    assert ServerOptions.login_timeout == _defaults.LOGIN_TIMEOUT
    assert tuple(sorted(_serve.BACKENDS)) == _defaults.BACKEND_NAMES
    assert _defaults.PASSWORD_SCHEMES == pop3_maildrop.HASH_SCHEMES  # pop3 pw --scheme


def test_version_is_read_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    from pop3_cli._main import _version, main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"pop3 {_version()}\n"
