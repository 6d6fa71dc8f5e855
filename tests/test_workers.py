"""``pop3 serve --workers N``: several processes on one port, one maildrop lock across them.

The server runs as a real process tree (``python -m pop3_cli``) in a session of its own,
so that nothing outlives a test. Log lines carry the pid of the process that wrote them;
with ``--proxy-protocol`` each test connection claims an address of its own (all
loopback), which ties every "session ended: rip=..." line to the connection it is about.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")
TIMEOUT = 20.0
MESSAGE = b"Subject: shared\n\none maildrop, several workers\n"
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:([0-9]+)\n")
WORKER_PIDS = re.compile(r"pop3\.cli\[(\d+)\]: 2 workers: pids (\d+) (\d+)")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + TIMEOUT
        while (match := re.search(pattern, self.log())) is None:
            assert time.monotonic() < deadline, f"{pattern!r} not in the log:\n{self.log()}"
            time.sleep(0.02)
        return match

    def workers(self) -> tuple[int, int]:
        match = self.wait_for(WORKER_PIDS.pattern)
        assert int(match.group(1)) == self.proc.pid
        return int(match.group(2)), int(match.group(3))


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str) -> Iterator[Server]:
    maildir = tmp_path / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (maildir / "new" / "1700000000.M1P1.test").write_bytes(MESSAGE)
    users = tmp_path / "users"
    users.write_text("alice:{PLAIN}secret\n")
    users.chmod(0o600)
    log_path = tmp_path / f"serve-{time.monotonic_ns()}.log"
    environ = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "pop3_cli", "serve", "--port", "0", "--maildir"]
    command += [str(tmp_path), "--users", str(users), *args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, env=environ, start_new_session=True
        )
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + TIMEOUT
        while (match := LISTENING.search(out)) is None:
            assert time.monotonic() < deadline, (out, log_path.read_text())
            os.set_blocking(proc.stdout.fileno(), False)
            chunk = proc.stdout.read() or b""
            if not chunk:
                assert proc.poll() is None, ("serve exited", out, log_path.read_text())
                time.sleep(0.02)
            out += chunk
        yield Server(proc, int(match.group(1)), log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the tree
        proc.wait(timeout=TIMEOUT)
        proc.stdout.close()  # type: ignore[union-attr]


class Client:
    """A POP3 client on a raw socket that first sends a PROXY header claiming ``address``."""

    def __init__(self, port: int, address: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        self.sock.sendall(f"PROXY TCP4 {address} 127.0.0.1 4000 110\r\n".encode())
        assert self.file.readline().startswith(b"+OK")

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.file.readline()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: tuple[int, ...]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {pids}"
        time.sleep(0.02)


@pytest.mark.parametrize("backend", ["asyncio", "trio", "sync"])
def test_a_maildrop_locked_in_one_worker_is_in_use_in_another(tmp_path: Path, backend: str) -> None:
    args = ("--workers", "2", "--proxy-protocol", "--backend", backend)
    with serve(tmp_path, *args) as server:
        workers = server.workers()
        holder = Client(server.port, "127.0.1.1")
        assert holder.command("USER alice").startswith(b"+OK")
        assert holder.command("PASS secret").startswith(b"+OK")  # holds the lock now
        # Other sessions until both workers have answered one (the kernel picks the worker).
        answered_by: dict[int, list[bytes]] = {}
        for n in range(1, 61):
            other = Client(server.port, f"127.0.2.{n}")
            assert other.command("USER alice").startswith(b"+OK")
            answer = other.command("PASS secret")
            assert other.command("QUIT").startswith(b"+OK")
            other.close()
            pid = int(server.wait_for(rf"\[(\d+)\]: session ended: rip=127\.0\.2\.{n} ").group(1))
            answered_by.setdefault(pid, []).append(answer)
            if len(answered_by) == 2:
                break
        assert set(answered_by) == set(workers), (answered_by, workers)
        assert holder.command("QUIT").startswith(b"+OK")
        holder.close()
        pattern = r"(?m)\[(\d+)\]: session ended: rip=127\.0\.1\.1 .* user=<alice> .* reason=quit$"
        holder_pid = int(server.wait_for(pattern).group(1))
        other_pid = next(pid for pid in workers if pid != holder_pid)
        # The worker that does not hold the lock refused it all the same.
        for answer in answered_by[other_pid]:
            assert answer.startswith(b"-ERR [IN-USE]"), answer
        # The lock is gone with the session: anyone may log in now.
        again = Client(server.port, "127.0.3.1")
        assert again.command("USER alice").startswith(b"+OK")
        assert again.command("PASS secret").startswith(b"+OK")
        assert again.command("QUIT").startswith(b"+OK")
        again.close()
        # SIGTERM to the parent stops every worker, and the exit status is 0.
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=TIMEOUT) == 0
        wait_gone(workers)
        assert "stopping 2 workers" in server.log()


def test_a_worker_that_dies_stops_the_server(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2") as server:
        workers = server.workers()
        os.kill(workers[1], signal.SIGKILL)
        assert server.proc.wait(timeout=TIMEOUT) == 1
        wait_gone(workers)
        log = server.log()
        assert f"worker 2 (pid {workers[1]}) was killed by signal 9; stopped the others" in log


def test_ctrl_c_stops_the_workers(tmp_path: Path) -> None:
    # A terminal's Ctrl-C reaches the whole process group: parent and workers.
    with serve(tmp_path, "--workers", "2", "--backend", "trio") as server:
        workers = server.workers()
        os.killpg(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(timeout=TIMEOUT) == 0, server.log()
        wait_gone(workers)


def test_every_worker_appends_to_the_log_file(tmp_path: Path) -> None:
    """``--log-file`` with ``--workers 2``: both workers' lines, and the parent's, in one file."""
    log_file = tmp_path / "pop3.log"
    args = ("--workers", "2", "--proxy-protocol", "--log-file", str(log_file))
    with serve(tmp_path, *args) as server:
        deadline = time.monotonic() + TIMEOUT
        while (match := WORKER_PIDS.search(log_file.read_text())) is None:
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.02)
        workers = {int(match.group(2)), int(match.group(3))}
        seen: set[int] = set()
        for n in range(1, 61):
            client = Client(server.port, f"127.0.4.{n}")
            assert client.command("QUIT").startswith(b"+OK")
            client.close()
            pattern = re.compile(rf"\[(\d+)\]: session ended: rip=127\.0\.4\.{n} ")
            deadline = time.monotonic() + TIMEOUT
            while (found := pattern.search(log_file.read_text())) is None:
                assert time.monotonic() < deadline, log_file.read_text()
                time.sleep(0.02)
            seen.add(int(found.group(1)))
            if seen == workers:
                break
        assert seen == workers
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=TIMEOUT) == 0
    assert server.log() == ""  # nothing on stderr: all of it went to the file
    assert "stopping 2 workers" in log_file.read_text()
