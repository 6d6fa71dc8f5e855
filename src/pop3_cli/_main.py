"""The ``pop3`` command line: argument parsing, logging set-up, exit codes.

Exit codes: 0 success, 1 a runtime failure (one line on stderr, never a
traceback unless ``-v`` is given twice), 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from ._defaults import (
    BACKEND_NAMES,
    DEFAULT_HOST,
    DEFAULT_LMTP_PORT,
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    EX_USAGE,
    LEASE_SECONDS,
    LMTP_MAX_MESSAGE_SIZE,
    LOGIN_TIMEOUT,
    MAX_SESSIONS_PER_ADDRESS,
    POOL_MAX,
    STORAGE_TIMEOUT,
)
from ._errors import CliError, UsageError

__all__ = ["build_parser", "main"]

PROG = "pop3"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors never echo a value that might be a secret.

    No abbreviated options: ``--password=x`` must not be taken for, or reported
    as an ambiguous prefix of, ``--password-env``. ``usage_exit`` is the exit
    code of a usage error (2; ``pop3 deliver`` uses sysexits' EX_USAGE).
    """

    def __init__(self, *args: Any, usage_exit: int = 2, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.usage_exit = usage_exit

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError("a port is a number from 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is a number from 0 to 65535")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("expected a positive number of seconds")
    return value


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a decimal whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}")
        return value

    return parse


_count = _whole_number(1)
_octets = _whole_number(0)
_limit = _whole_number(0)  # 0: no limit


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT ([ADDRESS]:PORT for IPv6)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, _port(port)


def _database_arguments(parser: argparse.ArgumentParser, timeout_help: str | None) -> None:
    """``--storage URL`` (required) and, with ``timeout_help``, ``--storage-timeout``."""
    parser.add_argument(
        "--storage", metavar="URL", required=True, help="the database: postgresql://..."
    )
    if timeout_help is not None:
        parser.add_argument(
            "--storage-timeout",
            type=_seconds,
            default=STORAGE_TIMEOUT,
            metavar="SECONDS",
            help=f"{timeout_help} for this long (default {STORAGE_TIMEOUT:g})",
        )


def _user_pair(text: str) -> tuple[str, str]:
    # The message must not repeat ``text``: it may hold a password.
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD (both non-empty)")
    return name, password


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for (importlib.metadata
    loads email and more: too slow for every ``pop3 --help``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pop3-sansio")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


SERVE_HELP = f"""\
Serve POP3 (RFC 1939) from Maildirs or PostgreSQL.

With no arguments: a demo. A throw-away Maildir with a few messages is served
on {DEFAULT_HOST}:{DEFAULT_PORT} for user "demo", password "demo", until Ctrl-C.

With --maildir and --user/--users: serve real Maildirs. With one --user, DIR is
that user's Maildir; with several users (or --users FILE), DIR holds one
Maildir per user, DIR/NAME, unless FILE names a maildir for the user.

With --storage postgresql://... and --user/--users: serve maildrops kept in
PostgreSQL, which any number of servers on any number of hosts may share.
"""

SERVE_EPILOG = """\
users file: one user per line, NAME:PASSWORD[:MAILDIR] ("#" starts a comment).
  PASSWORD is plain, or {SCHEME}hash in Dovecot's passwd-file syntax ({PLAIN},
  {SHA256}, {SSHA512}, {PBKDF2}, ...). A relative MAILDIR is relative to the
  directory of FILE. Prefer --users FILE (mode 0600) to --user NAME:PASSWORD:
  a password on the command line is visible to other users in process
  listings and shell history.

security: password logins (USER/PASS, PLAIN, LOGIN) are accepted only over
  TLS or from loopback peers. APOP, CRAM-MD5 and SCRAM are offered only when
  every user's password is stored in plain. Passwords never appear in logs.
  --tls-cert/--tls-key offer STLS (RFC 2595); add --implicit-tls to speak TLS
  from the first byte instead (RFC 8314; default port then {tls_port}).

behind a load balancer: --proxy-protocol reads HAProxy's PROXY header (v1 or
  v2) before anything else, TLS included, and takes the client's address from
  it; a connection without one is closed without a greeting. Only the proxy
  may be able to reach the port: anyone else could claim any address.

limits: past --max-sessions sessions at once, or --max-sessions-per-address
  from one client address (the PROXY header's with --proxy-protocol), a new
  connection is answered -ERR [SYS/TEMP] and closed; sessions count from the
  greeting, logged in or not. A client has --login-timeout seconds from
  connecting to logging in, a TLS handshake included; a logged-in session is
  dropped after 10 minutes idle (RFC 1939). Nothing is deleted either way.

postgresql: --storage URL is a libpq URL or connection string; keep its
  password in ~/.pgpass or PGPASSFILE, not on the command line. The tables
  are created on first use. Each server process keeps up to --pool-max
  connections, each used for one short transaction at a time (not one per
  session). A maildrop in use is leased; the lease is renewed while the
  session lasts, so a crashed server's users are free again after
  --lease-seconds (at once if it is restarted on the same machine). A
  database out of reach for --storage-timeout seconds gives -ERR
  [SYS/TEMP]; nothing is deleted unless QUIT's commit succeeds.

--workers N: N processes share the port (SO_REUSEPORT); a maildrop stays
  locked across all of them. Ctrl-C or SIGTERM stops every worker; if one
  dies, the others are stopped and the exit status is 1 (let a supervisor
  such as systemd restart the service). Limits count per worker.

Every session is logged as one line on stderr (-q: warnings only, -v: debug),
with the process id of the worker that served it.
"""

FETCH_HELP = """\
Download mail from a POP3 server into a Maildir.

Each message is written to DIR/tmp, synced, and renamed into DIR/new before
it is marked for deletion; the deletions take effect only when the session
ends normally (QUIT). A run that is interrupted or killed therefore loses
nothing, and the next run does not store again what it already stored: the
unique id (UIDL), size and SHA-256 of stored messages are kept in
DIR/.pop3-fetch-state.json. A message is deleted only after it was retrieved
in the same session and its bytes are stored, so a server that reuses unique
ids cannot make it delete mail unread; one that lists an id twice is refused.
"""

FETCH_EPILOG = """\
connection security:
  without --starttls or --implicit-tls the connection is plaintext (port 110)
  and the password is sent only if HOST is a loopback address, or if
  --insecure is given. --starttls upgrades with STLS on port 110 (and gives up
  if the server does not offer it); --implicit-tls speaks TLS from the start
  on port 995. Certificates and host names are verified against the system's
  CA certificates, or only the ones in --ca-file.

  --insecure does TWO things: it allows sending the password without TLS to
  any host, and it turns off certificate verification for TLS. Use it only on
  networks you trust.

exit status: 0 success, 1 failure (connection, TLS, login, local disk), 2 bad
  arguments, 130 interrupted. Nothing is deleted on the server unless the run
  succeeds.
"""


DELIVER_HELP = """\
Store one message, read from standard input, in a user's maildrop in
PostgreSQL: the mail delivery agent for Postfix (mailbox_command), Exim (a
pipe transport), fetchmail (mda) or procmail. The message is committed before
the command exits 0; on any failure nothing of it is stored.

A first line "From sender date" (the mbox envelope line that Postfix's
mailbox_command and Exim's pipe transport put before the message) is not part
of the message and is dropped. Line ends are kept as received: POP3 serves
them as CRLF and counts sizes in CRLF octets either way (RFC 1939).
"""

DELIVER_EPILOG = """\
exit status (sysexits.h, which mail systems read):
  0  stored and committed
  64 bad arguments (EX_USAGE)
  65 the input is not a message: empty (EX_DATAERR)
  67 --users FILE is given and NAME is not in it (EX_NOUSER; the MTA bounces)
  74 standard input could not be read (EX_IOERR)
  75 the database is unreachable or failed: try again later (EX_TEMPFAIL;
     the MTA keeps the message queued and retries)
  78 the users file cannot be read, or psycopg is not installed (EX_CONFIG)
  130 interrupted
"""

LMTP_HELP = """\
Accept mail over LMTP (RFC 2033) and store it in PostgreSQL: the delivery path
for Postfix (mailbox_transport = lmtp:...) or Exim (an lmtp transport), with no
process started per message.

After DATA there is one reply per accepted recipient: 250 once that
recipient's copy is committed, 451 4.3.0 when the database is unreachable (the
MTA retries that recipient later). A recipient not in --users FILE is refused
at RCPT with 550 5.1.1. A recipient address names the user by the whole
address if the users file has it, else by its local part (before the last
"@"), else by the local part without a "+extension".
"""

LMTP_EPILOG = """\
security: LMTP has no authentication: anyone who can connect can deliver
  mail. Listen on a Unix socket (--socket) that only the MTA can open, or on
  a loopback address.

The users file is read once, at start: restart after changing it. Every
delivery is logged as one line on stderr (-q: warnings only).
"""

IMPORT_HELP = """\
Copy the messages of an existing Maildir (new/ and cur/, e.g. Dovecot's) into
a user's maildrop in PostgreSQL. The Maildir is left as it is.

Idempotent: each message is recorded with its Maildir unique name (the file
name up to ":2,"), so running the command again, after an interruption or
with more mail in the Maildir, stores only what is not there yet. Messages are
stored oldest first (by the time in their unique name), so POP3 lists them in
the order they arrived.
"""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``pop3`` parser and its subcommand parsers by name."""
    output = _Parser(add_help=False)
    group = output.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="count", default=0, help="less output (repeatable)")
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="more output (repeatable)"
    )

    parser = _Parser(
        prog=PROG,
        description="POP3 tools: a server, a safe mail fetcher, and mail delivery into PostgreSQL.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    serve = commands.add_parser(
        "serve",
        parents=[output],
        help="serve POP3 from Maildirs or PostgreSQL (no arguments: a demo)",
        description=SERVE_HELP,
        epilog=SERVE_EPILOG.replace("{tls_port}", str(DEFAULT_TLS_PORT)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--maildir", metavar="DIR", help="the Maildir, or the directory of Maildirs")
    serve.add_argument(
        "--storage",
        metavar="URL",
        help="keep the maildrops in PostgreSQL (postgresql://...) instead of --maildir",
    )
    serve.add_argument(
        "--user",
        metavar="NAME:PASSWORD",
        action="append",
        type=_user_pair,
        default=[],
        help="a user with a plain password (repeatable; --users FILE is safer)",
    )
    serve.add_argument(
        "--users", metavar="FILE", help="a users file: NAME:PASSWORD[:MAILDIR] per line"
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port",
        type=_port,
        help=f"port (default {DEFAULT_PORT}, {DEFAULT_TLS_PORT} with --implicit-tls; "
        "0 picks a free one)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM)")
    serve.add_argument(
        "--tls-key", metavar="FILE", help="TLS private key (PEM; default: in --tls-cert)"
    )
    serve.add_argument(
        "--implicit-tls",
        action="store_true",
        help="speak TLS from the first byte (RFC 8314) instead of offering STLS",
    )
    serve.add_argument(
        "--max-sessions",
        type=_count,
        default=1000,
        metavar="N",
        help="sessions at once; more are answered -ERR [SYS/TEMP] and closed (default 1000)",
    )
    serve.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="asyncio",
        help="the I/O binding that runs the server (default asyncio)",
    )
    serve.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="serve from N processes sharing the port with SO_REUSEPORT (Linux; default 1)",
    )
    serve.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="expect a PROXY protocol header (v1 or v2, HAProxy) on every connection",
    )
    serve.add_argument(
        "--quick-read-size",
        type=_octets,
        metavar="OCTETS",
        help="make reads of up to this size (a small message, or a 64 KiB chunk of a big "
        "one) on the event loop's thread rather than in a worker thread (default 65536, "
        "0 with --storage; 0 for network file systems, where a read may block)",
    )
    serve.add_argument(
        "--pool-max",
        type=_count,
        default=POOL_MAX,
        metavar="N",
        help=f"with --storage: database connections per server process (default {POOL_MAX})",
    )
    serve.add_argument(
        "--lease-seconds",
        type=_seconds,
        default=LEASE_SECONDS,
        metavar="SECONDS",
        help="with --storage: how long a maildrop stays locked after its server stops "
        f"renewing the lock (crashed, cut off; default {LEASE_SECONDS:g})",
    )
    serve.add_argument(
        "--storage-timeout",
        type=_seconds,
        default=STORAGE_TIMEOUT,
        metavar="SECONDS",
        help="with --storage: wait this long for a database connection, then answer "
        f"-ERR [SYS/TEMP] (default {STORAGE_TIMEOUT:g})",
    )
    serve.add_argument(
        "--max-sessions-per-address",
        type=_limit,
        default=MAX_SESSIONS_PER_ADDRESS,
        metavar="N",
        help="sessions at once from one client address, logged in or not "
        f"(default {MAX_SESSIONS_PER_ADDRESS}; 0: no limit)",
    )
    serve.add_argument(
        "--login-timeout",
        type=_seconds,
        default=LOGIN_TIMEOUT,
        metavar="SECONDS",
        help="time a client has from connecting to logging in, TLS handshake included "
        f"(default {LOGIN_TIMEOUT:g}; after login, RFC 1939's 10-minute "
        "autologout applies)",
    )

    fetch = commands.add_parser(
        "fetch",
        parents=[output],
        help="download mail from a POP3 server into a Maildir",
        description=FETCH_HELP,
        epilog=FETCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument("--host", required=True, help="the POP3 server")
    fetch.add_argument("--port", type=_port, help="port (default 110, or 995 with --implicit-tls)")
    fetch.add_argument("--user", metavar="NAME", required=True, help="the user name")
    password = fetch.add_mutually_exclusive_group(required=True)
    password.add_argument(
        "--password-env", metavar="VAR", help="take the password from environment variable VAR"
    )
    password.add_argument(
        "--password-file",
        metavar="FILE",
        help="take the password from the first line of FILE",
    )
    fetch.add_argument(
        "--maildir", metavar="DIR", required=True, help="where to store mail (created if missing)"
    )
    fetch.add_argument(
        "--keep",
        action="store_true",
        help="leave mail on the server; later runs fetch only new mail",
    )
    tls = fetch.add_mutually_exclusive_group()
    tls.add_argument("--starttls", action="store_true", help="upgrade to TLS with STLS")
    tls.add_argument("--implicit-tls", action="store_true", help="TLS from the start (port 995)")
    fetch.add_argument(
        "--insecure",
        action="store_true",
        help="allow the password without TLS to any host AND skip certificate checks",
    )
    fetch.add_argument(
        "--ca-file",
        metavar="FILE",
        help="trust only the CA certificates in FILE (PEM) instead of the system's",
    )
    fetch.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="give up when the server is silent this long (default 60)",
    )
    fetch.add_argument(
        "--max-message-size",
        type=_octets,
        metavar="OCTETS",
        help="refuse a message larger than this (default: no cap beyond twice the size "
        "the server announced plus 64 KiB)",
    )

    deliver = commands.add_parser(
        "deliver",
        parents=[output],
        help="store one message from standard input in PostgreSQL (for an MTA)",
        description=DELIVER_HELP,
        epilog=DELIVER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage_exit=EX_USAGE,
    )
    _database_arguments(deliver, "give up (exit 75) when the database cannot be reached")
    deliver.add_argument("--user", metavar="NAME", required=True, help="whose maildrop")
    deliver.add_argument(
        "--users",
        metavar="FILE",
        help="a users file (as pop3 serve's): a NAME not in it exits 67 (EX_NOUSER)",
    )

    lmtp = commands.add_parser(
        "lmtp",
        parents=[output],
        help="accept mail over LMTP and store it in PostgreSQL",
        description=LMTP_HELP,
        epilog=LMTP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _database_arguments(lmtp, "answer 451 when no database connection can be had")
    lmtp.add_argument(
        "--users",
        metavar="FILE",
        required=True,
        help="the users file (as pop3 serve's): who may receive mail",
    )
    where = lmtp.add_mutually_exclusive_group()
    where.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=_host_port,
        help=f"TCP address to listen on (default {DEFAULT_HOST}:{DEFAULT_LMTP_PORT}; "
        "port 0 picks a free one)",
    )
    where.add_argument("--socket", metavar="PATH", help="listen on a Unix socket instead")
    lmtp.add_argument(
        "--max-message-size",
        type=_count,
        default=LMTP_MAX_MESSAGE_SIZE,
        metavar="OCTETS",
        help="refuse larger messages with 552 (default %(default)s; a message is held "
        "in memory while it is received)",
    )
    lmtp.add_argument(
        "--pool-max",
        type=_count,
        default=POOL_MAX,
        metavar="N",
        help=f"database connections at most, i.e. deliveries at once (default {POOL_MAX})",
    )

    import_ = commands.add_parser(
        "import",
        parents=[output],
        help="copy a Maildir into a maildrop in PostgreSQL (idempotent)",
        description=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    import_.add_argument("--maildir", metavar="DIR", required=True, help="the Maildir to copy")
    import_.add_argument("--user", metavar="NAME", required=True, help="whose maildrop")
    _database_arguments(import_, None)
    return parser, {
        "serve": serve,
        "fetch": fetch,
        "deliver": deliver,
        "lmtp": lmtp,
        "import": import_,
    }


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """Log the "pop3.*" loggers to stderr for the duration of a command.

    Session events are at INFO; each -q/-v moves the level one step. The
    previous set-up is restored afterwards, so ``main()`` can be called from
    a program (or a test) that configures logging itself.
    """
    level = min(max(logging.INFO - 10 * verbosity, logging.DEBUG), logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(name)s[%(process)d]: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
        )
    )
    logger = logging.getLogger("pop3")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _commands(command: str) -> Callable[[argparse.Namespace], int]:
    # Only the chosen command's module is imported: ``pop3 deliver`` runs once
    # per message and must not load a server or an event loop.
    if command == "serve":
        from ._serve import run_serve

        return run_serve
    if command == "fetch":
        from ._fetch import run_fetch

        return run_fetch
    if command == "deliver":
        from ._mda import run_deliver

        return run_deliver
    if command == "lmtp":
        from ._lmtp import run_lmtp

        return run_lmtp
    from ._maildir_import import run_import

    return run_import


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pop3`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser, subparsers = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # Name unknown options, but not values: a stray value may be a password.
            shown = " ".join(a.partition("=")[0] if a.startswith("-") else "..." for a in extra)
            subparsers.get(args.command, parser).error(f"unrecognized arguments: {shown}")
    except SystemExit as exc:  # argparse: --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    verbosity = args.verbose - args.quiet
    command = args.command
    try:
        with _logging_to_stderr(verbosity):
            return _commands(command)(args)
    except UsageError as exc:
        try:
            subparsers[command].error(str(exc))
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 2
    except CliError as exc:
        _fail(command, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _fail(command, "interrupted")
        return 130
    except Exception as exc:
        if verbosity >= 2:
            traceback.print_exc()
        _fail(command, f"unexpected error: {type(exc).__name__}: {exc} (-vv shows details)")
        return 1


def _fail(command: str, message: str) -> None:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{PROG} {command}: {line}", file=sys.stderr, flush=True)
