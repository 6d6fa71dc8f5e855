"""The server's log lines, written once: what they say and how attacker input is shown.

Every line an operator (or fail2ban) reads is ``EVENT: key=value ...``, the keys
in a fixed order, the client's address first: ``rip`` is never preceded by
anything the client chose, and what the client wrote (a user name, a
command) is ``user=<...>`` or ``cmd=<...>`` with ``>``, ``\\`` and every
unprintable character escaped, at most ``MAX_SHOWN`` characters.
docs/logging.md documents each line and key.

The protocol trace (``trace_command``, ``trace_response``) shows each command
and the status line of each answer, never a password, an APOP digest or a
SASL exchange's lines, and never a message's body.

Pure: formatting only; the binding's logger writes the lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, cast

from . import _events as ev
from ._connection import encode_command
from ._net import peer_host

__all__ = [
    "MAX_SHOWN",
    "LoginAttempt",
    "SessionEnd",
    "TlsInfo",
    "end_line",
    "endpoint",
    "login_line",
    "reason_line",
    "shown",
    "tls_info",
    "trace_command",
    "trace_response",
    "trace_status",
]

MAX_SHOWN = 64
"""Characters of a client-chosen value (a user name, a command) shown at most."""

LoginResult = Literal["ok", "failed", "in-use", "unavailable"]


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One login attempt of a session, as ``ServerSession`` reports it.

    ``method``: ``USER`` (USER/PASS), ``APOP`` or the SASL mechanism.
    ``username``: as the client gave it (``None`` if it named none, e.g. a
    malformed SASL message). ``result``: ``ok`` (the maildrop is open),
    ``failed`` (wrong credentials), ``in-use`` (right credentials, the
    maildrop is locked by another session), ``unavailable`` (right
    credentials, the maildrop could not be opened). ``failures``: the failed
    attempts of the session so far, this one included.
    """

    method: str
    username: str | None
    result: LoginResult
    failures: int


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """What a session did, as its ``session ended`` line shows it.

    ``user``: the user logged in (``None``: none); ``failed``: failed login
    attempts; ``retrieved`` messages sent whole by RETR and their
    ``retrieved_octets`` as listed; ``topped`` TOP answers; ``removed`` of
    ``messages`` removed at QUIT; ``octets_in``/``octets_out`` received and
    written; ``duration`` in seconds (``None``: no clock); ``reason``: why it
    ended.
    """

    user: str | None
    failed: int
    retrieved: int
    retrieved_octets: int
    topped: int
    removed: int
    messages: int
    octets_in: int
    octets_out: int
    duration: float | None
    reason: str


class _TlsObject(Protocol):
    def version(self) -> str | None: ...

    def cipher(self) -> tuple[str, str, int] | None: ...


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """A TLS connection's protocol version and cipher suite, as the log shows them."""

    version: str
    cipher: str

    def __str__(self) -> str:
        return f"tls={self.version} cipher={self.cipher}"


def tls_info(tls: _TlsObject) -> TlsInfo:
    """The version and cipher of an ``ssl.SSLObject`` or ``SSLSocket`` after its handshake."""
    cipher = tls.cipher()
    return TlsInfo(tls.version() or "?", cipher[0] if cipher else "?")


def shown(text: str, limit: int = MAX_SHOWN, *, bracketed: bool = True) -> str:
    """``text`` as a log shows a value the client chose: one line, bounded, unambiguous.

    ``\\`` is escaped, and so is every character that is not printable
    (control characters, line breaks, format characters such as U+202E, lone
    surrogates), as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; with
    ``bracketed`` also ``>``, which ends ``user=<...>``. Past ``limit``
    characters the rest is cut and ``...`` follows.
    """
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if not text.isprintable() or "\\" in text or (bracketed and ">" in text):
        text = "".join(_escape(ch, bracketed) for ch in text)
    return text + "..." if cut else text


def _escape(ch: str, bracketed: bool) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == ">" and bracketed:
        return "\\x3e"
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _host_port(address: object) -> tuple[str, str]:
    host = peer_host(address) or "?"
    if host.startswith("::ffff:") and "." in host:
        # An IPv4 client of a dual-stack socket: the address it has (and fail2ban
        # bans), not its IPv4-mapped IPv6 form.
        host = host[len("::ffff:") :]
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return host, str(address[1])
    return host, "?"


def endpoint(peer: object, local: object, proxy: object, tls: TlsInfo | None) -> str:
    """``rip=H rport=P lip=H lport=P [proxy=H:P] tls=...``: where a session is.

    ``peer`` is the client's address (from the PROXY header when there is
    one), ``local`` the server's end of the connection, ``proxy`` the
    proxy's address when a PROXY header named the client (else ``None``).
    An address that is not a host and port shows ``?``; an IPv4-mapped IPv6
    address (``::ffff:192.0.2.7``) shows as the IPv4 address.
    """
    rip, rport = _host_port(peer)
    lip, lport = _host_port(local)
    text = f"rip={rip} rport={rport} lip={lip} lport={lport}"
    if proxy is not None:
        host, port = _host_port(proxy)
        text += f" proxy={f'[{host}]' if ':' in host else host}:{port}"
    return f"{text} {tls or 'tls=no'}"


_LOGIN_EVENTS = {
    "ok": "login",
    "failed": "auth failed",
    "in-use": "login refused",
    "unavailable": "login refused",
}


def login_line(where: str, attempt: LoginAttempt) -> str:
    """The log line for a login attempt (``login:``, ``auth failed:``, ``login refused:``).

    ``where`` is ``endpoint(...)``'s text. Only ``auth failed`` is a wrong
    password (or token, or digest): the line fail2ban counts.
    """
    event = _LOGIN_EVENTS[attempt.result]
    user = "" if attempt.username is None else shown(attempt.username)
    text = f"{event}: {where} method={attempt.method}"
    if attempt.result == "failed":
        text += f" attempts={attempt.failures}"
    elif attempt.result != "ok":
        text += f" error={attempt.result}"
    return f"{text} user=<{user}>"


_MAX_REASON = 200  # characters of an end reason shown (it may quote an exception)


def end_line(where: str, end: SessionEnd) -> str:
    """The ``session ended:`` line (without the event) for a session at ``where``."""
    user = "" if end.user is None else shown(end.user)
    text = (
        f"{where} user=<{user}> failed={end.failed}"
        f" retr={end.retrieved}/{end.retrieved_octets} top={end.topped}"
        f" del={end.removed}/{end.messages} in={end.octets_in} out={end.octets_out}"
    )
    if end.duration is not None:
        text += f" duration={end.duration:.3f}"
    return f"{text} reason={shown(end.reason, _MAX_REASON, bracketed=False)}"


def reason_line(where: str, reason: str) -> str:
    """The ``session ended:`` line (without the event) of a connection that never had a session."""
    return f"{where} reason={shown(reason, _MAX_REASON, bracketed=False)}"


# --- the protocol trace ---------------------------------------------------------------

_HIDDEN = "***"


def trace_command(command: ev.Event) -> str:
    """A command as the trace shows it: ``C: ...``, its secrets replaced by ``***``."""
    if isinstance(command, ev.Pass):
        text = f"PASS {_HIDDEN}"
    elif isinstance(command, ev.Apop):
        text = f"APOP {shown(command.name, bracketed=False)} {_HIDDEN}"
    elif isinstance(command, ev.Auth):
        text = "AUTH"
        if command.mechanism is not None:
            text += f" {shown(command.mechanism, bracketed=False)}"
        if command.initial_response is not None:
            text += f" {_HIDDEN}"
    elif isinstance(command, ev.SaslResponse):
        text = _HIDDEN  # a SASL response may carry the password (PLAIN, LOGIN)
    elif isinstance(command, ev.SaslCancel):
        text = "*"
    elif isinstance(command, ev.UnknownCommand):
        # Only the keyword: the rest of a refused line may be anything (a
        # password sent out of turn).
        keyword = shown(command.keyword, 40, bracketed=False)
        text = f"{keyword} ({command.reason.replace('-', ' ')})"
    else:
        wire = encode_command(cast(ev.Command, command))
        text = shown(wire.decode("utf-8", "replace"), bracketed=False)
    return f"C: {text}"


def trace_response(response: ev.Event, wire: bytes) -> str | None:
    """An answer as the trace shows it, ``S: ...``; ``None`` for a body's data and end.

    A status line is shown as sent (``wire``, without its CRLF), the text
    the server wrote; a SASL challenge as ``+ ***``.
    """
    if isinstance(response, ev.Ok | ev.Err | ev.Greeting):
        return trace_status(wire)
    if isinstance(response, ev.SaslChallenge):
        return f"S: + {_HIDDEN}"
    return None


def trace_status(wire: bytes) -> str:
    """A status line as sent (with its CRLF), as the trace shows it: ``S: ...``."""
    line = wire.decode("utf-8", "replace").rstrip("\r\n")
    return "S: " + shown(line, 200, bracketed=False)
