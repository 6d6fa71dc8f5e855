"""Mail delivery into PostgreSQL for the tests: ``pop3 lmtp`` and ``pop3 deliver`` as subprocesses.

``Lmtp`` runs ``pop3 lmtp`` (``with lmtp(...)`` stops it and checks it exits 0) and makes
``smtplib.LMTP`` clients for it; ``run_deliver`` runs ``pop3 deliver`` to its end;
``stored`` and ``sizes`` read a maildrop back through ``PostgresStorage.open`` without
deleting anything.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from ourserver import maildrop_contents
from pop3_maildrop import PostgresStorage
from served import env, pop3

TIMEOUT = 30.0
MESSAGE = b"From: a@example.org\nTo: alice@example.org\nSubject: hello\n\n.dot\nbody\n"


def stored(url: str, user: str) -> dict[str, bytes]:
    """``{uid: octets}`` of ``user``'s maildrop, in message-number order (nothing deleted)."""
    with PostgresStorage(url, pool_min=0, pool_max=1) as storage:
        return maildrop_contents(storage, user)


def sizes(url: str, user: str) -> list[int]:
    with PostgresStorage(url, pool_min=0, pool_max=1) as storage:
        maildrop = storage.open(user)
        maildrop.close()
        return [info.size for info in maildrop.messages]


def run_deliver(url: str, *args: str, stdin: bytes = MESSAGE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pop3("deliver", "--storage", url, *args),
        input=stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        env=env(),
        timeout=TIMEOUT,
        check=False,
    )


class Lmtp:
    """``pop3 lmtp`` in a subprocess; ``where`` is the address or socket path it listens on."""

    def __init__(self, tmp_path: Path, url: str, users: Path, *where: str) -> None:
        self.stderr_path = tmp_path / f"lmtp-{time.monotonic_ns()}.err"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                pop3("lmtp", "--storage", url, "--users", str(users), *where),
                stdout=subprocess.PIPE,
                stderr=err,
                env=env(),
            )
        try:
            self.where = self._listening()
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> str:
        assert self.proc.stdout is not None
        out = b""
        deadline = time.monotonic() + TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in out:
                assert time.monotonic() < deadline, self.stderr
                if selector.select(0.5):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    assert chunk, ("pop3 lmtp exited", self.stderr)
                    out += chunk
        line = out.split(b"\n")[0].decode()
        assert line.startswith("listening on "), line
        return line.removeprefix("listening on ")

    def client(self) -> smtplib.LMTP:
        if self.where.startswith("/"):
            client = smtplib.LMTP(self.where, timeout=TIMEOUT)
        else:
            host, _, port = self.where.rpartition(":")
            client = smtplib.LMTP(host, int(port), timeout=TIMEOUT)
        code, _ = client.ehlo("mta.example.org")  # smtplib.LMTP sends LHLO
        assert code == 250
        return client

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@contextlib.contextmanager
def lmtp(tmp_path: Path, url: str, users: Path, *where: str) -> Iterator[Lmtp]:
    server = Lmtp(tmp_path, url, users, *where)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.stderr
