"""Dovecot's crypt password schemes and ``pop3 pw``, checked against the real ``doveadm pw``.

Values made by Dovecot's own ``doveadm pw -s SCHEME`` must be accepted by ``UserDB``, and
values made by ``pop3_maildrop.hash_password`` (``pop3 pw``) must pass ``doveadm pw -t``:
both directions against the real implementation. ``openssl passwd`` gives the bare
``$6$``/``$5$``/``$1$`` values that users paste into a file.
"""

from __future__ import annotations

import os
import poplib
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peers import require_peer
from pop3_maildrop import HASH_SCHEMES, UserDB, _crypt, _users, hash_password, verify_password
from served import SRC, PopServer, env, pop3

pytest_plugins = ["peers"]

PASSWORD = "pässwörd 1"
CRYPT_SCHEMES = ["SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "ARGON2I", "ARGON2ID"]


def doveadm_pw(scheme: str, password: str) -> str:
    doveadm = require_peer("doveadm", "dovecot-core")
    out = subprocess.run(
        [doveadm, "pw", "-s", scheme, "-p", password],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def doveadm_verifies(value: str, password: str) -> bool:
    doveadm = require_peer("doveadm", "dovecot-core")
    out = subprocess.run(
        [doveadm, "pw", "-t", value, "-p", password], capture_output=True, text=True, timeout=30
    )
    assert out.returncode in (0, 75), out  # 75: "not verified"; anything else is a bad value
    return out.returncode == 0 and "(verified)" in out.stdout


def openssl_passwd(flag: str, password: str) -> str:
    openssl = require_peer("openssl", "openssl")
    out = subprocess.run(
        [openssl, "passwd", flag, "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


# --- reading what Dovecot and OpenSSL write --------------------------------------------------


@pytest.mark.parametrize("scheme", [*CRYPT_SCHEMES, "CRYPT"])
def test_values_doveadm_makes_are_read(scheme: str) -> None:
    value = doveadm_pw(scheme, PASSWORD)
    assert value.startswith("{" + scheme + "}$")
    db = UserDB.parse(f"alice:{value}\n")
    assert db.check_password("alice", PASSWORD)
    assert not db.check_password("alice", PASSWORD[:-1])
    assert not db.check_password("alice", "")
    assert db.secret("alice") is None  # a hash: no APOP, CRAM-MD5 or SCRAM for alice
    # {CRYPT} is crypt(3): Dovecot picks the algorithm, the value's $id$ names it.
    assert "CRYPT" in repr(db._entries["alice"]) or "ARGON2" in repr(db._entries["alice"])


@pytest.mark.parametrize("scheme", CRYPT_SCHEMES)
def test_bare_values_are_hashes_not_plain_passwords(scheme: str) -> None:
    """``$6$...`` without ``{SHA512-CRYPT}`` is that hash (it used to be a plain password)."""
    bare = doveadm_pw(scheme, PASSWORD).partition("}")[2]
    db = UserDB.parse(f"alice:{bare}\n")
    assert db._entries["alice"].scheme == scheme
    assert db.check_password("alice", PASSWORD)
    assert not db.check_password("alice", bare)  # the hash itself is no password
    assert db.secret("alice") is None


@pytest.mark.parametrize(
    ("flag", "scheme"), [("-6", "SHA512-CRYPT"), ("-5", "SHA256-CRYPT"), ("-1", "MD5-CRYPT")]
)
def test_openssl_passwd_values(flag: str, scheme: str) -> None:
    value = openssl_passwd(flag, PASSWORD)
    db = UserDB.parse(f"bob:{value}\n")
    assert db._entries["bob"].scheme == scheme
    assert db.check_password("bob", PASSWORD)
    assert not db.check_password("bob", "pässwörd 2")


def test_bcrypt_uses_the_first_72_octets_as_dovecot_does() -> None:
    long = "x" * 72
    value = doveadm_pw("BLF-CRYPT", long)
    db = UserDB.parse(f"a:{value}\n")
    assert db.check_password("a", long)
    assert db.check_password("a", long + "tail")  # crypt_blowfish ignores octet 73 on
    assert doveadm_verifies(value, long + "tail")
    assert not db.check_password("a", long[:-1])


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("$y$j9T$F5Jx5fExrKuJdvFWWIhHn0$vKIVpcxmPVuW6ChLhLsPaUfi5rq4bvKwqyhq7PxwXpA", "yescrypt"),
        ("$7$C6..../....SodiumChloride$kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D", "scrypt"),
        ("$2x$05$abcdefghijklmnopqrstuuOI3DAzXHbIcI7t5rkR3VZYr5h.u4Xya", "sign bug"),
        ("$argon2d$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "ARGON2D"),
        ("$sha1$40000$jtNX3nZ2$hBNaIXkt4wBI2o5rsi8KejSjNqIq", "SHA1-CRYPT"),
        ("$frob$abc$defghijklmnopqrstuvwxyz", "unknown crypt scheme $frob$"),
        ("{DES-CRYPT}aaR9W0p9FzPQU", "unknown password scheme {DES-CRYPT}"),
        ("{SCRAM-SHA-256}4096,c2FsdA==,a2V5,c2VydmVy", "unknown password scheme {SCRAM-SHA-256}"),
        ("{SHA512-CRYPT}$5$abcdefgh$abcdefghijklmnopqrstuvwxyz0123456789", "starts with $5$"),
        ("{BLF-CRYPT.HEX}$2y$05$abc", "unsupported encoding"),
        ("{CRYPT}plain-looking", "not a $id$"),
        ("$2y$05$abcdefghijklmnopqrstuu", "{BLF-CRYPT} value is malformed"),
        ("{BLF-CRYPT}$2y$99$" + "a" * 53, "{BLF-CRYPT} value is malformed"),
        ("$argon2id$v=19$m=65536,t=3,p=4$abc", "{ARGON2ID} value is malformed"),
        ("{SHA512-CRYPT}$6$salt$" + "a" * 87, "{SHA512-CRYPT} value is malformed"),
    ],
)
def test_hash_like_values_of_unknown_schemes_are_refused(value: str, named: str) -> None:
    with pytest.raises(ValueError, match=r"line 2: .*") as info:
        UserDB.parse(f"ok:plain\ncarol:{value}\n", source="users")
    assert named in str(info.value)
    assert value not in str(info.value)  # never the value itself


@pytest.mark.parametrize("plain", ["$ecret", "$ecret$word$", "pa$$word", "$6$short$x"])
def test_plain_passwords_with_dollars_stay_plain(plain: str) -> None:
    """Only a value shaped like a crypt hash (3+ '$', crypt alphabet, 20+ chars) is one."""
    db = UserDB.parse(f"a:{plain}\n")
    assert db.secret("a") == plain
    assert db.check_password("a", plain)


def test_a_plain_password_shaped_like_a_hash_is_written_with_plain() -> None:
    hashlike = "$6$abcdefgh$abcdefghijklmnopqrstuvwxyz"
    db = UserDB.parse(f"a:{{PLAIN}}{hashlike}\n")
    assert db.secret("a") == hashlike
    assert db.check_password("a", hashlike)


def test_unknown_users_cost_as_much_as_the_costliest_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown name runs the costliest check there is (RFC 1939 section 13), here argon2."""
    argon = hash_password("pw", "ARGON2ID", rounds=1)
    sha = hash_password("pw", "SHA512-CRYPT")
    db = UserDB.parse(f"a:plain\nb:{sha}\nc:{argon}\nd:{hash_password('pw', 'PBKDF2')}\n")
    checked: list[tuple[str, str]] = []
    real = _crypt.verify_crypt

    def spy(scheme: str, value: str, password: bytes) -> bool:
        checked.append((scheme, value))
        return real(scheme, value, password)

    monkeypatch.setattr(_users, "verify_crypt", spy)
    assert not db.check_password("nobody", "pw")  # the decoy's own result is discarded
    assert checked == [("ARGON2ID", argon.partition("}")[2])]
    assert db.check_password("b", "pw")
    assert checked[-1] == ("SHA512-CRYPT", sha.partition("}")[2])


# --- making values Dovecot reads -------------------------------------------------------------


@pytest.mark.parametrize("scheme", HASH_SCHEMES)
def test_hash_password_values_pass_doveadm(scheme: str) -> None:
    value = hash_password(PASSWORD, scheme)
    assert value.startswith("{" + scheme + "}")
    assert doveadm_verifies(value, PASSWORD)
    assert not doveadm_verifies(value, PASSWORD + "!")
    assert verify_password(PASSWORD, value)
    assert not verify_password(PASSWORD + "!", value)
    assert hash_password(PASSWORD, scheme) != value  # a fresh salt each time


@pytest.mark.parametrize(
    ("scheme", "rounds", "marker"),
    [
        ("SHA512-CRYPT", 6000, "$rounds=6000$"),
        ("SHA256-CRYPT", 1000, "$rounds=1000$"),
        ("BLF-CRYPT", 5, "$2y$05$"),
        ("ARGON2ID", 2, ",t=2,"),
        ("PBKDF2", 1234, "$1234$"),
    ],
)
def test_rounds(scheme: str, rounds: int, marker: str) -> None:
    value = hash_password(PASSWORD, scheme, rounds=rounds)
    assert marker in value
    assert doveadm_verifies(value, PASSWORD)


def test_default_rounds_are_glibcs() -> None:
    value = hash_password("pw")
    assert value.startswith("{SHA512-CRYPT}$6$") and "rounds=" not in value  # 5000, implied


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "SHA512"}, "cannot make SHA512 hashes"),
        ({"scheme": "CRYPT"}, "cannot make CRYPT hashes"),
        ({"scheme": "SSHA512", "rounds": 3}, "SSHA512 has no rounds"),
        ({"scheme": "MD5-CRYPT", "rounds": 3}, "fixed number of rounds"),
        ({"rounds": 0}, "at least 1"),
    ],
)
def test_hash_password_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hash_password("pw", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")


def test_verify_password_refuses_malformed_values_without_echoing_them() -> None:
    with pytest.raises(ValueError) as info:
        verify_password("pw", "{SSHA512}not-base64!")
    assert "not-base64" not in str(info.value)


def test_a_missing_library_is_named_when_the_file_is_read(tmp_path: Path) -> None:
    """Without bcrypt, a {BLF-CRYPT} user refuses the file, naming the extra to install."""
    value = hash_password("pw", "BLF-CRYPT", rounds=4)
    users = tmp_path / "users"
    users.write_text(f"alice:{value}\nbob:plain\n")
    users.chmod(0o600)
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'bcrypt': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pop3_cli._main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", blocker, "serve", "--users", str(users), "--port", "0"],
        capture_output=True,
        text=True,
        env=env(PYTHONPATH=SRC),
        timeout=60,
    )
    assert out.returncode == 1, out  # as for any bad users file: one line, no traceback
    assert out.stderr.startswith("pop3 serve: ") and out.stderr.count("\n") == 1
    assert "line 1: {BLF-CRYPT} needs the bcrypt package" in out.stderr
    assert "pip install 'pop3-sansio[passwords]'" in out.stderr
    assert value not in out.stderr


# --- pop3 pw ---------------------------------------------------------------------------------


def run_pw(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pop3("pw", *args), input=stdin, capture_output=True, text=True, env=env(), timeout=60
    )


def test_pw_reads_standard_input_and_prints_one_value() -> None:
    out = run_pw("-s", "sha256-crypt", stdin=PASSWORD + "\n")
    assert out.returncode == 0, out
    value = out.stdout.strip()
    assert out.stdout.count("\n") == 1 and value.startswith("{SHA256-CRYPT}$5$")
    assert doveadm_verifies(value, PASSWORD)  # the trailing newline is not part of it


def test_pw_user_line_and_test_mode() -> None:
    out = run_pw("-u", "alice", stdin=PASSWORD + "\n")
    name, _, value = out.stdout.strip().partition(":")
    assert (out.returncode, name) == (0, "alice")
    assert value.startswith("{SHA512-CRYPT}$6$")
    good = run_pw("-t", value, stdin=PASSWORD + "\n")
    assert (good.returncode, good.stdout) == (0, "verified\n")
    bad = run_pw("-t", value, stdin="wrong\n")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "pop3 pw: the password does not match\n"
    unknown = run_pw(
        "-t", "$y$j9T$F5Jx5fExrKuJdvFWWIhHn0$vKIVpcxmPVuW6ChLhLsPaUfi5rq4bvKwqyh", stdin="x\n"
    )
    assert unknown.returncode == 1 and "$y$ is yescrypt" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (("-s", "des"), "pw\n", 2, "invalid choice: 'DES'"),
        (("-r", "0"), "pw\n", 2, "at least 1"),
        (("-s", "ssha512", "-r", "5"), "pw\n", 1, "SSHA512 has no rounds"),
        ((), "\n", 1, "empty password"),
        ((), "", 1, "empty password"),
    ],
)
def test_pw_errors(args: tuple[str, ...], stdin: str, code: int, message: str) -> None:
    out = run_pw(*args, stdin=stdin)
    assert out.returncode == code, out
    assert message in out.stderr and out.stdout == ""
    assert out.stderr.count("\n") <= 2 and "Traceback" not in out.stderr


def _on_a_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run ``pop3 pw`` on a pseudo-terminal, answering each prompt; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.environ.update(env())
        os.execv(sys.executable, pop3("pw", *args))
    output = b""
    pending = list(answers)
    answered = 0  # where the output stood at the last answer: each prompt is answered once
    deadline = time.monotonic() + 30
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if pending and output[answered:].rstrip().endswith(b":"):
            os.write(fd, pending.pop(0).encode() + b"\n")
            answered = len(output)
    else:
        os.kill(pid, signal.SIGKILL)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_pw_asks_twice_on_a_terminal_and_never_echoes() -> None:
    code, output = _on_a_terminal(["-u", "bob"], [PASSWORD, PASSWORD])
    assert code == 0, output
    assert "Password:" in output and "Again:" in output
    assert PASSWORD not in output  # getpass turns echo off
    line = output.strip().splitlines()[-1]
    assert line.startswith("bob:{SHA512-CRYPT}$6$")
    assert doveadm_verifies(line.partition(":")[2], PASSWORD)


def test_pw_on_a_terminal_refuses_two_different_answers() -> None:
    code, output = _on_a_terminal([], [PASSWORD, PASSWORD + "x"])
    assert code == 1
    assert "the two passwords differ" in output and "{SHA512" not in output


# --- end to end: a hashed users file served ---------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "sync", "trio"])
def test_a_server_with_crypt_users_logs_them_in(tmp_path: Path, backend: str) -> None:
    users = tmp_path / "users"
    users.write_text(
        f"alice:{doveadm_pw('SHA512-CRYPT', PASSWORD)}\n"
        f"bob:{openssl_passwd('-6', 'bobs pw')}\n"
        f"carol:{hash_password('carols pw', 'ARGON2ID', rounds=1)}\n"
    )
    users.chmod(0o600)
    root = tmp_path / "mail"
    with PopServer(tmp_path, backend, users, root) as server:
        for user, password in [("alice", PASSWORD), ("bob", "bobs pw"), ("carol", "carols pw")]:
            client = poplib.POP3("127.0.0.1", server.port, timeout=30)
            assert b"<" not in client.getwelcome()  # no APOP timestamp: no plain secret here
            client.user(user)
            assert client.pass_(password).startswith(b"+OK")
            client.quit()
        client = poplib.POP3("127.0.0.1", server.port, timeout=30)
        try:
            client.user("alice")
            with pytest.raises(poplib.error_proto) as info:
                client.pass_("bobs pw")
            assert info.value.args[0].startswith(b"-ERR [AUTH]")
        finally:
            client.close()
