"""Errors a person understands: each mistake a new user makes gets one line naming what to fix.

The ``pop3`` command runs in-process (``main``) where it fails before serving, and as a
process of its own (``python -m pop3_cli``) where it must listen or connect first.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bindings
from helpers import FakeBackend, log_fields, wait_for_log
from pop3_cli import main
from served import TIMEOUT, PopServer, env, pop3, write_users

PASSWORD = "Tr0ub4dor&3-horse"


def one_line(text: str) -> bool:
    return text.count("\n") == 1 and text.endswith("\n") and "Traceback" not in text


# --- TLS files --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good, bad and mismatched PEM files (trustme), and an encrypted key."""
    trustme = pytest.importorskip("trustme")
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    cert, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    where = tmp_path_factory.mktemp("pem")
    files = {
        name: where / f"{name}.pem"
        for name in ("cert", "key", "other_key", "not_pem", "encrypted_key")
    }
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    files["not_pem"].write_bytes(b"\x30\x82\x01\x0a this is DER, or anything else\n")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    files["encrypted_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    files["missing"] = where / "missing.pem"
    return files


@pytest.mark.parametrize(
    ("cert", "key", "named", "says"),
    [
        ("cert", "missing", "--tls-key file {missing}", "No such file or directory"),
        ("missing", "key", "--tls-cert file {missing}", "No such file or directory"),
        (
            "cert",
            None,
            "--tls-cert {cert}",
            "holds no private key: give the key file with --tls-key",
        ),
        ("not_pem", "key", "--tls-cert {not_pem}", "is not a PEM certificate"),
        ("cert", "not_pem", "--tls-key {not_pem}", "is not a PEM private key"),
        ("key", "cert", "--tls-cert {key}", "it holds a private key; swapped with --tls-key?"),
        ("cert", "other_key", "--tls-key {other_key}", "does not belong to the certificate"),
        ("cert", "encrypted_key", "--tls-key {encrypted_key}", "is encrypted"),
    ],
)
def test_tls_file_errors_name_the_file_and_the_fault(
    pem: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    cert: str,
    key: str | None,
    named: str,
    says: str,
) -> None:
    argv = ["serve", "--port", "0", "--tls-cert", str(pem[cert])]
    if key is not None:
        argv += ["--tls-key", str(pem[key])]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert one_line(err), err
    assert named.format(**{name: str(path) for name, path in pem.items()}) in err, err
    assert says in err, err
    assert "PEM lib" not in err and "_ssl.c" not in err
    if named.startswith("--tls-key") and "does not belong" not in says:
        assert str(pem[cert]) not in err  # the certificate is fine: not blamed


# --- trio not installed -----------------------------------------------------------------------

# A real import of pop3_trio in a process where ``import trio`` fails as it does when trio
# is not installed (``None`` in ``sys.modules`` makes the import system raise
# ModuleNotFoundError with ``name == "trio"``).
_NO_TRIO = "import sys; sys.modules['trio'] = None\n"


def test_import_pop3_trio_without_trio_says_what_to_install() -> None:
    code = _NO_TRIO + (
        "try:\n"
        "    import pop3_trio\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name); print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "trio",
        "pop3_trio needs trio, which is not installed: pip install 'pop3-sansio[trio]'",
    ]


def test_serve_backend_trio_without_trio_is_one_line_exit_1(tmp_path: Path) -> None:
    code = _NO_TRIO + "from pop3_cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--backend", "trio", "--port", "0"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=TIMEOUT,
    )
    assert done.returncode == 1, done.stderr
    assert one_line(done.stderr), done.stderr
    assert done.stderr == (
        "pop3 serve: --backend trio needs trio, which is not installed: "
        "pip install 'pop3-sansio[trio]'\n"
    )
    assert done.stdout == ""  # refused before the demo was set up or announced


# --- pop3 serve: the port, the maildir ----------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [["--backend", "asyncio"], ["--backend", "trio"], ["--backend", "sync"], ["--workers", "2"]],
)
def test_port_in_use_names_the_port(how: list[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = subprocess.run(
            pop3("serve", "--port", str(port), *how),
            capture_output=True,
            text=True,
            timeout=30,
            env=env(),
        )
    assert done.returncode == 1, done.stderr
    assert one_line(done.stderr), done.stderr
    assert done.stderr.startswith(f"pop3 serve: port {port} is already in use on 127.0.0.1:")
    assert "--port" in done.stderr and "Errno" not in done.stderr


def test_missing_maildir_is_warned_about_at_start(tmp_path: Path) -> None:
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    root = tmp_path / "no" / "such" / "dir"
    with PopServer(tmp_path, "asyncio", users, root) as server:
        assert server.stop() == 0
    assert (
        f"pop3 serve: warning: --maildir {root} does not exist; "
        "it will be created at the first login\n"
    ) in server.stderr
    assert not root.exists()  # created at the first login, not at start


def test_maildir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    (tmp_path / "file").write_text("not a directory\n")
    argv = ["serve", "--port", "0", "--users", str(users), "--maildir", str(tmp_path / "file")]
    done = subprocess.run(pop3(*argv), capture_output=True, text=True, env=env(), timeout=30)
    assert done.returncode == 1, done.stderr
    assert one_line(done.stderr), done.stderr
    assert f"--maildir {tmp_path / 'file'} is not a directory" in done.stderr


def test_existing_maildir_gives_no_warning(tmp_path: Path) -> None:
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    (tmp_path / "mail").mkdir()
    with PopServer(tmp_path, "asyncio", users, tmp_path / "mail") as server:
        assert server.stop() == 0
    assert "warning" not in server.stderr


# --- counts -----------------------------------------------------------------------------------


def test_counted() -> None:
    from pop3_cli._progress import counted

    assert counted(1, "message") == "1 message"
    assert [counted(n, "message") for n in (0, 2)] == ["0 messages", "2 messages"]
    assert counted(1, "user has", "users have") == "1 user has"
    assert counted(3, "user has", "users have") == "3 users have"


# --- pop3 fetch: TLS that the server does not speak; the summary -------------------------------


def _fetch(port: int, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pop3(
            *("fetch", "--host", "127.0.0.1", "--port", str(port), "--user", "alice"),
            *("--password-env", "POP3_TEST_PASSWORD", "--maildir", str(dest), *args),
        ),
        env=env(POP3_TEST_PASSWORD=PASSWORD),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fetch_explains_tls_mismatches_and_counts_in_words(tmp_path: Path) -> None:
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    message = b"Subject: one\r\n\r\nthe only message\r\n"
    box = tmp_path / "mail" / "alice"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1700000000.M1P1.test").write_bytes(message)
    with PopServer(tmp_path, "asyncio", users, tmp_path / "mail") as server:
        where = f"127.0.0.1:{server.port}"
        implicit = _fetch(server.port, tmp_path / "dest", "--implicit-tls")
        assert implicit.returncode == 1
        assert one_line(implicit.stderr), implicit.stderr
        assert implicit.stderr.startswith(f"pop3 fetch: {where} did not answer with TLS")
        assert "--starttls" in implicit.stderr and "995" in implicit.stderr
        assert "WRONG_VERSION_NUMBER" not in implicit.stderr

        starttls = _fetch(server.port, tmp_path / "dest", "--starttls")
        assert starttls.returncode == 1
        assert one_line(starttls.stderr), starttls.stderr
        assert starttls.stderr.startswith(f"pop3 fetch: {where} does not offer STLS: stopped")
        assert "-ERR" not in starttls.stderr  # the client refused; the server said nothing

        done = _fetch(server.port, tmp_path / "dest")
        assert done.returncode == 0, done.stderr
        assert done.stdout == (
            f"fetched 1 message ({len(message)} octets), 1 deleted on the server\n"
        )
        assert server.stop() == 0


def test_a_refusal_of_the_client_does_not_read_as_a_server_reply() -> None:
    from pop3_sansio.client import AuthError, Pop3Error

    refused = Pop3Error("the server does not offer STLS", None, "STLS", local=True)
    assert str(refused) == "STLS: the server does not offer STLS"
    assert refused.local and refused.code is None
    answered = AuthError("no such user", None, "PASS")
    assert str(answered) == "PASS: -ERR no such user" and not answered.local


# --- the server's log: why a session ended ------------------------------------------------------


@pytest.mark.parametrize("name", bindings.NAMES)
@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_a_client_rejecting_the_certificate_is_logged_as_a_failed_handshake(
    pem: dict[str, Path], caplog: pytest.LogCaptureFixture, name: str, mode: str
) -> None:
    caplog.set_level(logging.INFO, logger="pop3")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem["cert"], pem["key"])
    option = "ssl_context" if mode == "implicit" else "starttls_context"
    untrusting = ssl.create_default_context()  # the test CA is not among the system's
    with bindings.serving(name, FakeBackend(), **{option: context}) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            if mode == "starttls":
                reader = sock.makefile("rb")
                assert reader.readline().startswith(b"+OK")
                sock.sendall(b"STLS\r\n")
                assert reader.readline().startswith(b"+OK")
            with pytest.raises(ssl.SSLCertVerificationError):
                untrusting.wrap_socket(sock, server_hostname="127.0.0.1")
        line = wait_for_log(caplog, "session ended:")
    event, fields = log_fields(line)
    assert (event, fields["rip"], fields["user"]) == ("session ended", "127.0.0.1", "<>")
    assert fields["reason"] == (
        "TLS handshake failed: the client does not trust "
        "the certificate's issuer (TLSV1_ALERT_UNKNOWN_CA)"
    )


@pytest.mark.parametrize("name", bindings.NAMES)
def test_stopping_the_server_during_a_retr_is_logged_as_shutdown(
    caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.INFO, logger="pop3")
    backend = FakeBackend(messages=[(b"x" * 70 + b"\r\n") * 200_000])  # 14 MB: still in flight
    with socket.socket() as sock:
        with bindings.serving(name, backend, allow_plaintext=True) as port:
            sock.settimeout(TIMEOUT)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
            received = b""
            while received.count(b"\r\n") < 5:  # greeting, +OK, +OK, +OK, a line of it
                received += sock.recv(1 << 16)
            # The server stops while the message is on its way.
        while sock.recv(1 << 16):  # read on, to the end the server made
            pass
    line = wait_for_log(caplog, "session ended:")
    event, fields = log_fields(line)
    assert (event, fields["rip"], fields["user"]) == ("session ended", "127.0.0.1", "<alice>")
    assert fields["reason"] == "server shutdown"


# --- the demo's hint ------------------------------------------------------------------------------


def _read_until(proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + 30
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while marker not in out:
            left = deadline - time.monotonic()
            assert left > 0, out
            if selector.select(left):
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, ("pop3 serve exited", out)
                out += chunk
    return out


@pytest.mark.parametrize("how", ["script", "module"])
def test_the_demo_fetch_hint_runs_as_printed(tmp_path: Path, how: str) -> None:
    """``make run`` starts ``.venv/bin/pop3``, not on ``PATH``: the hint must still run."""
    script = Path(sys.executable).parent / "pop3"  # the console script of this environment
    assert script.exists(), "the package is not installed in this environment"
    environ = env()
    environ["PATH"] = os.pathsep.join(
        entry
        for entry in environ.get("PATH", "").split(os.pathsep)
        if entry and not (Path(entry) / "pop3").exists()
    )
    if how == "script":  # as make run starts it, by a path relative to where the user is
        argv = [os.path.relpath(script, tmp_path), "serve", "--port", "0"]
    else:
        argv = pop3("serve", "--port", "0")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=environ, stdout=subprocess.PIPE)
    try:
        out = _read_until(proc, b"Stop with Ctrl-C.").decode()
        (hint,) = [line.strip() for line in out.splitlines() if " fetch --host " in line]
        done = subprocess.run(
            hint, shell=True, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (hint, done.stderr)
        assert done.stdout.startswith("fetched 4 messages ("), done.stdout
        assert len(list((tmp_path / "Mail" / "new").iterdir())) == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_fetch_without_implicit_tls_against_an_implicit_tls_port(
    tmp_path: Path, pem: dict[str, Path]
) -> None:
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    tls = ("--tls-cert", str(pem["cert"]), "--tls-key", str(pem["key"]), "--implicit-tls")
    with PopServer(tmp_path, "asyncio", users, tmp_path / "mail", *tls) as server:
        done = _fetch(server.port, tmp_path / "dest", "--starttls", "--timeout", "0.5")
        assert done.returncode == 1
        assert one_line(done.stderr), done.stderr
        assert done.stderr == (
            f"pop3 fetch: 127.0.0.1:{server.port} sent no greeting within 0.5 seconds: if it "
            "speaks TLS from the start (usually port 995), use --implicit-tls\n"
        )
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("exc", "port", "line"),
    [
        (
            OSError(errno.EACCES, "Permission denied"),
            110,
            "not allowed to listen on port 110 of 127.0.0.1: ports below 1024 need root "
            "(or CAP_NET_BIND_SERVICE); choose another with --port",
        ),
        (
            OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
            1110,
            "cannot listen on 127.0.0.1: not an address of this machine",
        ),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            1110,
            "cannot listen on 127.0.0.1: Name or service not known",
        ),
        (
            OSError(errno.EMFILE, "Too many open files"),
            1110,
            "cannot listen on 127.0.0.1:1110: Too many open files",
        ),
    ],
)
def test_other_listen_failures_say_what_failed(exc: OSError, port: int, line: str) -> None:
    from pop3_cli._errors import listen_failed

    assert str(listen_failed("127.0.0.1", port, exc)) == line
