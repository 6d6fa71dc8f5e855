"""The project's servers, seen by real POP3 clients: a Maildir of known messages, served.

``serve_maildir(binding, root, ca, cert)`` fills ``root/Maildir`` with ``MESSAGES`` and runs
that binding's server for it twice (``serving`` from bindings.py, each in a thread of its
own): POP3 with STLS on ``port`` and implicit TLS on ``tls_port``, both on 127.0.0.1, with
APOP, CRAM-MD5, PLAIN and LOGIN offered (the users have plain secrets) and no failed-login
delay; ``apop=False`` and ``starttls=False`` leave APOP and STLS out.
The certificate (``server_cert``) names localhost both as a subject alternative name and as
the subject's common name, because fetchmail checks only the common name (it ignores a
certificate without one, and IP addresses in the subject alternative name).

With ``storage`` (a ``PostgresStorage``), the same messages, under the same unique ids, are
delivered into that storage instead (the user's maildrop emptied first), and the servers
serve it: ``Served.stored()`` then reads the maildrop back from the database.

The ``served`` fixture is that, for each binding in turn (parametrized), in ``tmp_path``,
once from a Maildir (ids ``asyncio``, ...) and once from PostgreSQL (ids
``asyncio-postgresql``, ...; one database per test module, tests/postgres.py).
The real clients run as subprocesses, each bounded by ``run``'s timeout.

Test modules load this file with ``pytest_plugins = ["peers", "ourserver"]`` (which loads
``postgres`` as well).
PYTEST_DONT_REWRITE (it is imported before it is a plugin).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from bindings import NAMES, serving
from peers import HOST, as_received
from pop3_maildrop import Backend, MaildirStorage, PostgresStorage, Storage, UserDB

pytest_plugins = ["postgres"]

USER = "alice"
PASSWORD = "s3cret-Pa55"
TIMEOUT = 30.0
"""Seconds any one run of a real client may take before the test fails."""

MESSAGES = [
    b"From: a@example.org\nTo: alice@example.org\nSubject: one\n\nHello.\n"
    b"From the desk of a.\n>From quoted.\nSecond line.\n",
    b"From: b@example.org\nSubject: dots\n\n.leading dot\n..two dots\n.\nend\n",
    b"Subject: stored with CRLF\r\nX-Test: 3\r\n\r\nalready CRLF\r\n",
    b"Subject: no final newline\n\nlast line",
    b"Subject: eight bits\nContent-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9 \xe2\x82\xac\n",
    b"From: big@example.org\nSubject: big\n\n"
    + b"".join(b"." * (i % 3) + b"y" * (i % 1013) + b"\n" for i in range(400)),
]


def lf(message: bytes) -> bytes:
    """A stored message as a client that keeps LF line ends delivers it (CRLF made LF)."""
    return as_received(message).replace(b"\r\n", b"\n")


def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", HOST, common_name="localhost")


@dataclass
class Served:
    binding: str
    maildir: Path
    port: int
    tls_port: int
    names: list[str]  # the message files' unique names, in message-number order
    ca_file: Path
    messages: Sequence[bytes] = tuple(MESSAGES)
    storage: PostgresStorage | None = None

    def context(self) -> ssl.SSLContext:
        """A client context that trusts the served certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def stored(self) -> dict[str, bytes]:
        """``{unique name: contents}`` of the messages now in the served maildrop."""
        if self.storage is not None:
            return maildrop_contents(self.storage, USER)
        return {
            path.name.partition(":")[0]: path.read_bytes()
            for sub in ("new", "cur")
            for path in (self.maildir / sub).iterdir()
        }

    def original(self) -> dict[str, bytes]:
        return dict(zip(self.names, self.messages, strict=True))


@contextlib.contextmanager
def serve_maildir(
    binding: str,
    root: Path,
    ca: trustme.CA,
    cert: trustme.LeafCert,
    *,
    apop: bool = True,
    starttls: bool = True,
    messages: Sequence[bytes] = tuple(MESSAGES),
    mechanisms: Sequence[str] = ("CRAM-MD5", "PLAIN", "LOGIN"),
    storage: PostgresStorage | None = None,
) -> Iterator[Served]:
    maildir = root / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    names = [f"{1_600_000_000 + i}.M{i}P{os.getpid()}.interop" for i in range(1, len(messages) + 1)]
    served_from: Storage = MaildirStorage(maildir)
    if storage is None:
        for name, message in zip(names, messages, strict=True):
            (maildir / "new" / name).write_bytes(message)
    else:
        empty_maildrop(storage, USER)
        storage.deliver_many(((USER, m) for m in messages), uids=names)
        served_from = storage
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    backend = Backend(UserDB.from_pairs({USER: PASSWORD}), served_from)
    options = {
        "failed_login_delay": 0,
        "apop": apop,
        "mechanisms": list(mechanisms),
    }
    with (
        serving(
            binding, backend, starttls_context=context if starttls else None, **options
        ) as port,
        serving(binding, backend, ssl_context=context, **options) as tls_port,
    ):
        yield Served(binding, maildir, port, tls_port, names, ca_file, tuple(messages), storage)


def maildrop_contents(storage: Storage, user: str) -> dict[str, bytes]:
    """``{unique id: octets}`` of ``user``'s maildrop in ``storage`` (nothing deleted)."""
    maildrop = storage.open(user)
    try:
        return {info.uid: b"".join(maildrop.read(n)) for n, info in enumerate(maildrop.messages, 1)}
    finally:
        maildrop.close()


def empty_maildrop(storage: Storage, user: str) -> None:
    """Remove every message of ``user``'s maildrop (what an earlier test left)."""
    maildrop = storage.open(user)
    try:
        maildrop.commit(range(1, len(maildrop.messages) + 1))
    finally:
        maildrop.close()


@pytest.fixture(scope="session")
def served_cert(ca: trustme.CA) -> trustme.LeafCert:
    return server_cert(ca)


STORAGES = [
    *((name, None) for name in NAMES),
    *((name, "postgresql") for name in NAMES),
]
"""The ``served`` fixtures' parameters: (binding, None for a Maildir or "postgresql")."""


def storage_id(param: tuple[str, str | None]) -> str:
    binding, storage = param
    return binding if storage is None else f"{binding}-{storage}"


@pytest.fixture(scope="module")
def interop_storage(pg_url: str) -> Iterator[PostgresStorage]:
    """The module's PostgreSQL maildrops; one storage for the servers and the checks, so
    that a maildrop closed by one is free at once for the other."""
    with PostgresStorage(pg_url, pool_max=4) as storage:
        yield storage


def storage_for(request: pytest.FixtureRequest) -> PostgresStorage | None:
    """The PostgreSQL storage for a ``STORAGES`` parameter, or None for a Maildir."""
    if request.param[1] is None:
        return None
    storage: PostgresStorage = request.getfixturevalue("interop_storage")
    return storage


@pytest.fixture(params=STORAGES, ids=storage_id)
def served(
    request: pytest.FixtureRequest, tmp_path: Path, ca: trustme.CA, served_cert: trustme.LeafCert
) -> Iterator[Served]:
    """Each binding's server in turn, serving ``MESSAGES`` from a Maildir in ``tmp_path``,
    then from PostgreSQL."""
    with serve_maildir(
        request.param[0], tmp_path / "served", ca, served_cert, storage=storage_for(request)
    ) as served:
        yield served


def run(
    command: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a real client to its end (at most ``TIMEOUT`` seconds); never raises for its status."""
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIMEOUT,
        check=False,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
