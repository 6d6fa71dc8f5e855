"""What both test servers share: users, messages, what was deleted, TLS material.

The server that runs the sessions (threads, or the test's own event loop) is
the subclass's; everything a test sets up or reads back is here, once.
"""

from __future__ import annotations

import dataclasses
import email.generator
import email.message
import io
import os
import ssl
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from pop3_maildrop import Backend, MemoryStorage, UserDB, read_eml_dir
from pop3_sansio.client import TlsMode
from pop3_sansio.server import ServerOptions

from ._tls import TlsMaterial, tls_material

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "MessageSource",
    "ServerBase",
    "StoredMessage",
    "default_options",
]

DEFAULT_USER = "user"
"""The name of the user every test server has from the start."""
DEFAULT_PASSWORD = "password"  # noqa: S105 - a test server's published password
"""That user's password."""
HOST = "127.0.0.1"

MessageSource: TypeAlias = bytes | bytearray | memoryview | email.message.Message | os.PathLike[str]
"""What ``add_message`` takes: raw octets, a parsed message, or the path of one ``.eml`` file."""


def default_options() -> ServerOptions:
    """The options a test server runs with unless it is given others.

    Every login method is offered (all passwords are plain, so APOP, CRAM-MD5
    and SCRAM work), a wrong password is answered at once (a test should not
    wait the 2 s a real server makes a guesser wait), and every connection
    comes from 127.0.0.1, so there is no limit of sessions per address.
    """
    return ServerOptions(
        mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"),
        apop=True,
        failed_login_delay=0.0,
        max_sessions_per_address=None,
        hostname="localhost",
    )


@dataclass(frozen=True)
class StoredMessage:
    """One message a test added: whose, its unique id (UIDL), and its octets as stored.

    ``original`` is what was passed in (the bytes, the ``email.message.Message``,
    or the ``Path`` of the ``.eml`` file); ``data`` is what the server serves,
    which RETR returns with CRLF line ends and a final CRLF.
    """

    user: str
    uid: str
    data: bytes = dataclasses.field(repr=False)
    original: object = dataclasses.field(repr=False, compare=False)

    @property
    def size(self) -> int:
        """The number of octets stored."""
        return len(self.data)


def message_bytes(message: MessageSource) -> bytes:
    """The octets to store for ``message``; ``TypeError`` for anything else (``str`` too)."""
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    if isinstance(message, email.message.Message):
        # CRLF as on the wire, and no ">From " quoting (compat32's default):
        # the message is served as the test built it.
        buffer = io.BytesIO()
        policy = message.policy.clone(linesep="\r\n")
        email.generator.BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(message)
        return buffer.getvalue()
    if isinstance(message, os.PathLike):
        return Path(message).read_bytes()
    raise TypeError(
        "a message is bytes, an email.message.Message or the path of an .eml file, "
        f"not {type(message).__name__}"
    )


class ServerBase:
    """Users, in-memory maildrops and TLS material of a test server.

    Not used on its own: ``Pop3TestServer`` and ``AsyncPop3TestServer`` add
    the running server. Everything here is thread-safe, so a test may add
    messages while a client is connected (they are not in a session's
    snapshot taken before, RFC 1939 section 4).
    """

    def __init__(
        self,
        *,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        tls: TlsMode = None,
        options: ServerOptions | None = None,
    ) -> None:
        if tls not in (None, "implicit", "starttls"):
            raise ValueError(f"tls must be None, 'implicit' or 'starttls', not {tls!r}")
        self.user = user
        """The default user's name: the one messages go to unless ``user=`` says otherwise."""
        self.password = password
        """The default user's password."""
        self.tls: TlsMode = tls
        """``"implicit"`` (TLS from the first byte), ``"starttls"`` (STLS offered) or ``None``."""
        self._initial_users = {user: password}
        self._users = dict(self._initial_users)
        self._lock = threading.Lock()
        self._records: dict[str, StoredMessage] = {}
        self._tls = tls_material() if tls is not None else None
        self._ca_dir: tempfile.TemporaryDirectory[str] | None = None
        options = options if options is not None else default_options()
        if self._tls is not None:
            context = self._tls.server_context
            if tls == "implicit":
                options = dataclasses.replace(options, ssl_context=context)
            else:
                options = dataclasses.replace(options, starttls_context=context)
        self.options = options
        """The ``ServerOptions`` the server runs with (TLS contexts filled in from ``tls``)."""
        self.backend = Backend(UserDB.from_pairs(self._users), MemoryStorage())
        """The ``pop3_maildrop.Backend`` served: a ``UserDB`` and a ``MemoryStorage``."""
        self._port: int | None = None

    def __repr__(self) -> str:
        where = f"{HOST}:{self._port}" if self._port is not None else "not started"
        return f"<{type(self).__name__} {where} tls={self.tls!r} user={self.user!r}>"

    # --- where --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address listened on: always ``"127.0.0.1"``."""
        return HOST

    @property
    def port(self) -> int:
        """The port listened on (a free one); ``RuntimeError`` before the server starts."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running: start it with 'with'")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, as ``socket.create_connection`` and ``poplib`` take them."""
        return (self.host, self.port)

    # --- users --------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Let ``name`` log in with ``password`` (replacing a password it had).

        ``ValueError`` for an empty password or a name with spaces or ``:``.
        """
        with self._lock:
            users = {**self._users, name: password}
            self.backend.users = UserDB.from_pairs(users)  # validates before it is kept
            self._users = users
            if name == self.user:
                self.password = password

    # --- messages -----------------------------------------------------------------------

    def add_message(self, message: MessageSource, *, user: str | None = None) -> StoredMessage:
        """Deliver ``message`` to ``user`` (default: the default user); return its record.

        ``message`` is bytes (LF or CRLF line ends), an ``email.message.Message``
        (``EmailMessage`` too, stored with CRLF line ends), or the path of an
        ``.eml`` file. ``KeyError`` for a user not added; ``TypeError`` for
        anything else (``str`` too: encode it first).
        """
        name = self.user if user is None else user
        data = message_bytes(message)
        original = Path(message) if isinstance(message, os.PathLike) else message
        with self._lock:
            if name not in self._users:
                raise KeyError(f"no user {name!r}: add_user() first")
            storage = self._storage()
            uid = storage.add(name, data)
            record = StoredMessage(name, uid, data, original)
            self._records[uid] = record
        return record

    def add_messages(
        self, messages: Iterable[MessageSource], *, user: str | None = None
    ) -> list[StoredMessage]:
        """``add_message`` for each of ``messages``, in order."""
        return [self.add_message(message, user=user) for message in messages]

    def add_eml_dir(
        self, path: str | os.PathLike[str], *, user: str | None = None
    ) -> list[StoredMessage]:
        """Deliver every ``*.eml`` file of the folder ``path``, in file-name order.

        The records' ``original`` is each file's ``Path``. ``FileNotFoundError``
        or ``NotADirectoryError`` for a bad path, ``ValueError`` if it holds no
        ``.eml`` file (see ``pop3_maildrop.read_eml_dir``).
        """
        return self.add_messages((file for file, _ in read_eml_dir(path)), user=user)

    def messages(self, user: str | None = None) -> list[StoredMessage]:
        """The messages ``user`` (default: the default user) has now, oldest first."""
        name = self.user if user is None else user
        with self._lock:
            return [self._records[uid] for uid in self._storage().uids(name)]

    def deleted(self, user: str | None = None) -> list[StoredMessage]:
        """The messages of ``user`` removed by a session (DELE, then QUIT), in delivery order.

        A message is removed only when the client's QUIT ends the session
        (RFC 1939 section 6): after a dropped connection this stays empty.
        """
        name = self.user if user is None else user
        with self._lock:
            present = set(self._storage().uids(name))
            return [r for r in self._records.values() if r.user == name and r.uid not in present]

    def reset(self) -> None:
        """Forget every message and added user: back to the default user with no mail.

        A session still open keeps the maildrop it has; new sessions see the
        empty one.
        """
        with self._lock:
            self._users = dict(self._initial_users)
            self.password = self._initial_users[self.user]
            self.backend.users = UserDB.from_pairs(self._users)
            self.backend.storage = MemoryStorage()
            self._records.clear()

    def _storage(self) -> MemoryStorage:
        storage = self.backend.storage
        assert isinstance(storage, MemoryStorage)
        return storage

    # --- TLS ----------------------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """A new client ``SSLContext`` that trusts this server's certificate (and verifies).

        The certificate is valid for ``localhost``, ``127.0.0.1`` and ``::1``.
        ``RuntimeError`` if the server was made without ``tls``.
        """
        return self._material().client_context()

    @property
    def ca_pem(self) -> bytes:
        """The PEM of the CA that issued the server's certificate."""
        return self._material().ca_pem

    @property
    def ca_pem_path(self) -> Path:
        """A file holding ``ca_pem`` (for ``--ca-file`` style options); removed by ``close``."""
        material = self._material()
        with self._lock:
            if self._ca_dir is None:
                self._ca_dir = tempfile.TemporaryDirectory(prefix="pop3-testing-")
            path = Path(self._ca_dir.name) / "ca.pem"
            if not path.exists():
                path.write_bytes(material.ca_pem)
            return path

    def _material(self) -> TlsMaterial:
        if self._tls is None:
            raise RuntimeError(
                "this server has no TLS: create it with tls='implicit' or 'starttls'"
            )
        return self._tls

    def _cleanup(self) -> None:
        """Remove the CA file, if one was written; the subclass's ``close`` calls it."""
        with self._lock:
            ca_dir, self._ca_dir = self._ca_dir, None
        if ca_dir is not None:
            ca_dir.cleanup()
