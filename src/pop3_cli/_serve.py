"""``pop3 serve``: a POP3 server on Maildirs or PostgreSQL, or the demo."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import logging
import os
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pop3_maildrop import Backend, MaildirStorage, Maildrop, Storage, UserDB

from ._defaults import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TLS_PORT
from ._demo import DEMO_PASSWORD, DEMO_USER, write_demo_maildir
from ._errors import CliError, UsageError
from ._secretfile import read_secret_file

__all__ = [
    "BACKENDS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "ServeConfig",
    "UserMaildirs",
    "run_serve",
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
    import trio

    trio.run(_serve_trio, config)


def _run_sync(config: ServeConfig) -> None:
    from pop3_sync import serve

    try:
        server = serve(config.backend, config.host, config.port, **config.options)
    except OSError as exc:
        raise CliError(f"cannot listen on {_show(config.host, config.port)}: {exc}") from None
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
        raise CliError(f"cannot listen on {_show(config.host, config.port)}: {exc}") from None
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

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                server = await nursery.start(
                    partial(serve, config.backend, config.host, config.port, **config.options)
                )
            except OSError as exc:
                raise CliError(
                    f"cannot listen on {_show(config.host, config.port)}: {exc}"
                ) from None
            config.announce([_address(sock.getsockname()) for sock in server.sockets])
            async for _ in signals:
                log.info("stopping")
                nursery.cancel_scope.cancel()
                break


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


def _server_context(cert: str, key: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise CliError(f"cannot read {exc.filename or cert}: {exc.strerror}") from None
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the TLS certificate and key: {exc}") from None
    return context


# --- the command ----------------------------------------------------------------------------


def _tls_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.tls_key and not args.tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    if args.implicit_tls and not args.tls_cert:
        raise UsageError("--implicit-tls needs --tls-cert (and --tls-key)")
    if not args.tls_cert:
        return {}
    context = _server_context(args.tls_cert, args.tls_key)
    return {"ssl_context": context} if args.implicit_tls else {"starttls_context": context}


def _mechanism_options(users: UserDB) -> dict[str, Any]:
    hashed = sorted(name for name in users if users.secret(name) is None)
    if hashed:
        log.info(
            "APOP, CRAM-MD5 and SCRAM are off: %d user(s) have only a password hash "
            "(e.g. %s); USER/PASS, PLAIN and LOGIN remain",
            len(hashed),
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
        print(
            "pop3 serve: warning: a password in the --storage URL is visible to other "
            "users in process listings; prefer ~/.pgpass or PGPASSFILE",
            file=sys.stderr,
            flush=True,
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


def _print(text: str) -> None:
    print(text, flush=True)


def _announce(demo_dir: str | None, tls: str | None) -> Callable[[list[tuple[str, int]]], None]:
    def announce(addresses: list[tuple[str, int]]) -> None:
        for host, port in addresses:
            _print(f"listening on {_show(host, port)}")
        if demo_dir is None:
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
            f"Demo maildrop in {demo_dir} (deleted on exit).\n"
            f"User {DEMO_USER!r}, password {DEMO_PASSWORD!r}. Try:\n"
            f"  curl{curl_tls}{insecure} {scheme}://{DEMO_USER}:{DEMO_PASSWORD}@{url_host}:{port}/1\n"
            f'  python3 -c "import poplib; p = poplib.POP3({host!r}, {port}); '
            f'p.user({DEMO_USER!r}); p.pass_({DEMO_PASSWORD!r}); print(p.list()); p.quit()"\n'
            f"  POP3_PASSWORD={DEMO_PASSWORD} pop3 fetch --host {host} --port {port} "
            f"--user {DEMO_USER} --password-env POP3_PASSWORD --keep --maildir ./Mail\n"
            "Stop with Ctrl-C."
        )

    return announce


@contextlib.contextmanager
def _demo_maildir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pop3-demo-") as root:
        maildir = os.path.join(root, "Maildir")
        write_demo_maildir(maildir)
        yield maildir


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
    where = "--storage" if args.storage is not None else "--maildir"
    demo = args.maildir is None and args.storage is None and not args.user and args.users is None
    if not demo and not args.user and args.users is None:
        raise UsageError(f"{where} needs --user NAME:PASSWORD or --users FILE")
    if args.user and args.maildir is None and args.storage is None and args.users is None:
        raise UsageError("--user needs --maildir DIR or --storage URL")
    if args.user:
        print(
            "pop3 serve: warning: a password given with --user is visible to other users "
            "in process listings; prefer --users FILE",
            file=sys.stderr,
            flush=True,
        )
    tls_options = _tls_options(args)
    tls = None
    if tls_options:
        tls = "implicit" if args.implicit_tls else "starttls"
    port = args.port
    if port is None:
        port = DEFAULT_TLS_PORT if tls == "implicit" else DEFAULT_PORT
    runner = _closing(BACKENDS[args.backend])
    quick_read_size = args.quick_read_size
    if quick_read_size is None:
        # A read from a database is a network round trip: never on the event loop's thread.
        quick_read_size = 0 if args.storage is not None else 1 << 16

    def run(users: UserDB, storage: Storage, demo_dir: str | None) -> int:
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
            announce=_announce(demo_dir, tls),
        )
        if args.workers > 1:
            from ._workers import run_workers

            run_workers(runner, config, args.workers)
        else:
            runner(config)
        return 0

    if demo:
        with _demo_maildir() as maildir:
            users = UserDB.from_pairs({DEMO_USER: DEMO_PASSWORD})
            return run(users, MaildirStorage(maildir), maildir)
    users = load_users(args.user, args.users)
    if not users:
        raise CliError(f"no users in {args.users}")
    return run(users, _storage(args, users), None)
