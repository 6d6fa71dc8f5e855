"""Real POP3 peers for the interoperability tests: a throwaway Dovecot, and the skip-or-fail rule.

A test that needs a program which is not installed is skipped with a message naming the
Debian package (``make peers`` installs them all); with ``POP3_REQUIRE_PEERS=1`` in the
environment (as in CI) it fails instead, so a missing peer can never pass silently.

The ``dovecot`` fixture is a factory: ``server = dovecot({"alice": [b"..."]})`` starts a
Dovecot of its own (``dovecot -F -c FILE``) listening only on two free ports of 127.0.0.1,
POP3 with STLS and POP3S. Its configuration, base_dir, state_dir, log and Maildirs live in a
private directory (mode 0711) under the system temporary directory: not in ``tmp_path``,
because Dovecot's mail processes run as the ``mail`` user and must reach the Maildirs, and
pytest makes /tmp/pytest-of-<user> 0700 again whenever any pytest session starts. Dovecot
is stopped when the test ends, passed or failed; its log and configuration are copied into
``tmp_path`` (and printed, which pytest shows for a failed test), and the directory is
removed once Dovecot has exited. The system-wide Dovecot is never used.

``dovecot_module`` is the same factory for a whole test module (its Dovecots stop when the
module's last test has run, the logs are kept in a temporary directory of the module): for
tests that only read a maildrop, so one Dovecot serves many of them. Such tests look only
at the log written since they started (``log_mark`` and ``since``).

Test modules load this file with ``pytest_plugins = ["peers"]``. PYTEST_DONT_REWRITE (it is
imported before it is a plugin).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
import trustme

HOST = "127.0.0.1"
USERS = {"alice": "secret", "bob": "hunter2-bob"}
REQUIRE_ENV = "POP3_REQUIRE_PEERS"
MAIL_UID = MAIL_GID = 8  # Debian's mail user and group: Dovecot's mail processes run as them
# Where Debian puts dovecot and doveadm; not always on a non-root PATH.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin", "/usr/local/sbin"]
)


def peers_required() -> bool:
    """Whether a missing peer is a failure (``POP3_REQUIRE_PEERS=1``) rather than a skip."""
    return os.environ.get(REQUIRE_ENV) == "1"


def unavailable(message: str) -> None:
    """Skip the test with ``message``, or fail it when peers are required."""
    if peers_required():
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1", pytrace=False)
    pytest.skip(message)


def require_peer(executable: str, package: str) -> str:
    """The path of ``executable``; skip (or, with ``POP3_REQUIRE_PEERS=1``, fail) if missing."""
    path = shutil.which(executable, path=_SEARCH_PATH)
    if path is None:
        unavailable(
            f"{executable} is not installed (Debian package {package}; "
            "'make peers' installs every peer)"
        )
        raise AssertionError("unreachable")  # pragma: no cover - skip/fail raise
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def as_received(raw: bytes) -> bytes:
    """What a client gets from RETR of a stored message: CRLF line ends, ending in CRLF."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def crlf_size(raw: bytes) -> int:
    """The RFC 1939 size of a stored message: its octets with CRLF line ends, nothing added."""
    return len(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


# --- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def peer_ca() -> trustme.CA:
    """The CA that signs every test server's certificate (for 127.0.0.1 and localhost)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def peer_cert(peer_ca: trustme.CA) -> trustme.LeafCert:
    return peer_ca.issue_cert(HOST, "localhost")


# --- Dovecot ------------------------------------------------------------------------------


@functools.cache
def _version(dovecot: str) -> tuple[int, ...]:
    out = subprocess.run(
        [dovecot, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else (0,)


def _mechanisms(version: tuple[int, ...]) -> list[str]:
    # CRAM-MD5 and APOP need the plain secrets, which is why the users are {PLAIN}.
    mechanisms = ["plain", "login", "cram-md5", "apop"]
    if version >= (2, 2, 0):
        mechanisms.append("scram-sha-1")
    if version >= (2, 3, 10):  # SCRAM-SHA-256 arrived in Dovecot 2.3.10
        mechanisms.append("scram-sha-256")
    return mechanisms


@dataclass
class Dovecot:
    """A running throwaway Dovecot; ``port`` speaks POP3 (with STLS), ``pop3s_port`` POP3S."""

    root: Path
    config: Path
    port: int
    pop3s_port: int
    version: tuple[int, ...]
    process: subprocess.Popen[bytes]
    ca: trustme.CA
    uid: int
    gid: int
    greeting: bytes = b""
    capabilities: list[str] = field(default_factory=list)
    _serial: int = 0

    host = HOST

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def log(self, since: int = 0) -> str:
        """The log's complete lines (from ``since``, a ``log_mark``).

        A line Dovecot is still writing is left out: a pattern must never match half of it.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[: text.rfind("\n") + 1][since:]

    def log_mark(self) -> int:
        """Where the log ends now: pass it as ``since`` to see only what comes after."""
        return len(self.log())

    @property
    def sasl(self) -> set[str]:
        """The SASL mechanisms Dovecot announced in CAPA before login."""
        for line in self.capabilities:
            if line.upper().startswith("SASL "):
                return set(line.upper().split()[1:])
        return set()

    def maildir(self, user: str) -> Path:
        return self.root / "home" / user / "Maildir"

    def deliver(self, user: str, message: bytes) -> str:
        """Put ``message`` into ``user``'s Maildir ``new/`` as is; return its unique name.

        Names carry increasing times, so Dovecot numbers messages in delivery order.
        """
        self._serial += 1
        unique = f"{1_600_000_000 + self._serial}.M{self._serial}P{os.getpid()}.pop3test"
        maildir = self.maildir(user)
        tmp = maildir / "tmp" / unique
        tmp.write_bytes(message)
        os.chown(tmp, self.uid, self.gid)
        tmp.chmod(0o600)
        tmp.rename(maildir / "new" / unique)
        return unique

    def stored(self, user: str) -> dict[str, bytes]:
        """``{unique name: contents}`` of every message file in ``new/`` and ``cur/`` now."""
        found = {}
        for sub in ("new", "cur"):
            for path in (self.maildir(user) / sub).iterdir():
                found[path.name.partition(":")[0]] = path.read_bytes()
        return found

    def wait_for_log(self, pattern: str, timeout: float = 5.0, *, since: int = 0) -> str:
        """The first match of ``pattern`` in the log (after ``since``), waiting for Dovecot."""
        deadline = time.monotonic() + timeout
        while (match := re.search(pattern, self.log(since))) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not in the Dovecot log:\n{self.log(since)}")
            time.sleep(0.02)
        return match.group(0)

    async def await_log(self, pattern: str, timeout: float = 5.0, *, since: int = 0) -> str:
        """``wait_for_log`` for async tests: the event loop runs meanwhile."""
        deadline = time.monotonic() + timeout
        while (match := re.search(pattern, self.log(since))) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not in the Dovecot log:\n{self.log(since)}")
            await anyio.sleep(0.02)
        return match.group(0)

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def stop(self) -> None:
        """Ask Dovecot to stop (its master takes about a second; ``_reap`` waits for it)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the master stops all its processes


# Directories of stopped Dovecots, with their processes: removed once those have exited.
_graveyard: list[tuple[Path, list[subprocess.Popen[bytes]]]] = []


def _wait(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _reap(*, block: bool) -> None:
    """Remove the graveyard's directories whose Dovecot has exited (``block``: wait for all)."""
    for item in list(_graveyard):
        root, processes = item
        if not block and any(process.poll() is None for process in processes):
            continue
        for process in processes:
            _wait(process)
        shutil.rmtree(root, ignore_errors=True)
        _graveyard.remove(item)


@pytest.fixture(scope="session")
def _dovecot_reaper() -> Iterator[None]:
    """Waits once, at the end of the session, for every Dovecot told to stop."""
    try:
        yield
    finally:
        _reap(block=True)


def _config(root: Path, port: int, pop3s_port: int, mechanisms: Sequence[str]) -> str:
    dh = Path("/usr/share/dovecot/dh.pem")
    lines = [
        "# A throwaway Dovecot for pop3-sansio's interoperability tests.",
        "protocols = pop3",
        f"listen = {HOST}",
        f"base_dir = {root}/run",
        f"state_dir = {root}/state",
        f"instance_name = pop3-test-{port}",
        f"log_path = {root}/dovecot.log",
        "auth_verbose = yes",
        "ssl = yes",
        f"ssl_cert = <{root}/cert.pem",
        f"ssl_key = <{root}/key.pem",
        *([f"ssl_dh = <{dh}"] if dh.exists() else []),
        "disable_plaintext_auth = no",
        f"auth_mechanisms = {' '.join(mechanisms)}",
        "auth_failure_delay = 0",
        # No authentication penalty (a delay of 2 s and more for every login from an address
        # that failed one): wrong-password tests share a Dovecot with the others.
        "service anvil {",
        "  unix_listener anvil-auth-penalty {",
        "    mode = 0",
        "  }",
        "}",
        "pop3_lock_session = yes",
        "mail_location = maildir:~/Maildir",
        f"first_valid_uid = {MAIL_UID}",
        "passdb {",
        "  driver = passwd-file",
        f"  args = {root}/users",
        "}",
        "userdb {",
        "  driver = passwd-file",
        f"  args = {root}/users",
        "}",
        "service pop3-login {",
        "  inet_listener pop3 {",
        f"    address = {HOST}",
        f"    port = {port}",
        "  }",
        "  inet_listener pop3s {",
        f"    address = {HOST}",
        f"    port = {pop3s_port}",
        "    ssl = yes",
        "  }",
        "}",
        # Never anything else: no IMAP or submission listeners, whatever is installed.
        "service imap-login {",
        "  inet_listener imap {",
        "    port = 0",
        "  }",
        "  inet_listener imaps {",
        "    port = 0",
        "  }",
        "}",
        "service submission-login {",
        "  inet_listener submission {",
        "    port = 0",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _capa(port: int, deadline: float, process: subprocess.Popen[bytes]) -> tuple[bytes, list[str]]:
    """Wait until Dovecot answers on ``port``; return its greeting and CAPA lines."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with status {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=5) as s, s.makefile("rb") as f:
                greeting = f.readline()
                s.sendall(b"CAPA\r\n")
                lines = []
                if f.readline().startswith(b"+OK"):
                    while (line := f.readline()) not in (b".\r\n", b""):
                        lines.append(line.decode().rstrip("\r\n"))
                s.sendall(b"QUIT\r\n")
                f.readline()
                return greeting, lines
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


DovecotFactory = Callable[..., Dovecot]


@contextlib.contextmanager
def _dovecots(
    keep: Callable[[int], Path], peer_ca: trustme.CA, peer_cert: trustme.LeafCert
) -> Iterator[DovecotFactory]:
    """The factory behind ``dovecot`` and ``dovecot_module``; ``keep(i)``: where logs go."""
    binary = require_peer("dovecot", "dovecot-core and dovecot-pop3d")
    pop3 = Path("/usr/lib/dovecot/pop3")
    if not pop3.exists() and Path("/usr/lib/dovecot").exists():
        unavailable("Dovecot's POP3 server is not installed (Debian package dovecot-pop3d)")
    if os.geteuid() != 0:
        unavailable("the Dovecot tests run Dovecot as root (its mail processes as the mail user)")
    uid, gid = MAIL_UID, MAIL_GID
    version = _version(binary)
    _reap(block=False)
    made: list[tuple[Path, list[subprocess.Popen[bytes]]]] = []
    started: list[Dovecot] = []

    def start(messages: Mapping[str, Sequence[bytes]] | None = None) -> Dovecot:
        root = Path(tempfile.mkdtemp(prefix="pop3-dovecot-"))
        processes: list[subprocess.Popen[bytes]] = []
        made.append((root, processes))
        root.chmod(0o711)  # the login and mail processes (other users) pass through
        for sub in ("run", "state"):
            (root / sub).mkdir()
        (root / "home").mkdir(mode=0o711)
        users = []
        for user, password in USERS.items():
            home = root / "home" / user
            for sub in ("tmp", "new", "cur"):
                (home / "Maildir" / sub).mkdir(parents=True)
            for directory in [home, *home.glob("**/")]:
                os.chown(directory, uid, gid)
            home.chmod(0o700)
            users.append(f"{user}:{{PLAIN}}{password}:{uid}:{gid}::{home}::\n")
        (root / "users").write_text("".join(users))
        (root / "users").chmod(0o644)  # read by the auth process (user dovecot)
        peer_cert.private_key_pem.write_to_path(str(root / "key.pem"))
        (root / "key.pem").chmod(0o600)
        peer_cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        peer_ca.cert_pem.write_to_path(str(root / "ca.pem"))
        mechanisms = _mechanisms(version)
        config = root / "dovecot.conf"
        for _attempt in range(3):  # a free port can be taken by someone else meanwhile
            port, pop3s_port = free_port(), free_port()
            config.write_text(_config(root, port, pop3s_port, mechanisms))
            with (root / "stderr.log").open("wb") as stderr:
                process = subprocess.Popen(
                    [binary, "-F", "-c", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            processes.append(process)
            server = Dovecot(root, config, port, pop3s_port, version, process, peer_ca, uid, gid)
            try:
                server.greeting, server.capabilities = _capa(port, time.monotonic() + 15, process)
            except (OSError, RuntimeError):
                server.stop()
                process.wait(timeout=10)
                errors = (root / "stderr.log").read_text(errors="replace") + server.log()
                if "Address already in use" in errors:
                    continue
                raise RuntimeError(f"Dovecot did not start:\n{errors}") from None
            started.append(server)
            for user, texts in (messages or {}).items():
                for text in texts:
                    server.deliver(user, text)
            return server
        raise RuntimeError("Dovecot found no free ports")

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        _graveyard.extend(made)  # removed once Dovecot has exited (see _reap)
        for i, (root, _) in enumerate(made):
            kept = keep(i)
            kept.mkdir()
            for name in ("dovecot.conf", "dovecot.log", "stderr.log"):
                if (root / name).exists():
                    shutil.copyfile(root / name, kept / name)
            log = kept / "dovecot.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            print(f"--- {root}/dovecot.log (copied to {kept})\n{text}")  # shown if the test fails


@pytest.fixture
def dovecot(
    tmp_path: Path, peer_ca: trustme.CA, peer_cert: trustme.LeafCert, _dovecot_reaper: None
) -> Iterator[DovecotFactory]:
    """A factory: ``dovecot({user: [messages]})`` starts a throwaway Dovecot (see the module)."""
    with _dovecots(lambda i: tmp_path / f"dovecot{i}", peer_ca, peer_cert) as start:
        yield start


@pytest.fixture(scope="module")
def dovecot_module(
    tmp_path_factory: pytest.TempPathFactory,
    peer_ca: trustme.CA,
    peer_cert: trustme.LeafCert,
    _dovecot_reaper: None,
) -> Iterator[DovecotFactory]:
    """``dovecot`` for a whole test module: its Dovecots stop after the module's last test."""
    logs = tmp_path_factory.mktemp("dovecot-module")
    with _dovecots(lambda i: logs / f"dovecot{i}", peer_ca, peer_cert) as start:
        yield start
