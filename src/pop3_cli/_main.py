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
    AUTH_METHODS,
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
    PASSWORD_SCHEMES,
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
        self.required_later: list[tuple[str, ...]] = []
        """Options (or groups: one of them) required once the config file is merged."""
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
_days = _whole_number(0)


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:9110")
    return host, int(port)


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

With --eml-dir DIR instead of --maildir: every *.eml file of DIR (in file name
order) is loaded into memory and served, to user "demo" (password "demo"), or
with --user/--users to each of those users, every user getting a copy of its
own (a users file's MAILDIR column is not used). Deletions last until the
server stops; the files are never changed. For demos and tests.

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

logging: on stderr, or --log-file FILE. Each login, each failed login and
  each session's end is one line of key=value fields (rip=, lip=, method=,
  user=<...>, reason=...), with the process id of the worker that served it;
  the failed logins are what docs/fail2ban's filter counts. -q: warnings only;
  -v: also each session's start, TLS handshake, and command with its +OK or
  -ERR; -vv: also a protocol trace (commands and status lines; passwords, APOP
  digests and SASL lines hidden; no message bodies). docs/logging.md
  describes every line.
"""

FETCH_HELP = """\
Download mail from POP3 servers into a Maildir, an mbox file, or an MDA.

Each message is stored and synced (written to DIR/tmp and renamed into
DIR/new; appended to the mbox under its locks; or accepted by the MDA with
exit status 0) before it is marked for deletion; the deletions take effect
only when the session ends normally (QUIT). A run that is interrupted or
killed therefore loses nothing, and the next run does not store again what it
already stored: the unique id (UIDL), size and SHA-256 of stored messages are
kept per USER@HOST in a state file (DIR/.pop3-fetch-state.json for a
Maildir). A message is deleted only after it was retrieved in the same
session and stored, so a server that reuses unique ids cannot make it delete
mail unread; one that lists an id twice is refused.

Without --host, the accounts of the config file are fetched in turn
($XDG_CONFIG_HOME/pop3/fetch.toml, or --config FILE): one [accounts.NAME]
table each, whose keys are the long options below with "_" for "-"
(password_command = "pass show mail"). Options given here override the file.
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

passwords: from --password-env, --password-file (private, first line),
  --password-command (first line of its output, run by /bin/sh), or the
  system keyring; with none of them, asked for on the terminal. The config
  file holds them or the commands that print them: it must be private too
  (chmod 600). --oauth2-token-command logs in with an OAuth 2.0 access token
  (XOAUTH2 or OAUTHBEARER) instead.

output: -v shows each message stored, -vv the protocol exchange (passwords
  and tokens hidden). --status fetches nothing: it shows how many messages
  the server holds and how many are new.

--mda: the MDA's exit status 0 means delivered; 75 (EX_TEMPFAIL) means try
  again later: the run stops fetching, leaves that message and the rest on the
  server, and exits with 75; any other status leaves that message on the
  server and makes the run exit with 1 after the others.

exit status: 0 success (every account), 1 failure (connection, TLS, login,
  local disk, MDA; the other accounts are still fetched), 2 bad arguments or
  config file, 75 the MDA asked to try again later (one account), 130
  interrupted, 143 SIGTERM (0 with --daemon). Nothing is deleted on the
  server unless the session ends with QUIT.
"""


PW_HELP = """\
Print a password value for a users file (pop3 serve --users), in one of the
schemes Dovecot's passwd-files use, so the file holds no plain password:

  $ pop3 pw -u alice >> users        # asks twice on a terminal
  $ pop3 pw -s ARGON2ID < secret     # or reads the first line of standard input

The password is never taken from the command line. The crypt schemes need the
'passwords' extra: pip install 'pop3-sansio[passwords]'. A user with a hashed
password can log in with USER/PASS, SASL PLAIN and the like, not APOP, CRAM-MD5
or SCRAM, which need the plain secret on the server.
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
        "--eml-dir",
        metavar="DIR",
        help="serve the *.eml files of DIR from memory instead of a Maildir (see above)",
    )
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
    serve.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        type=_host_port,
        help="serve Prometheus metrics (logins, sessions, octets) over HTTP on HOST:PORT "
        "(needs the 'metrics' extra: pip install 'pop3-sansio[metrics]'; one worker only)",
    )
    serve.add_argument(
        "--log-file",
        metavar="FILE",
        help="append the log to FILE instead of stderr (reopened when rotated away, "
        "for logrotate and fail2ban)",
    )

    fetch = commands.add_parser(
        "fetch",
        parents=[output],
        help="download mail from a POP3 server into a Maildir, an mbox or an MDA",
        description=FETCH_HELP,
        epilog=FETCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument(
        "--config",
        metavar="FILE",
        help="read accounts from FILE (TOML; default: $XDG_CONFIG_HOME/pop3/fetch.toml "
        "when no --host is given)",
    )
    fetch.add_argument(
        "--account",
        metavar="NAME",
        action="append",
        help="fetch only this account of the config file (repeatable; default: all)",
    )
    fetch.add_argument("--host", required=True, help="the POP3 server")
    fetch.add_argument("--port", type=_port, help="port (default 110, or 995 with --implicit-tls)")
    fetch.add_argument("--user", metavar="NAME", required=True, help="the user name")
    password = fetch.add_mutually_exclusive_group()
    password.add_argument(
        "--password-env", metavar="VAR", help="take the password from environment variable VAR"
    )
    password.add_argument(
        "--password-file",
        metavar="FILE",
        help="take the password from the first line of FILE",
    )
    password.add_argument(
        "--password-command",
        metavar="CMD",
        help="take the password from the first line CMD prints (run by /bin/sh)",
    )
    password.add_argument(
        "--password-keyring",
        metavar="SERVICE",
        help="take the password stored for the user under SERVICE in the system keyring "
        "(needs the keyring package)",
    )
    password.add_argument(
        "--oauth2-token-command",
        metavar="CMD",
        help="log in with the OAuth 2.0 access token CMD prints (XOAUTH2 or OAUTHBEARER)",
    )
    fetch.add_argument(
        "--auth",
        choices=AUTH_METHODS,
        type=str.lower,
        metavar="METHOD",
        help=f"log in with this method only: {', '.join(AUTH_METHODS)} (default: the "
        "strongest safe one the server offers)",
    )
    target = fetch.add_argument_group("where mail goes (one of)")
    target.add_argument(
        "--maildir", metavar="DIR", help="store mail in this Maildir (created if missing)"
    )
    target.add_argument(
        "--mbox", metavar="FILE", help="append mail to this mbox file (created if missing)"
    )
    target.add_argument(
        "--mda",
        metavar="CMD",
        help="give each message to CMD (run by sh) on its standard input; %%F and %%T "
        "become the sender and the recipient",
    )
    form = fetch.add_argument_group("how mail is stored")
    form.add_argument(
        "--crlf",
        action="store_true",
        help="keep CRLF line ends (default: LF, the Maildir and mbox convention)",
    )
    form.add_argument(
        "--delivered-to",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a Delivered-To: header field (default: yes)",
    )
    form.add_argument(
        "--received",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a Received: header field recording the retrieval (default: yes)",
    )
    form.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the record of what was stored in DIR (default: the Maildir; beside "
        "the mbox; for --mda, $XDG_STATE_HOME/pop3-fetch)",
    )
    which = fetch.add_argument_group("which mail")
    which.add_argument(
        "--keep",
        action="store_true",
        help="leave mail on the server; later runs fetch only new mail",
    )
    which.add_argument(
        "--keep-days",
        type=_days,
        metavar="N",
        help="leave mail on the server for N days after it was first fetched, then delete it",
    )
    which.add_argument(
        "--all",
        action="store_true",
        help="with --keep or --keep-days: fetch and store again the mail fetched before",
    )
    which.add_argument(
        "--max-size",
        type=_octets,
        metavar="OCTETS",
        help="leave messages larger than this on the server, unfetched",
    )
    which.add_argument(
        "--delete-oversized",
        action="store_true",
        help="delete messages over --max-size (or --max-message-size) on the server "
        "WITHOUT fetching them",
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
        help="leave a message announced larger than this on the server, and refuse one "
        "that turns out larger (default: no cap beyond twice the size the server "
        "announced plus 64 KiB)",
    )
    fetch.add_argument(
        "--state-key",
        metavar="KEY",
        help="the name this maildrop's messages are recorded under in the state file "
        "(default USER@HOST)",
    )
    mode = fetch.add_mutually_exclusive_group()
    mode.add_argument(
        "--status",
        action="store_true",
        help="only show how many messages the server holds and how many are new",
    )
    mode.add_argument(
        "--daemon",
        type=_seconds,
        metavar="SECONDS",
        help="fetch every SECONDS seconds until stopped (SIGTERM, Ctrl-C)",
    )
    _require_later(fetch)

    pw = commands.add_parser(
        "pw",
        parents=[output],
        help="make a password hash for a users file (like doveadm pw)",
        description=PW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pw.add_argument(
        "-s",
        "--scheme",
        type=str.upper,
        choices=PASSWORD_SCHEMES,
        default=PASSWORD_SCHEMES[0],
        metavar="SCHEME",
        help=f"one of {', '.join(PASSWORD_SCHEMES)} (default {PASSWORD_SCHEMES[0]})",
    )
    pw.add_argument(
        "-r",
        "--rounds",
        type=_whole_number(1),
        metavar="N",
        help="SHA-crypt rounds (5000), bcrypt cost (12), argon2 time cost (3), PBKDF2 "
        "iterations (5000)",
    )
    pw.add_argument("-u", "--user", metavar="NAME", help="print a whole line, NAME:{SCHEME}...")
    pw.add_argument(
        "-t",
        "--test",
        metavar="VALUE",
        help="check the password against VALUE instead: exit 0 if it matches, 1 if not",
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
        "pw": pw,
        "deliver": deliver,
        "lmtp": lmtp,
        "import": import_,
    }


LOG_FORMAT = "%(asctime)s %(name)s[%(process)d]: %(message)s"
"""Every line: ``2026-12-07 06:31:44 pop3.server[4242]: ...`` (local time; a date
format fail2ban recognises by itself)."""
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
TRACE_LOGGER = "pop3.server.trace"
"""The protocol trace's logger: shown with -vv only."""


def _require_later(parser: _Parser) -> None:
    """Check ``parser``'s required options only once the config file is merged.

    ``pop3 fetch`` takes any option from the command line or from an account
    of its config file; what was declared required is recorded in
    ``parser.required_later`` and checked by ``_config`` on the merged values.
    """
    for action in parser._actions:
        if action.required:
            action.required = False
            parser.required_later.append((action.dest,))
    for group in parser._mutually_exclusive_groups:
        if group.required:
            group.required = False
            parser.required_later.append(tuple(a.dest for a in group._group_actions))


def given_options(argv: Sequence[str]) -> set[str]:
    """The destinations of the options given on the command line ``argv`` (not defaults)."""
    parser, subparsers = build_parser()
    for sub in subparsers.values():
        for action in sub._actions:
            action.default = argparse.SUPPRESS
    args, _ = parser.parse_known_args(argv)
    return set(vars(args)) - {"command"}


@contextlib.contextmanager
def _logging(verbosity: int, log_file: str | None = None) -> Iterator[None]:
    """Log the "pop3.*" loggers to stderr (or append them to ``log_file``) during a command.

    Session events are at INFO; each -q/-v moves the level one step; the
    protocol trace (``pop3.server.trace``, DEBUG) needs -vv. The previous
    set-up is restored afterwards, so ``main()`` can be called from a
    program (or a test) that configures logging itself.
    """
    level = min(max(logging.INFO - 10 * verbosity, logging.DEBUG), logging.ERROR)
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        from logging.handlers import WatchedFileHandler

        try:
            # Reopened when logrotate moves the file away; appends, so that
            # several workers (and restarts) share it.
            handler = WatchedFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot open the log file {log_file}: {exc.strerror}") from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=LOG_DATE_FORMAT))
    handler.setLevel(level)  # also when a logger below is opened wider (--metrics)
    logger = logging.getLogger("pop3")
    trace = logging.getLogger(TRACE_LOGGER)
    saved = logger.level, logger.propagate, trace.level
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    trace.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        trace.setLevel(saved[2])


def _commands(command: str) -> Callable[[argparse.Namespace], int]:
    # Only the chosen command's module is imported: ``pop3 deliver`` runs once
    # per message and must not load a server or an event loop.
    if command == "serve":
        from ._serve import run_serve

        return run_serve
    if command == "fetch":
        from ._fetch_command import run_fetch_command

        return run_fetch_command
    if command == "pw":
        from ._pw import run_pw

        return run_pw
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
    if command == "fetch":
        args.given = given_options(sys.argv[1:] if argv is None else argv)
    try:
        with _logging(verbosity, getattr(args, "log_file", None)):
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
