"""``pop3 serve`` in a subprocess, and a small blocking POP3 client on a raw socket.

The crash, hostile-client and load tests run the server as a process of its own:
so that it can be killed with SIGKILL, so that its memory can be read from
``/proc/PID/status``, and so that the load client does not share its GIL.
``PopServer`` starts ``pop3 serve --port 0 --users FILE --maildir ROOT`` (one
Maildir per user, ``ROOT/NAME``), waits until it listens and reads the port.

``RawClient`` speaks POP3 line by line with a timeout on every wait, and sees
every byte the server sends (``poplib`` hides the status line of a failure).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SRC = str(Path(__file__).resolve().parents[1] / "src")
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:([0-9]+)\n")
TIMEOUT = 10.0
"""Seconds any single network wait of these tests may take."""


def env(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POP3_TEST")}
    environ["PYTHONPATH"] = SRC + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(extra)
    return environ


def pop3(*args: str) -> list[str]:
    return [sys.executable, "-m", "pop3_cli", *args]


AS_RETRIEVED = ("--crlf", "--no-delivered-to", "--no-received")
"""``pop3 fetch`` options that store each message exactly as RETR handed it over."""


def start_fetch(
    port: int,
    user: str,
    password: str,
    dest: Path | None,
    stderr: Path,
    *options: str,
    form: Sequence[str] = AS_RETRIEVED,
) -> subprocess.Popen[bytes]:
    """``pop3 fetch`` from 127.0.0.1:``port`` into the Maildir ``dest``, its stderr to a file.

    The password goes by environment variable, as a user should pass it. The
    messages are stored as retrieved (``form``) unless told otherwise; with
    ``dest=None`` the target is in ``options`` (``--mbox``, ``--mda``).
    """
    target = ("--maildir", str(dest)) if dest is not None else ()
    with open(stderr, "wb") as err:
        return subprocess.Popen(
            pop3(
                *("fetch", "--host", "127.0.0.1", "--port", str(port), "--user", user),
                *("--password-env", "POP3_TEST_PASSWORD", *target, *form, *options),
            ),
            env=env(POP3_TEST_PASSWORD=password),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def write_users(path: Path, users: dict[str, str]) -> Path:
    """A users file with plain passwords (no maildir column: ``--maildir ROOT/NAME``)."""
    path.write_text("".join(f"{name}:{password}\n" for name, password in users.items()))
    path.chmod(0o600)  # pop3 serve warns about a users file that others can read
    return path


def crlf(message: bytes) -> bytes:
    """What RETR hands back for a stored message: CRLF line ends, a final line end."""
    out = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") else out + b"\r\n"


def deliver(maildir: Path, name: str, message: bytes) -> Path:
    """Deliver as a mail delivery agent does: write in tmp/, then rename into new/."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    tmp = maildir / "tmp" / name
    tmp.write_bytes(message)
    final = maildir / "new" / name
    os.rename(tmp, final)
    return final


def stored(maildir: Path) -> dict[str, bytes]:
    """``{file name: bytes}`` of every message in new/ and cur/."""
    out: dict[str, bytes] = {}
    for sub in ("new", "cur"):
        directory = maildir / sub
        if directory.is_dir():
            for path in directory.iterdir():
                out[path.name] = path.read_bytes()
    return out


class PopServer:
    """``pop3 serve --backend BACKEND`` on a free port of 127.0.0.1; ``with`` stops it."""

    def __init__(
        self,
        tmp_path: Path,
        backend: str,
        users_file: Path,
        root: Path,
        *args: str,
        prefix: Sequence[str] = (),
        preexec_fn: Callable[[], None] | None = None,
        storage: str | None = None,
    ) -> None:
        """``prefix`` runs the server through a command (e.g. ``setpriv ...``);
        ``preexec_fn`` runs in the child before that (e.g. to set resource limits);
        ``storage`` (a ``postgresql://`` URL) serves ``--storage URL`` instead of ``root``."""
        self.backend = backend
        self.stderr_path = tmp_path / f"serve-{backend}-{time.monotonic_ns()}.err"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    *pop3(
                        *("serve", "--backend", backend, "--port", "0", "-q"),
                        *("--users", str(users_file)),
                        *(("--maildir", str(root)) if storage is None else ("--storage", storage)),
                        *args,
                    ),
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env(),
                preexec_fn=preexec_fn,
            )
        try:
            self.port = self._wait_listening()
        except BaseException:
            self.kill()
            raise

    def _wait_listening(self) -> int:
        assert self.proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while not LISTENING.search(out):
                left = deadline - time.monotonic()
                assert left > 0, (out, self.stderr)
                if selector.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    assert chunk, ("pop3 serve exited", out, self.stderr)
                    out += chunk
        match = LISTENING.search(out)
        assert match is not None
        return int(match.group(1))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """The server's resident memory (VmRSS) in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+([0-9]+) kB$", status, re.MULTILINE)
        assert match is not None, status
        return int(match.group(1))

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^Threads:\s+([0-9]+)$", status, re.MULTILINE)
        assert match is not None, status
        return int(match.group(1))

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the server."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        finally:
            self.kill()
        return code

    def __enter__(self) -> PopServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


class RawClient:
    """One POP3 connection on a blocking socket; every wait times out after ``timeout``."""

    def __init__(
        self, port: int, timeout: float = TIMEOUT, *, greet: bool = True, source: str = ""
    ) -> None:
        """``source``: the loopback address to connect from (e.g. ``127.0.0.2``)."""
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.buffer = b""
        try:
            self.greeting = self.line() if greet else b""
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line, CRLF included; ``b""`` if the server closed first."""
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.line()

    def multiline(self) -> bytes:
        """A multi-line body after its +OK line, dot-unstuffed, CRLF kept, ".\\r\\n" dropped."""
        lines = []
        while (line := self.line()) != b".\r\n":
            assert line.endswith(b"\r\n"), line  # the server closed in the middle
            lines.append(line[1:] if line.startswith(b".") else line)
        return b"".join(lines)

    def login(self, user: str, password: str) -> bytes:
        """USER/PASS; the answer to PASS."""
        assert self.command(b"USER " + user.encode()).startswith(b"+OK")
        return self.command(b"PASS " + password.encode())

    def retr(self, msg: int) -> bytes:
        status = self.command(b"RETR %d" % msg)
        assert status.startswith(b"+OK"), status
        return self.multiline()


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    stdout: bytes
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, signum: int = signal.SIGINT) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=15)


@contextmanager
def serving(tmp_path: Path, *args: str, until: bytes = b"") -> Iterator[Served]:
    """``pop3 serve --port 0 ARGS`` until the block ends; yields once it listens."""
    stderr_path = tmp_path / f"serve-{time.monotonic_ns()}.err"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            pop3("serve", "--port", "0", *args), stdout=subprocess.PIPE, stderr=stderr, env=env()
        )
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 20
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while not (LISTENING.search(out) and until in out):
                left = deadline - time.monotonic()
                assert left > 0, (out, stderr_path.read_text())
                if selector.select(left):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    assert chunk, ("serve exited", out, stderr_path.read_text())
                    out += chunk
        match = LISTENING.search(out)
        assert match is not None
        yield Served(proc, int(match.group(1)), out, stderr_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
