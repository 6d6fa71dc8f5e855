"""``pop3 serve``: a POP3 server on Maildirs or PostgreSQL, or the demo."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import logging
import os
import shlex
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pop3_maildrop import (
    Backend,
    MaildirStorage,
    Maildrop,
    MemoryStorage,
    Storage,
    UserDB,
    read_eml_dir,
)

from ._defaults import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TLS_PORT
from ._demo import DEMO_PASSWORD, DEMO_USER, write_demo_maildir
from ._errors import CliError, UsageError, listen_failed
from ._progress import counted
from ._secretfile import read_secret_file

__all__ = [
    "BACKENDS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "ServeConfig",
    "UserMaildirs",
    "run_serve",
    "server_context",
]


PLAIN_SECRET_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5")
"""Offered (with APOP) only when every user has a plain secret."""
PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")

log = logging.getLogger("pop3.cli")


@dataclass
class ServeConfig:
    """Everything a binding needs to run the server."""

    backend: Backend
    host: str
    port: int
    options: dict[str, Any] = field(default_factory=dict)
    """Keywords of the bindings' ``serve`` (``ServerOptions``)."""
    announce: Callable[[list[tuple[str, int]]], None] = lambda addresses: None
    """Called with the listening addresses once the server accepts connections."""


# --- the bindings: adding one is one line here ------------------------------------------


def _run_asyncio(config: ServeConfig) -> None:
    asyncio.run(_serve_asyncio(config))


def _run_trio(config: ServeConfig) -> None:
    _require_trio()
    import trio

    trio.run(_serve_trio, config)


def _run_sync(config: ServeConfig) -> None:
    from pop3_sync import serve

    try:
        server = serve(config.backend, config.host, config.port, **config.options)
    except OSError as exc:
        raise listen_failed(config.host, config.port, exc) from None
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with server:
            server.start()
            config.announce([_address(sock.getsockname()) for sock in server.sockets])
            stop.wait()
            log.info("stopping")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _require_trio() -> None:
    """``CliError`` saying how to install trio if it is missing (exit status 1)."""
    try:
        import pop3_trio  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "trio":
            raise
        raise CliError(
            "--backend trio needs trio, which is not installed: pip install 'pop3-sansio[trio]'"
        ) from None


BACKENDS: dict[str, Callable[[ServeConfig], None]] = {
    "asyncio": _run_asyncio,
    "trio": _run_trio,
    "sync": _run_sync,
}
"""``--backend`` choices: a function that serves ``config`` until SIGINT/SIGTERM."""


async def _serve_asyncio(config: ServeConfig) -> None:
    from pop3_asyncio import serve

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_exception)
    try:
        server = await serve(config.backend, config.host, config.port, **config.options)
    except OSError as exc:
        raise listen_failed(config.host, config.port, exc) from None
    async with server:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        config.announce([_address(sock.getsockname()) for sock in server.sockets])
        await stop.wait()
        log.info("stopping")


async def _serve_trio(config: ServeConfig) -> None:
    import trio

    from pop3_trio import serve

    failed: OSError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                server = await nursery.start(
                    partial(serve, config.backend, config.host, config.port, **config.options)
                )
            except OSError as exc:
                failed = exc  # raised below: the nursery would wrap it in an ExceptionGroup
            else:
                config.announce([_address(sock.getsockname()) for sock in server.sockets])
                async for _ in signals:
                    log.info("stopping")
                    nursery.cancel_scope.cancel()
                    break
    if failed is not None:
        raise listen_failed(config.host, config.port, failed) from None


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's unhandled errors as one log line (a traceback only with -v)."""
    exc = context.get("exception")
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    show = exc if exc is not None and log.isEnabledFor(logging.DEBUG) else None
    log.warning("%s%s", context.get("message", "error"), detail, exc_info=show)


def _address(sockname: Any) -> tuple[str, int]:
    return str(sockname[0]), int(sockname[1])


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- users and storage -------------------------------------------------------------------


class UserMaildirs(Storage):
    """One Maildir per user: the one the users file names, else ``root/NAME``."""

    def __init__(self, users: UserDB, root: str | None, base: str) -> None:
        self.users = users
        self.root = root
        self.base = base  # relative maildirs in the users file are relative to this

    def __repr__(self) -> str:
        return f"UserMaildirs(root={self.root!r})"

    def path(self, username: str) -> str:
        given = self.users.maildir(username)
        if given is not None:
            return os.path.join(self.base, os.path.expanduser(given))
        assert self.root is not None  # checked when the options were read
        return MaildirStorage(self.root, per_user=True).path(username)

    def open(self, username: str) -> Maildrop:
        return MaildirStorage(self.path(username)).open(username)


def load_users(pairs: list[tuple[str, str]], users_file: str | None) -> UserDB:
    """The users of ``--user`` pairs and the ``--users`` file, in one database."""
    names = [name for name, _ in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(f"user {duplicates[0]!r} is given twice with --user")
    try:
        from_args = UserDB.from_pairs(dict(pairs))
    except ValueError as exc:  # names the user, never the password
        raise UsageError(f"--user: {exc}") from None
    if users_file is None:
        return from_args
    text = read_secret_file(users_file, "the users file", private=False)
    try:
        from_file = UserDB.parse(text, source=users_file)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    both = sorted(set(from_args) & set(from_file))
    if both:
        raise UsageError(f"user {both[0]!r} is given with --user and in {users_file}")
    if not pairs:
        return from_file
    # One database for both: the --user passwords as {PLAIN.B64} lines (a
    # password may contain ":", which the file syntax cannot hold otherwise).
    lines = [text.rstrip("\n")]
    for name, password in pairs:
        encoded = base64.b64encode(password.encode("utf-8", "surrogateescape")).decode()
        lines.append(f"{name}:{{PLAIN.B64}}{encoded}")
    try:
        return UserDB.parse("\n".join(lines) + "\n", source=users_file)
    except ValueError as exc:
        raise UsageError("--user: a password is not valid UTF-8") from exc


# --- TLS ----------------------------------------------------------------------------------


_PEM_LIMIT = 1 << 20  # octets: far more than any certificate chain or key


def _read_pem(path: str, option: str) -> bytes:
    """The bytes of the PEM file ``path``, given with ``option``; ``CliError`` naming both."""
    try:
        with open(path, "rb") as f:
            data = f.read(_PEM_LIMIT + 1)
    except OSError as exc:
        raise CliError(f"cannot read the {option} file {path}: {exc.strerror or exc}") from None
    if len(data) > _PEM_LIMIT:
        raise CliError(f"{option} {path} is too large to be a PEM file")
    return data


def _has_key(pem: bytes) -> bool:
    return b"PRIVATE KEY-----" in pem


def _has_cert(pem: bytes) -> bool:
    return b"-----BEGIN CERTIFICATE-----" in pem


def _refuse_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise CliError("encrypted")


def server_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The server's TLS context from ``--tls-cert`` and ``--tls-key`` (PEM files).

    Raises ``CliError`` with one line that names the file to fix and what is
    wrong with it (missing, not PEM, no key, encrypted key, key and
    certificate that do not match), never OpenSSL's ``PEM lib`` alone.
    """
    cert_pem = _read_pem(cert, "--tls-cert")
    key_pem = cert_pem if key is None else _read_pem(key, "--tls-key")
    if not _has_cert(cert_pem):
        hint = (
            ": it holds a private key; swapped with --tls-key?"
            if _has_key(cert_pem)
            else " (no '-----BEGIN CERTIFICATE-----' line)"
        )
        raise CliError(f"--tls-cert {cert} is not a PEM certificate{hint}")
    if key is None and not _has_key(cert_pem):
        raise CliError(
            f"--tls-cert {cert} holds no private key: give the key file with --tls-key FILE"
        )
    if key is not None and not _has_key(key_pem):
        hint = (
            ": it holds a certificate; swapped with --tls-cert?"
            if _has_cert(key_pem)
            else " (no '-----BEGIN PRIVATE KEY-----' line)"
        )
        raise CliError(f"--tls-key {key} is not a PEM private key{hint}")
    where = f"--tls-key {key}" if key is not None else f"--tls-cert {cert}"
    if b"ENCRYPTED" in key_pem:
        raise CliError(
            f"the private key in {where} is encrypted, and pop3 serve cannot ask for its "
            "passphrase: store it decrypted (openssl pkey -in IN -out OUT), readable only "
            "by the server's user"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase)
    except CliError:
        raise CliError(f"the private key in {where} is encrypted") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise CliError(
                f"the private key in {where} does not belong to the certificate in "
                f"--tls-cert {cert}"
            ) from None
        files = f"--tls-cert {cert}" + (f" and --tls-key {key}" if key is not None else "")
        raise CliError(f"cannot load {files}: {exc.reason or exc}") from None
    except OSError as exc:  # changed since it was read
        raise CliError(f"cannot read {where}: {exc.strerror or exc}") from None
    return context


# --- the command ----------------------------------------------------------------------------


def _tls_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.tls_key and not args.tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    if args.implicit_tls and not args.tls_cert:
        raise UsageError("--implicit-tls needs --tls-cert (and --tls-key)")
    if not args.tls_cert:
        return {}
    context = server_context(args.tls_cert, args.tls_key)
    return {"ssl_context": context} if args.implicit_tls else {"starttls_context": context}


def _mechanism_options(users: UserDB) -> dict[str, Any]:
    hashed = sorted(name for name in users if users.secret(name) is None)
    if hashed:
        log.info(
            "APOP, CRAM-MD5 and SCRAM are off: %s only a password hash "
            "(e.g. %s); USER/PASS, PLAIN and LOGIN remain",
            counted(len(hashed), "user has", "users have"),
            hashed[0],
        )
        return {"mechanisms": PASSWORD_MECHANISMS, "apop": False}
    return {"mechanisms": PLAIN_SECRET_MECHANISMS + PASSWORD_MECHANISMS, "apop": True}


def _postgres_storage(args: argparse.Namespace) -> Storage:
    """``--storage URL``: PostgreSQL (psycopg is imported here, not for ``--help``)."""
    url = args.storage
    if not url.startswith(("postgresql:", "postgres:")) and "=" not in url:
        raise UsageError("--storage takes a postgresql://... URL or a libpq connection string")
    from pop3_maildrop import PostgresStorage

    if args.lease_seconds < PostgresStorage.MIN_LEASE_SECONDS:
        raise UsageError(f"--lease-seconds must be at least {PostgresStorage.MIN_LEASE_SECONDS:g}")
    try:
        storage = PostgresStorage(
            url,
            pool_max=args.pool_max,
            pool_min=min(1, args.pool_max),
            lease_seconds=args.lease_seconds,
            timeout=args.storage_timeout,
        )
    except ImportError:  # pragma: no cover - psycopg is in the test extra
        raise CliError("--storage needs psycopg: pip install 'pop3-sansio[postgresql]'") from None
    except ValueError as exc:  # the message names no password: psycopg's does not
        raise UsageError(f"--storage: {exc}") from None
    if storage.has_password:
        _warn(
            "a password in the --storage URL is visible to other "
            "users in process listings; prefer ~/.pgpass or PGPASSFILE"
        )
    return storage


def _storage(args: argparse.Namespace, users: UserDB) -> Storage:
    if args.storage is not None:
        return _postgres_storage(args)
    if args.users is None and len(users) == 1:
        assert args.maildir is not None
        return MaildirStorage(args.maildir)
    missing = [name for name in users if users.maildir(name) is None]
    if missing and args.maildir is None:
        raise UsageError(
            f"--maildir DIR is needed: user {missing[0]!r} has no maildir in {args.users}"
        )
    base = os.path.dirname(os.path.abspath(args.users)) if args.users else os.getcwd()
    return UserMaildirs(users, args.maildir, base)


def _warn(text: str) -> None:
    print(f"pop3 serve: warning: {text}", file=sys.stderr, flush=True)


def _check_maildir(path: str) -> None:
    """Warn that ``--maildir`` is missing (a typo is served silently otherwise)."""
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise CliError(f"--maildir {path} is not a directory")
    _warn(f"--maildir {path} does not exist; it will be created at the first login")


def _print(text: str) -> None:
    print(text, flush=True)


def _announce(demo: str | None, tls: str | None) -> Callable[[list[tuple[str, int]]], None]:
    """Print the addresses; for a demo, ``demo`` (what is served) and how to try it."""

    def announce(addresses: list[tuple[str, int]]) -> None:
        for host, port in addresses:
            _print(f"listening on {_show(host, port)}")
        if demo is None:
            return
        host, port = addresses[0]
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = "::1" if ":" in host else "127.0.0.1"
        url_host = f"[{host}]" if ":" in host else host
        scheme = "pop3s" if tls == "implicit" else "pop3"
        curl_tls = " --ssl-reqd" if tls == "starttls" else ""
        insecure = " -k" if tls else ""
        _print(
            f"{demo}\n"
            f"User {DEMO_USER!r}, password {DEMO_PASSWORD!r}. Try:\n"
            f"  curl{curl_tls}{insecure} {scheme}://{DEMO_USER}:{DEMO_PASSWORD}@{url_host}:{port}/1\n"
            f'  python3 -c "import poplib; p = poplib.POP3({host!r}, {port}); '
            f'p.user({DEMO_USER!r}); p.pass_({DEMO_PASSWORD!r}); print(p.list()); p.quit()"\n'
            f"  POP3_PASSWORD={DEMO_PASSWORD} {_pop3_command()} fetch --host {host} --port {port} "
            f"--user {DEMO_USER} --password-env POP3_PASSWORD --keep --maildir ./Mail\n"
            "Stop with Ctrl-C."
        )

    return announce


def _pop3_command() -> str:
    """``pop3`` as the user can run it from here: as this one was run.

    ``make run`` starts ``.venv/bin/pop3``, which is not on ``PATH`` unless
    the virtual environment is activated: a hint that says ``pop3`` would not run.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "pop3":
        found = shutil.which("pop3")
        if found is not None and os.path.realpath(found) == os.path.realpath(argv0):
            return "pop3"
        return shlex.quote(argv0)
    return f"{shlex.quote(sys.executable)} -m pop3_cli"  # python -m pop3_cli, or embedded


@contextlib.contextmanager
def _demo_maildir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pop3-demo-") as root:
        maildir = os.path.join(root, "Maildir")
        write_demo_maildir(maildir)
        yield maildir


def _eml_storage(path: str, users: UserDB) -> MemoryStorage:
    """``--eml-dir``: every user's maildrop in memory, a copy of the folder's ``.eml`` files."""
    try:
        messages = [data for _, data in read_eml_dir(path)]
    except (OSError, ValueError) as exc:
        raise CliError(f"--eml-dir: {exc}") from None
    log.info("serving %d messages of %s from memory to %d user(s)", len(messages), path, len(users))
    return MemoryStorage({name: messages for name in users})


def _closing(runner: Callable[[ServeConfig], None]) -> Callable[[ServeConfig], None]:
    """``runner``, then the storage closed (in each worker: its own pool and leases).

    A database storage is reached at once, in the background: the log says then whether
    it works (or why not), rather than at the first login.
    """

    def run(config: ServeConfig) -> None:
        storage = config.backend.storage
        prepare = getattr(storage, "create_schema", None)
        if prepare is not None:
            threading.Thread(target=_prepare, args=(prepare,), daemon=True).start()
        try:
            runner(config)
        finally:
            storage.close()

    return run


def _prepare(create_schema: Callable[[], None]) -> None:
    from pop3_maildrop import MaildropError

    try:
        create_schema()
    except MaildropError:
        return  # logged by the storage; logins get -ERR [SYS/TEMP] until it is reachable
    log.info("PostgreSQL storage ready")


def run_serve(args: argparse.Namespace) -> int:
    """``pop3 serve``: serve until SIGINT or SIGTERM; 0 then."""
    if args.storage is not None and args.maildir is not None:
        raise UsageError("--storage and --maildir exclude each other")
    if args.eml_dir is not None:
        if args.maildir is not None or args.storage is not None:
            raise UsageError(
                "--eml-dir serves from memory: it cannot be combined with --maildir or --storage"
            )
        if args.workers > 1:
            # Each worker would hold a copy: a deletion in one would not be seen by the others.
            raise UsageError("--eml-dir serves from one process's memory: drop --workers")
    where = "--storage" if args.storage is not None else "--maildir"
    demo = args.maildir is None and args.storage is None and not args.user and args.users is None
    if not demo and not args.user and args.users is None:
        raise UsageError(f"{where} needs --user NAME:PASSWORD or --users FILE")
    if (
        args.user
        and args.maildir is None
        and args.storage is None
        and args.users is None
        and args.eml_dir is None
    ):
        raise UsageError("--user needs --maildir DIR, --storage URL or --eml-dir DIR")
    if args.user:
        _warn(
            "a password given with --user is visible to other users "
            "in process listings; prefer --users FILE"
        )
    if args.backend == "trio":
        _require_trio()  # before anything is set up, and once for every worker
    tls_options = _tls_options(args)
    tls = None
    if tls_options:
        tls = "implicit" if args.implicit_tls else "starttls"
    port = args.port
    if port is None:
        port = DEFAULT_TLS_PORT if tls == "implicit" else DEFAULT_PORT
    if args.metrics is not None and args.workers > 1:
        raise UsageError("--metrics works with one worker (--workers 1)")
    runner = _closing(BACKENDS[args.backend])
    quick_read_size = args.quick_read_size
    if quick_read_size is None:
        # A read from a database is a network round trip: never on the event loop's thread.
        quick_read_size = 0 if args.storage is not None else 1 << 16

    def run(users: UserDB, storage: Storage, demo: str | None) -> int:
        options = {
            **tls_options,
            **_mechanism_options(users),
            "max_sessions": args.max_sessions,
            "max_sessions_per_address": args.max_sessions_per_address or None,  # 0: no limit
            "login_timeout": args.login_timeout,
            "proxy_protocol": args.proxy_protocol,
            "quick_read_size": quick_read_size,
        }
        config = ServeConfig(
            Backend(users, storage),
            args.host,
            port,
            options,
            announce=_announce(demo, tls),
        )
        if args.workers > 1:
            from ._workers import run_workers

            run_workers(runner, config, args.workers)
        elif args.metrics is not None:
            from ._metrics import serving_metrics

            with serving_metrics(*args.metrics) as (metrics_host, metrics_port):
                _print(f"metrics on http://{_show(metrics_host, metrics_port)}/metrics")
                runner(config)
        else:
            runner(config)
        return 0

    if demo:
        users = UserDB.from_pairs({DEMO_USER: DEMO_PASSWORD})
        if args.eml_dir is not None:
            memory = _eml_storage(args.eml_dir, users)
            note = f"Demo maildrop: the .eml files of {args.eml_dir}, in memory (never changed)."
            return run(users, memory, note)
        with _demo_maildir() as maildir:
            return run(
                users, MaildirStorage(maildir), f"Demo maildrop in {maildir} (deleted on exit)."
            )
    users = load_users(args.user, args.users)
    if not users:
        raise CliError(f"no users in {args.users}")
    if args.eml_dir is not None:
        return run(users, _eml_storage(args.eml_dir, users), None)
    storage = _storage(args, users)
    if args.maildir is not None:
        _check_maildir(args.maildir)
    return run(users, storage, None)
