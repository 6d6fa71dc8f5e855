"""``pop3 fetch``: download mail into a Maildir, deleting on the server only what is stored.

The one rule: a message is deleted on the server only if the bytes it has
in this session were stored and synced here, in this run or an earlier one.
A unique id alone cannot tell that, whatever the server: RFC 1939 section 7
only asks that an id not be reused "during a session", and servers do reuse
them (message numbers as ids, a Maildir with two files of one unique part);
a server may even repeat an id within one listing. Nor can the id and the
size: a new message may have the size of the old one. So every message is
RETRieved in the session that deletes it, and is deleted only once its
SHA-256 matches what was stored (the state file's record, or a file of ours
in the Maildir that carries its id's token), or once it has been stored.

The order that makes a killed run lose and duplicate nothing:

1. UIDL, refused if it repeats an id (its ids cannot tell messages apart);
   LIST. With ``--keep`` a message recorded under its id with the size it is
   LISTed with now is skipped: nothing is deleted, so the id and the size
   are enough not to download it again. Every other message is fetched.
2. For each: RETR into ``tmp/`` while taking its SHA-256. If those bytes
   are already stored, drop the copy; otherwise fsync, rename into ``new/``,
   fsync ``new/``. Record ``(id, LISTed size, SHA-256)`` (synced); only then
   (without ``--keep``) DELE it.
3. QUIT, which makes the server commit the deletions (RFC 1939 section 6).
   Any failure before that closes the connection without QUIT: nothing is
   deleted, and the next run picks up where this one stopped. Once QUIT is
   answered ``+OK`` the deleted messages' ids are forgotten: the state does
   not grow, and an id the server lists again later names a new message.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import signal
import socket
import ssl
from dataclasses import dataclass
from typing import Literal

from pop3_asyncio import (
    AuthError,
    InUseError,
    MessageTooLargeError,
    Pop3Error,
    ProtocolError,
    connect,
)

from ._deliver import MaildirWriter, message_token
from ._errors import CliError, Interrupted
from ._progress import Progress, counted
from ._secretfile import read_secret_file
from ._state import FetchState

__all__ = ["FetchResult", "read_password", "run_fetch"]

log = logging.getLogger("pop3.fetch")

TlsMode = Literal["implicit", "starttls"] | None

_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"})
"""OpenSSL's reasons when the first bytes of the answer are not a TLS record (a POP3 greeting)."""


@dataclass
class FetchResult:
    fetched: int = 0
    octets: int = 0
    already: int = 0
    deleted: int = 0


def read_password(args: argparse.Namespace) -> str:
    """The password from ``--password-env`` or ``--password-file`` (first line)."""
    if args.password_env is not None:
        password = os.environ.get(args.password_env)
        if password is None:
            raise CliError(
                f"--password-env: the environment variable {args.password_env} is not set"
            )
        if not password:
            raise CliError(f"--password-env: environment variable {args.password_env} is empty")
        return password
    path = args.password_file
    text = read_secret_file(path, "the password file", private=True, newline="")
    first = io.StringIO(text, newline="").readline()
    password = first.removesuffix("\n").removesuffix("\r")
    if not password:
        raise CliError(f"the password file {path} starts with an empty line")
    return password


def _client_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError as exc:
        raise CliError(f"cannot read the CA file {ca_file}: {exc.strerror}") from None
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the CA file {ca_file}: {exc}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _CtrlCError(Exception):
    """Ctrl-C was pressed during the fetch."""


class _CtrlC:
    """Ctrl-C cancels the fetch at once, and is remembered.

    ``asyncio.wait_for`` before Python 3.12 loses a cancellation that races
    with the awaited operation completing, so ``check()`` is also called
    between operations: an interrupted fetch must never reach QUIT.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()

    def __enter__(self) -> _CtrlC:
        self._loop.add_signal_handler(signal.SIGINT, self._press)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.remove_signal_handler(signal.SIGINT)

    def _press(self) -> None:
        self.pressed = True
        if self._task is not None:
            self._task.cancel()

    def check(self) -> None:
        if self.pressed:
            raise _CtrlCError


async def _fetch(
    args: argparse.Namespace,
    password: str,
    tls: TlsMode,
    port: int,
    context: ssl.SSLContext | None,
    state: FetchState,
    writer: MaildirWriter,
) -> FetchResult:
    with _CtrlC() as ctrl_c:
        try:
            return await _fetch_all(args, password, tls, port, context, state, writer, ctrl_c)
        except asyncio.CancelledError:
            if ctrl_c.pressed:
                raise _CtrlCError from None
            raise


async def _fetch_all(
    args: argparse.Namespace,
    password: str,
    tls: TlsMode,
    port: int,
    context: ssl.SSLContext | None,
    state: FetchState,
    writer: MaildirWriter,
    ctrl_c: _CtrlC,
) -> FetchResult:
    result = FetchResult()
    client = connect(
        args.host,
        port,
        tls=tls,
        ssl_context=context,
        timeout=args.timeout,
        allow_plaintext_login=args.insecure,
        max_message_size=args.max_message_size,
    )
    deleted: list[str] = []  # the ids of the messages marked for deletion
    async with client:
        await client.login(args.user, password)
        try:
            uids = await client.uidl()
        except Pop3Error as exc:
            raise CliError(
                f"the server does not list unique ids (UIDL), which pop3 fetch needs: {exc}"
            ) from None
        _refuse_repeated_ids(uids)
        sizes = await client.list()
        state.prune(uids.values())
        stored = writer.stored_tokens()
        todo: list[int] = []
        for msg in sorted(uids):
            ctrl_c.check()
            record = state.get(uids[msg])
            # A version 1 record has no size: enough to skip with --keep (deleting nothing).
            if args.keep and record is not None and record.size in (None, sizes.get(msg)):
                result.already += 1
            else:
                todo.append(msg)
        progress = Progress(len(todo), sum(sizes.get(msg, 0) for msg in todo))
        try:
            for msg in todo:
                ctrl_c.check()
                uid = uids[msg]
                token = message_token(state.account, uid)
                delivery = writer.start(token)
                try:
                    async for chunk in client.iter_retr(msg):
                        delivery.write(chunk)
                        progress.advance(len(chunk))
                except BaseException:
                    delivery.abort()
                    raise
                record = state.get(uid)
                digest = delivery.sha256
                if (record is not None and record.sha256 == digest) or (
                    token in stored and writer.holds(token, digest)
                ):
                    delivery.abort()  # these very bytes are stored already
                    log.debug("message %d (%s) is already stored", msg, uid)
                    result.already += 1
                else:
                    path = delivery.commit()
                    stored.add(token)
                    result.fetched += 1
                    result.octets += delivery.size
                    log.debug("message %d (%s): %d octets in %s", msg, uid, delivery.size, path)
                if record != (sizes.get(msg), digest):
                    state.add(uid, sizes.get(msg), digest)
                progress.message_done()
                if not args.keep:
                    await client.dele(msg)
                    deleted.append(uid)
                    result.deleted += 1
        finally:
            progress.close()
        ctrl_c.check()
        # Leaving the block normally sends QUIT: the deletions take effect now.
    # Here QUIT was answered +OK (a -ERR or no answer raised): the server has
    # deleted these messages, so an id it lists again is a new message.
    state.forget(deleted)
    return result


def _refuse_repeated_ids(uids: dict[int, str]) -> None:
    """Raise ``CliError`` if two messages share a unique id (before anything is deleted)."""
    first: dict[str, int] = {}
    for msg in sorted(uids):
        other = first.setdefault(uids[msg], msg)
        if other != msg:
            raise CliError(
                f"the server lists the unique id {uids[msg][:70]!r} for messages {other} and "
                f"{msg}; its ids cannot tell messages apart, so nothing was fetched or deleted"
            )


def run_fetch(args: argparse.Namespace) -> int:
    """``pop3 fetch``."""
    password = read_password(args)
    tls: TlsMode = "implicit" if args.implicit_tls else "starttls" if args.starttls else None
    port = args.port if args.port is not None else (995 if tls == "implicit" else 110)
    context = _client_context(args.ca_file, args.insecure) if tls is not None else None
    account = f"{args.host.lower()}:{port}:{args.user}"
    where = f"[{args.host}]:{port}" if ":" in args.host else f"{args.host}:{port}"
    writer = MaildirWriter(args.maildir)
    with FetchState(args.maildir, account) as state:
        writer.remove_unfinished()
        try:
            result = asyncio.run(_fetch(args, password, tls, port, context, state, writer))
        except (KeyboardInterrupt, _CtrlCError):
            raise Interrupted("interrupted; nothing was deleted on the server") from None
        except AuthError as exc:
            if exc.local and exc.command == "login":  # refused here, not by the server
                raise CliError(
                    f"not logging in to {where}: {exc.text}; use --starttls or --implicit-tls "
                    "(or --insecure)"
                ) from None
            raise CliError(f"login to {where} as {args.user} failed: {exc}") from None
        except InUseError as exc:
            raise CliError(f"the maildrop on {where} is in use: {exc}") from None
        except Pop3Error as exc:
            if exc.local and exc.command == "STLS":  # refused here: nothing was sent
                raise CliError(
                    f"{where} does not offer STLS: stopped before logging in, so the password "
                    "did not cross the network in the clear; use --implicit-tls if the server "
                    "speaks TLS on another port (usually 995)"
                ) from None
            raise CliError(f"{where}: {exc}") from None
        except MessageTooLargeError as exc:
            raise CliError(f"{where}: {exc}; nothing was deleted on the server") from None
        except ProtocolError as exc:
            raise CliError(f"{where}: protocol error: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise CliError(
                f"TLS certificate of {where} not trusted: {exc.verify_message}"
            ) from None
        except ssl.SSLError as exc:
            if tls == "implicit" and exc.reason in _NOT_TLS:
                raise CliError(
                    f"{where} did not answer with TLS: it is probably a plaintext POP3 port; "
                    "use --starttls (or no TLS option) there, or give the port that speaks "
                    "TLS from the start (usually 995)"
                ) from None
            raise CliError(f"TLS error with {where}: {exc.reason or exc}") from None
        except TimeoutError as exc:
            if tls != "implicit" and getattr(exc, "operation", None) == "start":
                # Connected, and no greeting: a server waiting for a TLS handshake.
                raise CliError(
                    f"{where} sent no greeting within {args.timeout:g} seconds: if it speaks "
                    "TLS from the start (usually port 995), use --implicit-tls"
                ) from None
            raise CliError(f"{where}: no answer within {args.timeout:g} seconds") from None
        except socket.gaierror as exc:
            raise CliError(f"cannot resolve {args.host}: {exc.strerror}") from None
        except ConnectionRefusedError:
            raise CliError(f"cannot connect to {where}: connection refused") from None
        except OSError as exc:
            raise CliError(f"connection to {where} failed: {exc.strerror or exc}") from None
    if args.quiet <= 0:
        summary = (
            f"fetched {counted(result.fetched, 'message')} ({counted(result.octets, 'octet')})"
        )
        if result.already:
            summary += f", {result.already} already stored"
        if not args.keep:
            summary += f", {result.deleted} deleted on the server"
        print(summary, flush=True)
    return 0
