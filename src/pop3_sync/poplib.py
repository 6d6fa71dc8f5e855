"""A drop-in for the standard library's ``poplib``: ``from pop3_sync import poplib``.

The same classes, methods, arguments and return shapes as CPython 3.11's
``poplib`` (``POP3``, ``POP3_SSL``, ``error_proto``; responses as ``bytes``,
``retr`` as ``(response, [lines], octets)``...), minus its defects:

- no line limit inside multi-line answers (``RETR``/``TOP`` of real mail with
  lines over 2048 octets works); only a status line is limited, to
  ``_MAXLINE`` octets (RFC 2449's 512);
- CR, LF or NUL in an argument raises ``error_proto`` instead of sending a
  second command (``user("bob\\r\\nDELE 1")``);
- ``POP3_SSL`` and ``stls()`` without a context verify the certificate and
  the host name (``ssl.create_default_context()``);
- bytes already received after the ``+OK`` to STLS are refused (response
  injection, CVE-2011-0411 class) instead of being dropped silently;
- the APOP timestamp is found in linear time (CVE-2018-1060);
- debug output never shows the argument of ``PASS``.

Like ``poplib``, this is line-level: it sends what it is asked to, with no
client-side state checks, so ``_shortcmd`` works for commands it has no method
for. Multi-line answers are decoded by the core's streaming decoder.
"""

from __future__ import annotations

import errno
import poplib as _stdlib_poplib
import socket
import ssl
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pop3_sansio as p
from pop3_sansio.codec import BodyDecoder, apop_digest, parse_stat

__all__ = ["POP3", "POP3_SSL", "error_proto"]

HAVE_SSL = True

POP3_PORT = 110
POP3_SSL_PORT = 995

CR = b"\r"
LF = b"\n"
CRLF = CR + LF

_MAXLINE = p.MAX_RESPONSE_LINE_LENGTH
"""The longest status line accepted (RFC 2449 section 4). Multi-line answers have no limit."""

_RECV_SIZE = 1 << 16
_DEFAULT_TIMEOUT: Any = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_LongResponse = tuple[bytes, list[bytes], int]
_Capabilities = dict[str, list[str]]
_FORBIDDEN = (b"\r", b"\n", b"\0")


class error_proto(_stdlib_poplib.error_proto):  # noqa: N801 - the standard library's name
    """An error or invalid response (also caught by ``except poplib.error_proto``)."""


class _Reader:
    """What ``poplib``'s ``file`` was: buffered reading from the socket.

    Own buffering (not ``makefile``) so that what is buffered can be known
    without blocking, and a multi-line answer is decoded chunk by chunk.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return len(self._buffer)

    def _fill(self) -> bool:
        data = self._sock.recv(_RECV_SIZE)
        if not data:
            return False
        self._buffer = self._buffer + data if self._buffer else data
        return True

    def readline(self, size: int = -1) -> bytes:
        """One line with its LF; at most ``size`` octets; ``b""`` at end of stream."""
        start = 0
        while True:
            buffer = self._buffer
            end = buffer.find(b"\n", start)
            if end >= 0 and (size < 0 or end < size):
                self._buffer = buffer[end + 1 :]
                return buffer[: end + 1]
            if 0 <= size <= len(buffer):
                self._buffer = buffer[size:]
                return buffer[:size]
            start = len(buffer)
            if not self._fill():
                self._buffer = b""
                return buffer

    def body(self) -> Iterator[bytes]:
        """The rest of a multi-line answer, unstuffed, CRLF kept, up to its ``.`` line."""
        decoder = BodyDecoder()
        while True:
            if not self._buffer and not self._fill():
                raise error_proto("-ERR EOF")
            data, end, finished = decoder.feed(self._buffer)
            self._buffer = self._buffer[end:]
            if data:
                yield data
            if finished:
                return

    def close(self) -> None:
        self._buffer = b""
        self.closed = True


def _lines(body: bytes) -> list[bytes]:
    """A body's lines without their ends, as ``poplib`` returns them."""
    lines = body.split(LF)
    if lines[-1] == b"":
        lines.pop()  # a body ends with a line end (or is empty)
    out = []
    for line in lines:
        if line[-1:] == CR:
            line = line[:-1]
        elif line[:1] == CR:
            line = line[1:]  # poplib's reading of "CR ... LF"
        out.append(line)
    return out


def _shown(line: bytes) -> bytes:
    return b"PASS ****" if line[:5].upper() == b"PASS " else line


class POP3:
    """A POP3 client, as ``poplib.POP3``: ``POP3(host, port=110, timeout=...)``.

    Every method returns the server's response line as ``bytes`` (``+OK ...``)
    and raises ``error_proto`` for ``-ERR``. ``list()``, ``uidl()``, ``retr()``
    and ``top()`` return ``(response, [line, ...], octets)``.
    """

    encoding = "UTF-8"

    def __init__(
        self,
        host: str,
        port: int = POP3_PORT,
        timeout: float | None = _DEFAULT_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self._tls_established = False
        self._debugging = 0
        self.sock: Any = None
        self.file: Any = None
        sys.audit("poplib.connect", self, host, port)
        self.sock = self._create_socket(timeout)
        self.file = _Reader(self.sock)
        try:
            self.welcome = self._getresp()
        except BaseException:
            self.close()
            raise

    def _create_socket(self, timeout: float | None) -> socket.socket:
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        return socket.create_connection((self.host, self.port), timeout)

    def _putline(self, line: bytes) -> None:
        if any(c in line for c in _FORBIDDEN):
            # Sent as it is, the rest would be a second command (CVE-2025-15367).
            raise error_proto("-ERR CR, LF or NUL in a command line")
        if self._debugging > 1:
            print("*put*", repr(_shown(line)))
        sys.audit("poplib.putline", self, line)
        self.sock.sendall(line + CRLF)

    def _putcmd(self, line: str) -> None:
        if self._debugging:
            print("*cmd*", repr(_shown(line.encode(self.encoding, "replace")).decode()))
        self._putline(bytes(line, self.encoding))

    def _getline(self) -> tuple[bytes, int]:
        """One status line without its end, and its length in octets."""
        line = self.file.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise error_proto("line too long")
        if self._debugging > 1:
            print("*get*", repr(line))
        if not line:
            raise error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == CRLF:
            return line[:-2], octets
        if line[:1] == CR:
            return line[1:-1], octets
        return line[:-1], octets

    def _getresp(self) -> bytes:
        resp, _ = self._getline()
        if self._debugging > 1:
            print("*resp*", repr(resp))
        if not resp.startswith(b"+"):
            raise error_proto(resp)
        return resp

    def _getlongresp(self) -> _LongResponse:
        resp = self._getresp()
        body = b"".join(list(self.file.body()))
        return resp, _lines(body), len(body)

    def _shortcmd(self, line: str) -> bytes:
        self._putcmd(line)
        return self._getresp()

    def _longcmd(self, line: str) -> _LongResponse:
        self._putcmd(line)
        return self._getlongresp()

    # --- the commands -----------------------------------------------------------------

    def getwelcome(self) -> bytes:
        """The server's greeting line."""
        return self.welcome

    def set_debuglevel(self, level: int) -> None:
        """1: print commands; 2: also every line sent and received (never a password)."""
        self._debugging = level

    def user(self, user: str) -> bytes:
        """``USER name``."""
        return self._shortcmd(f"USER {user}")

    def pass_(self, pswd: str) -> bytes:
        """``PASS password``; the maildrop is locked from here until ``quit()``."""
        return self._shortcmd(f"PASS {pswd}")

    def stat(self) -> tuple[int, int]:
        """``(message count, maildrop size)``."""
        retval = self._shortcmd("STAT")
        if self._debugging:
            print("*stat*", repr(retval.split()))
        parts = retval.split(None, 1)
        try:
            return parse_stat(parts[1].decode("ascii", "replace") if len(parts) > 1 else "")
        except p.ProtocolError as exc:
            raise error_proto(retval) from exc

    def list(self, which: Any = None) -> Any:
        """``LIST``: ``(response, [b"msg octets", ...], octets)``; with ``which``, the response."""
        if which is not None:
            return self._shortcmd(f"LIST {which}")
        return self._longcmd("LIST")

    def retr(self, which: Any) -> _LongResponse:
        """``RETR which``: ``(response, [line, ...], octets)``."""
        return self._longcmd(f"RETR {which}")

    def dele(self, which: Any) -> bytes:
        """``DELE which``: marked, removed at ``quit()``."""
        return self._shortcmd(f"DELE {which}")

    def noop(self) -> bytes:
        """``NOOP``."""
        return self._shortcmd("NOOP")

    def rset(self) -> bytes:
        """``RSET``: unmark every message marked for deletion."""
        return self._shortcmd("RSET")

    def quit(self) -> bytes:
        """``QUIT``: commit deletions, unlock the maildrop, close."""
        resp = self._shortcmd("QUIT")
        self.close()
        return resp

    def close(self) -> None:
        """Close the connection without QUIT (nothing is deleted)."""
        try:
            file, self.file = self.file, None
            if file is not None:
                file.close()
        finally:
            sock, self.sock = self.sock, None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError as exc:
                    # The server might already have closed the connection.
                    if exc.errno != errno.ENOTCONN and getattr(exc, "winerror", 0) != 10022:
                        raise
                finally:
                    sock.close()

    def rpop(self, user: str) -> bytes:
        """``RPOP user``."""
        return self._shortcmd(f"RPOP {user}")

    def apop(self, user: str, password: str) -> bytes:
        """``APOP user digest`` with the greeting's timestamp (RFC 1939 section 7)."""
        welcome = self.welcome
        # poplib's rule, r"\+OK.[^<]*(<.*>)", in linear time (CVE-2018-1060).
        start = welcome.find(b"<", 4) if welcome[:3] == b"+OK" else -1
        end = welcome.rfind(b">")
        if start < 0 or end < start:
            raise error_proto("-ERR APOP not supported by server")
        try:
            timestamp = welcome[start : end + 1].decode("utf-8")
        except UnicodeDecodeError:
            raise error_proto("-ERR APOP not supported by server") from None
        return self._shortcmd(f"APOP {user} {apop_digest(timestamp, password)}")

    def top(self, which: Any, howmuch: Any) -> _LongResponse:
        """``TOP which howmuch``: the headers and ``howmuch`` body lines."""
        return self._longcmd(f"TOP {which} {howmuch}")

    def uidl(self, which: Any = None) -> Any:
        """``UIDL``: ``(response, [b"msg uid", ...], octets)``; with ``which``, the response."""
        if which is not None:
            return self._shortcmd(f"UIDL {which}")
        return self._longcmd("UIDL")

    def utf8(self) -> bytes:
        """``UTF8`` (RFC 6856)."""
        return self._shortcmd("UTF8")

    def capa(self) -> _Capabilities:
        """The capabilities (RFC 2449): ``{"NAME": ["arg", ...], ...}``."""
        caps: dict[str, list[str]] = {}
        try:
            for line in self._longcmd("CAPA")[1]:
                name, *args = line.decode("ascii").split()
                caps[name] = args
        except (error_proto, UnicodeDecodeError, ValueError):
            raise error_proto("-ERR CAPA not supported by server") from None
        return caps

    def stls(self, context: ssl.SSLContext | None = None) -> bytes:
        """Start TLS on this connection (RFC 2595); the certificate is verified by default."""
        if self._tls_established:
            raise error_proto("-ERR TLS session already established")
        caps = self.capa()
        if "STLS" not in caps:
            raise error_proto("-ERR STLS not supported by server")
        if context is None:
            context = ssl.create_default_context()
        resp = self._shortcmd("STLS")
        if self.file.buffered:
            # Plaintext after the +OK would be read as if it came over TLS.
            self.close()
            raise error_proto("-ERR data received after the STLS response")
        sock, self.sock = self.sock, None
        try:
            self.sock = context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            self.close()
            raise
        self.file = _Reader(self.sock)
        self._tls_established = True
        return resp


class POP3_SSL(POP3):  # noqa: N801 - the standard library's name
    """``POP3`` over implicit TLS: ``POP3_SSL(host, port=995, ..., context=None)``.

    Without ``context``, ``ssl.create_default_context()``: the certificate and
    the host name are verified.
    """

    def __init__(
        self,
        host: str,
        port: int = POP3_SSL_PORT,
        keyfile: str | None = None,
        certfile: str | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if context is not None and keyfile is not None:
            raise ValueError("context and keyfile arguments are mutually exclusive")
        if context is not None and certfile is not None:
            raise ValueError("context and certfile arguments are mutually exclusive")
        if keyfile is not None or certfile is not None:
            warnings.warn(
                "keyfile and certfile are deprecated, use a custom context instead",
                DeprecationWarning,
                2,
            )
        self.keyfile = keyfile
        self.certfile = certfile
        if context is None:
            context = ssl.create_default_context()
            if certfile is not None:
                context.load_cert_chain(certfile, keyfile)
        self.context = context
        POP3.__init__(self, host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = POP3._create_socket(self, timeout)
        try:
            return self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def stls(self, *args: Any, **kwargs: Any) -> bytes:
        """Always raises: STLS makes no sense inside TLS."""
        raise error_proto("-ERR TLS session already established")
