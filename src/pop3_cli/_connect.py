"""Connecting and logging in for ``pop3 fetch`` (a fetch or a ``--status`` run).

``Server.of(args)`` reads the connection options; ``open_client`` makes the
client (one that traces the protocol exchange with ``-vv``); ``login`` logs
in with an account's credentials; ``reported`` turns what can go wrong on
the way into one-line ``CliError`` messages that name the server.

The trace (logger ``pop3.trace``, at ``-vv``) shows what the client sends,
except secrets: a line that is not one of the commands below, whose
arguments are message numbers or a user name, is shown as ``[N octets
hidden]`` (PASS, APOP and every SASL line, the AUTH command's initial
response included); of what the server sends it shows the status lines
and SASL challenges, and of listings and messages only their size.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from pop3_asyncio import (
    AuthError,
    Client,
    InUseError,
    MessageTooLargeError,
    Pop3Error,
    ProtocolError,
)
from pop3_sansio.client import READ, AsyncClient, Instruction, Write

from ._errors import CliError
from ._passwords import Credentials

__all__ = ["Server", "TlsMode", "login", "open_client", "reported"]

TlsMode = Literal["implicit", "starttls"] | None

trace_log = logging.getLogger("pop3.trace")

_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"})
"""OpenSSL's reasons when the first bytes of the answer are not a TLS record (a POP3 greeting)."""

# Commands whose arguments hold no secret (RFC 1939, 2449, 2595, 6856).
_SHOWN = frozenset(b"USER STAT LIST UIDL RETR TOP DELE RSET NOOP QUIT CAPA STLS UTF8 LANG".split())


def client_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    """The TLS context: the system's CA certificates or ``ca_file``'s; none with ``insecure``."""
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


@dataclass
class Server:
    """Where an account's maildrop is, and how to reach it."""

    host: str
    port: int
    tls: TlsMode
    context: ssl.SSLContext | None

    @classmethod
    def of(cls, args: argparse.Namespace) -> Server:
        tls: TlsMode = "implicit" if args.implicit_tls else "starttls" if args.starttls else None
        port = args.port if args.port is not None else (995 if tls == "implicit" else 110)
        context = client_context(args.ca_file, args.insecure) if tls is not None else None
        return cls(args.host, port, tls, context)

    @property
    def where(self) -> str:
        """``host:port`` for messages (``[v6]:port``)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class _TracingClient(Client):
    """The asyncio client, logging the exchange (secrets hidden) to ``pop3.trace``."""

    _partial = b""
    _body = 0  # octets of listing or message lines not shown yet
    _sasl = False  # in an AUTH exchange: every line the client sends is hidden

    async def _do(self, instruction: Instruction) -> None:
        if isinstance(instruction, Write):
            for line in instruction.data.splitlines():
                trace_log.debug("C: %s", _hidden(line) if self._sasl else _shown(line))
                self._sasl = self._sasl or line[:5].upper() == b"AUTH "
        if instruction is not READ or self._stream is None:
            await super()._do(instruction)
            return
        data = await self._stream.read(self.timeout)
        self._received(data)
        self.session.receive_data(data)

    def _received(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith((b"+OK", b"-ERR", b"+ ")) or line == b"+\r":
                self._flush()
                self._sasl = self._sasl and (line.startswith(b"+ ") or line == b"+\r")
                trace_log.debug("S: %s", line.rstrip(b"\r").decode("utf-8", "replace"))
            else:
                self._body += len(line) + 1
                if line == b".\r":
                    self._flush()
        if not data:
            self._flush()
            trace_log.debug("S: (connection closed)")

    def _flush(self) -> None:
        if self._body:
            trace_log.debug("S: [%d octets of listing or message]", self._body)
            self._body = 0


def _hidden(line: bytes) -> str:
    size = len(line.rstrip(b"\r"))
    return f"[{size} octets hidden]"


def _shown(line: bytes) -> str:
    line = line.rstrip(b"\r")
    verb, _, rest = line.partition(b" ")
    if verb.upper() in _SHOWN:
        return line.decode("utf-8", "replace")
    if verb.upper() == b"AUTH":
        mechanism, _, initial = rest.partition(b" ")
        hidden = f" [{len(initial)} octets hidden]" if initial else ""
        return f"AUTH {mechanism.decode('ascii', 'replace')}{hidden}"
    return _hidden(line)


def open_client(args: argparse.Namespace, server: Server, *, trace: bool) -> Client:
    """The client for ``server``; with ``trace``, one that logs the exchange."""
    return (_TracingClient if trace else Client)(
        server.host,
        server.port,
        tls=server.tls,
        ssl_context=server.context,
        timeout=args.timeout,
        allow_plaintext_login=args.insecure,
        max_message_size=args.max_message_size,
    )


async def login(client: AsyncClient, user: str, credentials: Credentials) -> None:
    """Log in with a password or an OAuth 2.0 token (the method: see ``Credentials``)."""
    await client.login(
        user, credentials.password, token=credentials.token, mechanism=credentials.mechanism
    )


@contextlib.contextmanager
def reported(args: argparse.Namespace, server: Server) -> Iterator[None]:
    """Turn a failure to talk to ``server`` into a one-line ``CliError``."""
    where = server.where
    try:
        yield
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
        raise CliError(f"TLS certificate of {where} not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        if server.tls == "implicit" and exc.reason in _NOT_TLS:
            raise CliError(
                f"{where} did not answer with TLS: it is probably a plaintext POP3 port; "
                "use --starttls (or no TLS option) there, or give the port that speaks "
                "TLS from the start (usually 995)"
            ) from None
        raise CliError(f"TLS error with {where}: {exc.reason or exc}") from None
    except TimeoutError as exc:
        if server.tls != "implicit" and getattr(exc, "operation", None) == "start":
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
