"""ClientConnection and ServerConnection: bytes in, events out; events in, bytes out."""

from __future__ import annotations

from collections import deque

from . import _events as ev
from ._apop import find_timestamp
from ._base64 import b64decode_strict, b64encode
from ._codes import ResponseCode, split_response_code
from ._commands import (
    COMMANDS,
    FAST_LINES,
    PLAIN_TRANSACTION,
    Args,
    Effect,
    multiline_on_ok,
    spec_of,
    state_after_ok,
)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._multiline import BodyDecoder, BodyEncoder
from ._parse import parse_command
from ._receivebuffer import BufferFullError, LineTooLongError, ReceiveBuffer
from ._state import NEED_DATA, PAUSED, Sentinel, State

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Any, Literal, NoReturn

__all__ = [
    "MAX_COMMAND_LENGTH",
    "MAX_RESPONSE_LINE_LENGTH",
    "MAX_SASL_LINE_LENGTH",
    "ClientConnection",
    "ServerConnection",
]

MAX_COMMAND_LENGTH = 255
"""A command line's limit in octets, CRLF included (RFC 2449 section 4)."""

MAX_RESPONSE_LINE_LENGTH = 512
"""A status line's limit in octets, CRLF included (RFC 1939 section 3, RFC 2449 section 4)."""

MAX_SASL_LINE_LENGTH = 32768
"""Default limit for one SASL line. RFC 5034 section 4 wants SASL lines of any
length; OAuth tokens run to several KiB. Dovecot uses 8192."""

DEFAULT_MAX_BUFFER_SIZE = 1 << 20
"""Default cap on bytes received but not yet consumed by ``next_event``."""


_END_OF_RESPONSE = ev.EndOfResponse()  # no fields, frozen: one instance serves
_new = object.__new__
_set = object.__setattr__


def _ok_event(text: str, code: ResponseCode | None) -> ev.Ok:
    # ``text`` comes from _status(), which already refused CR and NUL (a line
    # holds no LF): skip Ok's __init__ and its re-validation (about 0.4 us).
    event = _new(ev.Ok)
    _set(event, "text", text)
    _set(event, "code", code)
    return event


_GREETING = State.GREETING  # enum member lookups cost ~0.1 us each on 3.11
_TRANSACTION = State.TRANSACTION
_CLOSED = State.CLOSED


def _strip_eol(line: bytes) -> bytes:
    # RFC 1939 section 3 wants CRLF; a bare LF is accepted on receipt (telnet
    # users, sloppy peers) because it is unambiguous.
    if line.endswith(b"\r\n"):
        return line[:-2]
    return line[:-1]


class _Connection:
    """What both roles share: the receive buffer, the state, the error rules."""

    def __init__(self, *, tls: bool, max_buffer_size: int) -> None:
        self._buffer = ReceiveBuffer()
        self._state = State.GREETING
        self._our_error = False
        self._their_error = False
        self._peer_closed = False
        self._tls_active = tls
        self._tls_pending = False
        self._utf8 = False
        self._after_user = False  # the last command was a USER answered +OK (the server reads it)
        self.max_buffer_size = max_buffer_size

    # --- state ----------------------------------------------------------------

    @property
    def our_state(self) -> State:
        """The session state as this side sees it; ``ERROR`` after our misuse."""
        return State.ERROR if self._our_error else self._state

    @property
    def their_state(self) -> State:
        """The peer's state: ``ERROR`` after it broke the protocol, ``CLOSED`` once it closed."""
        if self._their_error:
            return State.ERROR
        if self._peer_closed and not len(self._buffer):
            return State.CLOSED
        return self._state

    @property
    def tls_active(self) -> bool:
        """Whether the bytes now flowing are inside TLS (implicit TLS or after STLS)."""
        return self._tls_active

    @property
    def tls_pending(self) -> bool:
        """STLS was answered ``+OK``: the binding must call ``start_tls()`` and handshake."""
        return self._tls_pending

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buffer)

    def start_tls(self) -> None:
        """Record that the TLS handshake begins now, right after the ``+OK`` to STLS.

        Raises ``LocalProtocolError`` if STLS was not accepted, and
        ``RemoteProtocolError`` if plaintext bytes were received after the
        STLS exchange: they would otherwise be read as if protected by TLS
        (CVE-2011-0411, RFC 2595 section 4). The binding must then close.
        """
        if not self._tls_pending:
            self._local_error("start_tls() without an accepted STLS", "no-stls")
        if len(self._buffer):
            self._remote_error(
                "plaintext received after STLS, before the TLS handshake", "stls-injection"
            )
        self._tls_pending = False
        self._tls_active = True

    # --- receiving --------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer; ``b""`` means the peer closed.

        Raises ``RemoteProtocolError`` (reason ``"buffer-full"``) if more than
        ``max_buffer_size`` bytes are already waiting to be read with
        ``next_event``, and ``LocalProtocolError`` for data after a close.
        """
        if self._peer_closed:
            self._local_error("data received after the peer closed", "closed")
        if not data:
            self._peer_closed = True
            return
        if type(data) is not bytes:
            data = bytes(data)
        try:
            self._buffer.append(data, self.max_buffer_size)
        except BufferFullError:
            self._remote_error("too much data received without being read", "buffer-full")

    # --- answers: the one place where both roles apply the command table ---------

    def _answered_ok(self, command: ev.Command, effect: Effect) -> None:
        """Apply a ``+OK`` to ``command``: the row's state change and effect."""
        self._state = state_after_ok(self._state, command)
        if effect is Effect.TLS_PENDING:
            # RFC 2595 section 4: the TLS handshake comes next, nothing else.
            self._tls_pending = True
        elif effect is Effect.UTF8:
            self._utf8 = True
        elif effect is Effect.AFTER_USER:
            self._after_user = True

    def _answered_err(self, after_err: State | None) -> None:
        """Apply a ``-ERR``: only QUIT's row changes the state (RFC 1939 section 6)."""
        if after_err is not None:
            self._state = after_err

    # --- errors -------------------------------------------------------------------

    def _local_error(self, message: str, reason: str) -> NoReturn:
        self._our_error = True
        raise LocalProtocolError(message, reason=reason, state=self._state.name)

    def _remote_error(self, message: str, reason: str, line: bytes | None = None) -> NoReturn:
        self._their_error = True
        raise RemoteProtocolError(message, reason=reason, state=self._state.name, line=line)

    def _check_receiving(self) -> None:
        if self._their_error:
            raise RemoteProtocolError(
                "the peer already broke the protocol", reason="peer-error", state="ERROR"
            )


# ==================================================================================
# Client
# ==================================================================================


def _encode_auth(keyword: bytes, command: ev.Auth) -> bytes:
    if command.mechanism is None:
        return keyword
    line = keyword + b" " + command.mechanism.upper().encode("ascii")
    if command.initial_response is not None:
        # RFC 5034 section 4: "=" stands for an empty initial response.
        line += b" " + (b64encode(command.initial_response) or b"=")
    return line


# One encoder per argument shape of the command table: (keyword, command) -> line.
_ENCODERS: dict[Args, Callable[[bytes, Any], bytes]] = {
    Args.NONE: lambda keyword, command: keyword,
    Args.MSG: lambda keyword, command: b"%s %d" % (keyword, command.msg),
    Args.OPT_MSG: lambda keyword, command: (
        keyword if command.msg is None else b"%s %d" % (keyword, command.msg)
    ),
    Args.MSG_LINES: lambda keyword, command: b"%s %d %d" % (keyword, command.msg, command.lines),
    Args.NAME: lambda keyword, command: keyword + b" " + command.name.encode("utf-8"),
    Args.SECRET: lambda keyword, command: keyword + b" " + command.password.encode("utf-8"),
    Args.NAME_DIGEST: lambda keyword, command: (
        keyword + f" {command.name} {command.digest.lower()}".encode()
    ),
    Args.AUTH: _encode_auth,
    Args.SASL_RESPONSE: lambda keyword, command: b64encode(command.data),
    Args.SASL_CANCEL: lambda keyword, command: b"*",
}


def encode_command(command: ev.Command) -> bytes:
    """The wire form of a command, without CRLF.

    Raises ``KeyError`` for an object that is not a command event.
    """
    spec = spec_of(command)
    if spec is None:
        raise KeyError(type(command))
    return _ENCODERS[spec.args](spec.wire, command)


class ClientConnection(_Connection):
    """The client side of a POP3 session.

    Feed what the server sends to ``receive_data``; read events with
    ``next_event()`` (``Greeting`` first; then for each command sent, in order,
    an ``Ok`` or ``Err``, with ``Data`` chunks and ``EndOfResponse`` after an
    ``Ok`` that opens a multi-line body, or ``SaslChallenge`` events during
    AUTH). ``send(command)`` returns the bytes to write. Commands may be
    pipelined (RFC 2449 section 6.6): the connection keeps the FIFO of commands
    in flight and knows which answers are multi-line.

    ``tls=True`` says the connection is already inside TLS (port 995, RFC 8314).
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        max_line_length: int = MAX_RESPONSE_LINE_LENGTH,
        max_sasl_line_length: int = MAX_SASL_LINE_LENGTH,
        max_command_length: int = MAX_COMMAND_LENGTH,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(tls=tls, max_buffer_size=max_buffer_size)
        self.max_line_length = max_line_length
        self.max_sasl_line_length = max_sasl_line_length
        self.max_command_length = max_command_length
        self._in_flight: deque[ev.Command] = deque()
        self._decoder: BodyDecoder | None = None  # set while a body is being read
        self._body_decoder = BodyDecoder()  # the one it is set to: bodies come one at a time
        self._challenged = False  # a SaslChallenge awaits our SaslResponse or SaslCancel
        self._cancelled = False  # we sent "*": the AUTH must now end with -ERR
        self._last_sent: ev.Command | None = None
        self._pending_end = False  # the body's end was found with its last data

    @property
    def in_flight(self) -> tuple[ev.Command, ...]:
        """Commands sent and not yet fully answered, oldest first.

        The next ``Ok``/``Err`` (and any body) answers ``in_flight[0]``.
        """
        return tuple(self._in_flight)

    @property
    def utf8(self) -> bool:
        """Whether the server accepted ``UTF8`` (RFC 6856)."""
        return self._utf8

    def _projected_state(self) -> State:
        # The state once every command in flight has succeeded: what a
        # pipelined command will find when the server reads it.
        state = self._state
        if state is State.TRANSACTION:
            # Only QUIT leaves TRANSACTION, and send() lets nothing follow a
            # QUIT in flight: O(1) instead of O(commands in flight) per send.
            return state
        for command in self._in_flight:
            state = state_after_ok(state, command)
        return state

    def send(self, command: ev.Command) -> bytes:
        """Return the bytes that send ``command``.

        Raises ``LocalProtocolError`` when the command is not valid now: wrong
        state (RFC 1939), PASS not right after USER, a command while an AUTH or
        STLS exchange is open or after QUIT, STLS inside TLS, or a line over
        ``max_command_length`` octets. An AUTH initial response that would not
        fit must be left out and sent after the empty challenge (RFC 5034 §4).
        """
        fast = FAST_LINES.get(type(command))
        if fast is not None and self._state is _TRANSACTION and not self._our_error:
            # The hot path of a pipelined download: RETR and DELE in
            # TRANSACTION. There no AUTH, STLS or SASL exchange can be open,
            # so the only check left is that no QUIT is in flight; anything
            # unusual takes the general path below, which explains it.
            in_flight = self._in_flight
            if not in_flight or type(in_flight[-1]) is not ev.Quit:
                line = fast % command.msg  # type: ignore[union-attr]
                if len(line) <= self.max_command_length:
                    in_flight.append(command)
                    self._last_sent = command
                    return line
        if self._our_error:
            self._local_error("connection is in ERROR after an earlier misuse", "error-state")
        spec = spec_of(command)
        if spec is None:
            self._local_error(f"not a command: {command!r}", "type")
        if not spec.states:
            # A SASL line: it answers a challenge, whatever the state.
            if not self._challenged:
                self._local_error("no SASL challenge to answer", "no-challenge")
            self._challenged = False
            self._cancelled = spec.args is Args.SASL_CANCEL
            return encode_command(command) + b"\r\n"
        if self._state is State.GREETING:
            self._local_error("wait for the greeting before sending commands", "wrong-state")
        if self._in_flight:
            last = self._in_flight[-1]
            if spec_of(last).barrier:  # type: ignore[union-attr]
                # AUTH challenges, the TLS handshake and the close cannot have
                # anything pipelined behind them (RFC 5034 §4, RFC 2595 §4).
                self._local_error(
                    f"cannot send {type(command).__name__} until the "
                    f"{type(last).__name__.upper()} answer arrives",
                    "wrong-state",
                )
        state = self._projected_state()
        if state not in spec.states:
            self._local_error(
                f"{type(command).__name__.upper()} is not valid in {state.name}", "wrong-state"
            )
        if spec.requires_user and (
            self._last_sent is None or spec_of(self._last_sent).effect is not Effect.AFTER_USER  # type: ignore[union-attr]
        ):
            self._local_error("PASS must follow USER (RFC 1939 section 7)", "wrong-state")
        if spec.effect is Effect.TLS_PENDING and self._tls_active:
            self._local_error("TLS is already active", "tls-active")
        if self._tls_pending:
            # RFC 2595 section 4: after +OK to STLS the client MUST NOT
            # send further commands until the TLS handshake completes.
            self._local_error("call start_tls() and finish the handshake first", "tls-pending")
        line = encode_command(command) + b"\r\n"
        if len(line) > self.max_command_length:
            self._local_error(
                f"command is {len(line)} octets, over the limit of {self.max_command_length}",
                "command-too-long",
            )
        self._in_flight.append(command)
        self._last_sent = command
        return line

    def next_event(self) -> ev.Event | Literal[Sentinel.NEED_DATA]:
        """The next event from the server, or ``NEED_DATA``.

        Raises ``RemoteProtocolError`` when the server breaks the protocol: a
        malformed or over-long status line, an answer nobody asked for, bytes
        after the ``+OK`` to STLS, or a close in the middle of an answer.
        """
        if self._their_error:
            self._check_receiving()
        if self._pending_end:
            self._pending_end = False
            self._in_flight.popleft()
            return _END_OF_RESPONSE
        if self._decoder is not None:
            return self._next_data()
        if self._tls_pending:
            if len(self._buffer):
                self._remote_error(
                    "plaintext received after +OK to STLS, before the TLS handshake",
                    "stls-injection",
                )
            return NEED_DATA
        limit = self.max_line_length
        if self._in_flight and isinstance(self._in_flight[0], ev.Auth):
            head = self._buffer.peek_partial(3)
            if head[:1] == b"+" and head[:3].upper() != b"+OK":
                limit = self.max_sasl_line_length
        try:
            line = self._buffer.read_line(limit)
        except LineTooLongError as exc:
            self._remote_error(f"line longer than {limit} octets", "line-too-long", exc.prefix)
        if line is None:
            if self._peer_closed:
                return self._closed()
            return NEED_DATA
        # _strip_eol, inlined: this is once per answer.
        return self._status_line(line[:-2] if line[-2:-1] == b"\r" else line[:-1])

    def _closed(self) -> ev.ConnectionClosed:
        if len(self._buffer) or self._in_flight:
            self._remote_error("connection closed in the middle of an answer", "truncated")
        if self._state is not State.CLOSED:
            self._state = State.CLOSED
        return ev.ConnectionClosed()

    def _next_data(self) -> ev.Data | ev.EndOfResponse | Literal[Sentinel.NEED_DATA]:
        decoder = self._decoder
        assert decoder is not None
        got = self._buffer.decode_body(decoder)
        if got is None:
            if self._peer_closed:
                self._remote_error("connection closed in the middle of a body", "truncated")
            return NEED_DATA
        data, finished = got
        if finished:
            self._decoder = None
            if not data:
                return self._end_of_response()
            # The body's last bytes and its end came in one chunk: hand out
            # the data now, the end on the next call.
            self._pending_end = True
        # Data made without its __init__: ``data`` is always bytes here, and
        # the type check would cost about 0.2 us a chunk.
        event = _new(ev.Data)
        _set(event, "data", data)
        return event

    def _end_of_response(self) -> ev.EndOfResponse:
        self._pending_end = False
        self._in_flight.popleft()
        return _END_OF_RESPONSE

    def _status_line(self, line: bytes) -> ev.Event:
        if self._state is _GREETING:
            return self._greeting(line)
        if self._challenged:
            self._remote_error("the server went on before our SASL response", "sasl-order", line)
        in_flight = self._in_flight
        if not in_flight:
            self._remote_error("the server sent a line no command asked for", "unsolicited", line)
        command = in_flight[0]  # answered by this line; popped once it is fully answered
        kind = type(command)
        if (
            isinstance(command, ev.Auth)
            and command.mechanism is not None
            and (line == b"+" or line.startswith(b"+ "))
        ):
            # RFC 5034 section 4: "+ " base64. Some servers send a bare "+"
            # for an empty challenge (Microsoft's XOAUTH2 documentation).
            self._challenged = True
            return ev.SaslChallenge(b64decode_strict(line[2:].rstrip(b" ")))
        positive, text = self._status(line)
        if (
            positive
            and kind in PLAIN_TRANSACTION
            and self._state is _TRANSACTION
            and not self._cancelled
            and text[:1] != "["
        ):
            # The hot path of a TRANSACTION: "+OK text" with no response code
            # to RETR, TOP, LIST or UIDL, which change no state: the steps
            # below that would change nothing are skipped (and multiline_on_ok
            # is inlined for these four rows; test_fast_paths holds them equal).
            if kind is ev.Retr or kind is ev.Top or command.msg is None:  # type: ignore[union-attr]
                self._decoder = self._body_decoder.restart()
            else:
                in_flight.popleft()
            return _ok_event(text, None)
        code, text = split_response_code(text)
        if self._cancelled:
            self._cancelled = False
            if positive:
                # RFC 5034 section 4: a cancelled exchange MUST end in -ERR.
                self._remote_error("+OK to a cancelled AUTH", "sasl-cancel-accepted", line)
        spec = spec_of(command)
        assert spec is not None  # send() let only commands in
        if not positive:
            in_flight.popleft()
            self._answered_err(spec.after_err)
            return ev.Err(text, code)
        if multiline_on_ok(command):
            # Popped by _end_of_response, after the body.
            self._decoder = self._body_decoder.restart()
        else:
            in_flight.popleft()
        # After STLS, bytes already buffered behind this +OK are an injection;
        # they are reported by the next next_event() or by start_tls(), not
        # here. Raising here would lose the Ok only when the bytes came in the
        # same segment: the outcome must not depend on chunking.
        self._answered_ok(command, spec.effect)
        return _ok_event(text, code)

    def _status(self, line: bytes) -> tuple[bool, str]:
        # RFC 1939 section 3: "+OK" or "-ERR", then an optional SP and text.
        # Servers must send them upper-case; any case is accepted on receipt.
        if line[:4] == b"+OK ":
            # The usual form, upper-case with text: two slices less.
            positive, text = True, line[4:].decode("utf-8", "replace")
        else:
            if line[:3].upper() == b"+OK":
                positive, rest = True, line[3:]
            elif line[:4].upper() == b"-ERR":
                positive, rest = False, line[4:]
            else:
                self._remote_error("not a +OK or -ERR status line", "bad-status-line", line)
            if rest and rest[:1] != b" ":
                self._remote_error("no space after the status indicator", "bad-status-line", line)
            text = rest[1:].decode("utf-8", "replace")
        if "\r" in text or "\0" in text:
            self._remote_error("control character in status line", "bad-status-line", line)
        return positive, text

    def _greeting(self, line: bytes) -> ev.Greeting | ev.Err:
        positive, text = self._status(line)
        code, text = split_response_code(text)
        if not positive:
            # A server that will not serve us says so in its first line.
            self._state = State.CLOSED
            return ev.Err(text, code)
        self._state = State.AUTHORIZATION
        return ev.Greeting(text, code, find_timestamp(text))


# ==================================================================================
# Server
# ==================================================================================


class ServerConnection(_Connection):
    """The server side of a POP3 session.

    Send the ``Greeting`` first. Then ``next_event()`` gives one command at a
    time; answer it with ``send(Ok(...))`` or ``send(Err(...))`` (plus
    ``Data`` chunks and ``EndOfResponse`` after an ``Ok`` that opens a
    multi-line answer, or ``SaslChallenge`` during AUTH) before the next
    command is read: until then ``next_event()`` returns ``PAUSED``. Commands
    that are unknown, malformed or not valid in the current state come as
    ``UnknownCommand`` and must be answered with ``Err`` (RFC 1939 section 3).

    Message bytes sent as ``Data`` may use LF or CRLF line ends in any
    chunking; they are written with CRLF line ends and dot-stuffing.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        max_command_length: int = MAX_COMMAND_LENGTH,
        max_sasl_line_length: int = MAX_SASL_LINE_LENGTH,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
    ) -> None:
        super().__init__(tls=tls, max_buffer_size=max_buffer_size)
        self.max_command_length = max_command_length
        self.max_sasl_line_length = max_sasl_line_length
        self._current: ev.Command | ev.UnknownCommand | None = None
        self._encoder: BodyEncoder | None = None
        self._awaiting_sasl = False  # a challenge was sent; the next line is SASL
        self._sasl_failed = False  # the client cancelled or sent bad base64: -ERR only
        self._apop_timestamp: str | None = None

    def _read_line(self, limit: int) -> bytes | None:
        try:
            return self._buffer.read_line(limit)
        except LineTooLongError as exc:
            self._remote_error(
                f"line longer than {limit} octets", "line-too-long", self._loggable(exc.prefix)
            )

    def _loggable(self, line: bytes) -> bytes:
        # docs/architecture.md, invariant 7: secrets are never logged. A SASL
        # line or a PASS/AUTH command may carry one, so only its keyword is kept.
        if self._awaiting_sasl:
            return b"<SASL response>"
        if line[:4].upper() in (b"PASS", b"AUTH", b"APOP"):
            return line[:4] + b" <redacted>"
        return line

    @property
    def current_command(self) -> ev.Command | ev.UnknownCommand | None:
        """The command being answered, or ``None`` between commands."""
        return self._current

    @property
    def utf8(self) -> bool:
        """Whether ``UTF8`` was accepted in this session (RFC 6856)."""
        return self._utf8

    @property
    def apop_timestamp(self) -> str | None:
        """The APOP timestamp sent in the greeting, if any (RFC 1939 section 7)."""
        return self._apop_timestamp

    def next_event(self) -> ev.Event | Literal[Sentinel.NEED_DATA, Sentinel.PAUSED]:
        """The next command from the client, ``NEED_DATA`` or ``PAUSED``.

        ``PAUSED`` means: send the greeting, finish answering the current
        command, or (after ``+OK`` to STLS) call ``start_tls()`` first.
        ``ConnectionClosed`` comes once the client has closed. Raises
        ``RemoteProtocolError`` for a line over its limit.
        """
        self._check_receiving()
        if self._state is _GREETING or self._state is _CLOSED or self._tls_pending:
            return PAUSED
        if self._current is not None and not self._awaiting_sasl:
            return PAUSED
        limit = self.max_sasl_line_length if self._awaiting_sasl else self.max_command_length
        line = self._read_line(limit)
        if line is None:
            if self._peer_closed:
                return ev.ConnectionClosed()
            return NEED_DATA
        line = _strip_eol(line)
        if self._awaiting_sasl:
            self._awaiting_sasl = False
            if line == b"*":
                # Only -ERR may answer now (RFC 5034 section 4).
                self._sasl_failed = True
                return ev.SaslCancel()
            data = b64decode_strict(line)
            if data is None:
                # RFC 5034 section 4: an undecodable response fails the
                # exchange with -ERR.
                self._sasl_failed = True
                return ev.UnknownCommand("", line, "syntax")
            return ev.SaslResponse(data)
        command = parse_command(line)
        after_user, self._after_user = self._after_user, False
        spec = COMMANDS.get(type(command))  # None for an UnknownCommand
        if spec is not None:
            if self._state not in spec.states or (spec.requires_user and not after_user):
                command = ev.UnknownCommand(spec.wire.decode(), line, "wrong-state")
            elif spec.effect is Effect.TLS_PENDING and self._tls_active:
                command = ev.UnknownCommand(spec.wire.decode(), line, "tls-active")
            elif spec.after_ok is _CLOSED and self._state is _TRANSACTION:
                # RFC 1939 section 6: QUIT from TRANSACTION enters UPDATE.
                self._state = State.UPDATE
        self._current = command
        return command

    def send(self, event: ev.Response) -> bytes:
        """Return the bytes that send ``event``; see the class docstring for the order.

        Raises ``LocalProtocolError`` for an event that does not fit: a
        response with no command to answer, ``Ok`` to an ``UnknownCommand``,
        ``Data`` outside a multi-line answer, ``SaslChallenge`` outside AUTH, a
        status line over 512 octets.
        """
        if self._our_error:
            self._local_error("connection is in ERROR after an earlier misuse", "error-state")
        if isinstance(event, ev.Data):
            if self._encoder is None:
                self._local_error("Data outside a multi-line answer", "no-body")
            return self._encoder.encode(event.data)
        if isinstance(event, ev.EndOfResponse):
            return self._send_end()
        if self._encoder is not None:
            self._local_error("finish the multi-line answer first", "body-open")
        if isinstance(event, ev.Greeting):
            return self._send_greeting(event)
        if self._state is _GREETING:
            return self._send_refusal(event)
        current = self._current
        if current is None:
            self._local_error("no command to answer", "no-command")
        if self._awaiting_sasl:
            self._local_error("wait for the client's SASL response", "wrong-state")
        if (
            type(event) is ev.Ok
            and type(current) in PLAIN_TRANSACTION
            and self._state is _TRANSACTION
        ):
            # The hot path of a TRANSACTION: +OK to RETR, TOP, LIST or UIDL,
            # which change no state and have no effect (_send_ok would find
            # nothing to do before _ok_line).
            return self._ok_line(event, current)
        if isinstance(event, ev.SaslChallenge):
            return self._send_challenge(event, current)
        if isinstance(event, ev.Err):
            return self._send_err(event, current)
        if not isinstance(event, ev.Ok):
            self._local_error(f"not a response: {event!r}", "type")
        return self._send_ok(event, current)

    def _send_end(self) -> bytes:
        if self._encoder is None:
            self._local_error("EndOfResponse outside a multi-line answer", "no-body")
        tail = self._encoder.finish()
        self._encoder = None
        self._current = None
        return tail

    def _send_greeting(self, event: ev.Greeting) -> bytes:
        if self._state is not _GREETING:
            self._local_error("the greeting was already sent", "wrong-state")
        self._state = State.AUTHORIZATION
        self._apop_timestamp = event.timestamp
        text = event.text
        if event.timestamp is not None and event.timestamp not in text:
            text = f"{text} {event.timestamp}" if text else event.timestamp
        return self._status_line(b"+OK", ev.Ok(text, event.code))

    def _send_refusal(self, event: ev.Response) -> bytes:
        # Before the greeting only a -ERR greeting (refusing service) may go.
        if not isinstance(event, ev.Err):
            self._local_error("send the Greeting first", "wrong-state")
        self._state = _CLOSED
        return self._status_line(b"-ERR", event)

    def _send_challenge(
        self, event: ev.SaslChallenge, current: ev.Command | ev.UnknownCommand
    ) -> bytes:
        if self._sasl_failed:
            self._local_error("the SASL exchange failed: answer -ERR", "must-err")
        if not isinstance(current, ev.Auth) or current.mechanism is None:
            self._local_error("SaslChallenge outside an AUTH exchange", "wrong-state")
        if event.data is None:
            self._local_error("a challenge needs data (b'' for an empty one)", "bad-argument")
        self._awaiting_sasl = True
        return b"+ " + b64encode(event.data) + b"\r\n"

    def _send_err(self, event: ev.Err, current: ev.Command | ev.UnknownCommand) -> bytes:
        self._current = None
        self._sasl_failed = False
        spec = COMMANDS.get(type(current))  # None for an UnknownCommand
        if spec is not None:
            self._answered_err(spec.after_err)
        return self._status_line(b"-ERR", event)

    def _send_ok(self, event: ev.Ok, current: ev.Command | ev.UnknownCommand) -> bytes:
        if isinstance(current, ev.UnknownCommand):
            self._local_error(f"{current.keyword or 'that line'} must be answered -ERR", "must-err")
        if self._sasl_failed:
            # After "*" or an undecodable SASL line the current command is
            # still the AUTH, but RFC 5034 section 4 says the server MUST reply -ERR.
            self._local_error("the SASL exchange failed: answer -ERR", "must-err")
        self._answered_ok(current, COMMANDS[type(current)].effect)
        return self._ok_line(event, current)

    def _ok_line(self, event: ev.Ok, current: object) -> bytes:
        """The ``+OK`` line answering ``current``; a body follows if its answer has one."""
        line = self._status_line(b"+OK", event)
        if multiline_on_ok(current):
            self._encoder = BodyEncoder()
        else:
            self._current = None
        return line

    def send_failure(self, text: str) -> bytes:
        """The ``-ERR`` to write before closing after a ``RemoteProtocolError``.

        Valid once, when the client broke the protocol and no multi-line
        answer is open; the connection is then ``CLOSED``.
        """
        if not self._their_error or self._encoder is not None or self._state is State.CLOSED:
            self._local_error("send_failure() is for closing after a client error", "wrong-state")
        self._state = State.CLOSED
        return self._status_line(b"-ERR", ev.Err(text))

    def _status_line(self, indicator: bytes, event: ev.Ok | ev.Err) -> bytes:
        parts = [indicator]
        if event.code is not None:
            parts.append(f"[{event.code}]".encode("ascii"))
        if event.text:
            parts.append(event.text.encode("utf-8"))
        line = b" ".join(parts) + b"\r\n"
        if len(line) > MAX_RESPONSE_LINE_LENGTH:
            self._local_error("status line over 512 octets (RFC 1939 section 3)", "too-long")
        return line
