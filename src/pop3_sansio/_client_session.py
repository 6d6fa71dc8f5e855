"""The client's high-level operations, written once for every binding.

Each operation of ``ClientSession`` is a generator that drives a
``ClientConnection`` and *yields I/O instructions* to the binding:

- ``Write(data)``: write these bytes, then resume with ``send(None)``;
- ``READ``: read some bytes, feed them with ``session.receive_data(data)``
  (``b""`` at end of stream), then resume;
- ``StartTls()``: wrap the transport in TLS now (after ``+OK`` to STLS), then resume;
- ``Chunk(data)``: a piece of a message for the caller (streaming RETR), then resume.

The generator's return value is the operation's result; POP3 ``-ERR`` answers
raise ``Pop3Error`` subclasses carrying the server's response code. A binding
is a loop of a few lines around ``drive``-style code and some socket calls.
"""

from __future__ import annotations

import warnings
from collections import deque

from . import _events as ev
from ._apop import apop_digest
from ._capabilities import Capabilities
from ._codes import AUTH, IN_USE, LOGIN_DELAY, SYS_PERM, SYS_TEMP, ResponseCode
from ._connection import ClientConnection, encode_command
from ._errors import (
    AuthError,
    InUseError,
    LocalProtocolError,
    LoginDelayError,
    MessageTooLargeError,
    PermanentError,
    Pop3Error,
    RemoteProtocolError,
    TemporaryError,
)
from ._instructions import READ, Read, StartTls, Write
from ._listing import (
    parse_scan_line,
    parse_scan_listing,
    parse_stat,
    parse_uid_line,
    parse_uid_listing,
)
from ._state import NEED_DATA, State
from ._values import Value, init_field

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Generator, Iterable
    from typing import NoReturn, TypeAlias

    from ._sasl import ClientMechanism

__all__ = ["MAX_LISTING_SIZE", "Chunk", "ClientSession", "Instruction", "error_for"]


# --- errors ----------------------------------------------------------------------


_BY_CODE: tuple[tuple[ResponseCode, type[Pop3Error]], ...] = (
    (AUTH, AuthError),
    (IN_USE, InUseError),
    (LOGIN_DELAY, LoginDelayError),
    (SYS_TEMP, TemporaryError),
    (SYS_PERM, PermanentError),
)


def error_for(err: ev.Err, command: str, default: type[Pop3Error] = Pop3Error) -> Pop3Error:
    """The exception for ``err``: chosen by its response code, else ``default``."""
    if err.code is not None:
        for code, cls in _BY_CODE:
            if err.code.matches(code):
                return cls(err.text, err.code, command)
    return default(err.text, err.code, command)


# --- instructions --------------------------------------------------------------------


class Chunk(Value):
    """A piece of a message body for the caller (CRLF line ends, unstuffed)."""

    __slots__ = __match_args__ = ("data",)
    _hidden = frozenset(__slots__)
    data: bytes

    def __init__(self, data: bytes) -> None:
        init_field(self, "data", data)


Instruction: TypeAlias = Write | Read | StartTls | Chunk
"""What a ``ClientSession`` operation yields for its binding to carry out."""

MAX_LISTING_SIZE = 64 << 20
"""Default cap on a LIST, UIDL or CAPA body the client collects (about 800k UIDL lines)."""

BODY_SLACK = 64 << 10
"""Octets a body may exceed twice its announced size by (see ``ClientSession.body_limit``)."""


def _window_open(in_flight: int, depth: int, writing: bool) -> bool:
    """Whether ``retr_many`` tops its window of ``depth`` RETRs up now.

    Once a quarter of it is answered, or when a DELE goes out anyway: one
    write for several RETRs, not one for each, while three quarters stay in
    flight so the server never waits for the next command (half a window
    drained the pipe; benchmarks/RESULTS.md).
    """
    return writing or in_flight <= depth - max(1, depth // 4)


# Mechanisms that hand the secret itself (a password or a bearer token) to
# anyone who reads the connection.
_CLEARTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"})


class ClientSession:
    """A POP3 client's session logic over a ``ClientConnection``.

    ``random_bytes`` (e.g. ``os.urandom``) supplies the SCRAM client nonce;
    without it SCRAM is not used. ``allow_plaintext_login`` says whether a
    password may be sent without TLS: the binding sets it for loopback peers
    or when the caller insists; ``login`` never reveals a password otherwise.
    ``secure=`` is its old, deprecated name.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        allow_plaintext_login: bool = False,
        random_bytes: Callable[[int], bytes] | None = None,
        connection: ClientConnection | None = None,
        max_message_size: int | None = None,
        secure: bool | None = None,
    ) -> None:
        if secure is not None:
            warnings.warn(
                "ClientSession(secure=...) is deprecated: use allow_plaintext_login=...",
                DeprecationWarning,
                stacklevel=2,
            )
            allow_plaintext_login = allow_plaintext_login or secure
        self.connection = connection or ClientConnection(tls=tls)
        self.allow_plaintext_login = allow_plaintext_login
        """A password may be sent without TLS (a loopback peer, or the caller said so)."""
        self._random = random_bytes
        self.greeting: ev.Greeting | None = None
        self._capabilities: Capabilities | None = None
        self._marked: set[int] = set()  # answered +OK to DELE, not undone by RSET
        self.max_listing_size = MAX_LISTING_SIZE
        """Cap on a LIST, UIDL or CAPA body: more is a ``RemoteProtocolError`` ("too-big")."""
        self._capa_known = False
        self.max_message_size = max_message_size
        """Absolute cap on a RETR or TOP body, in octets; ``None``: only the relative limit."""
        # From LIST: a message's size is fixed once the maildrop is open (RFC 1939 section 4).
        self._sizes: dict[int, int] = {}
        self._listed = False  # a whole scan listing was read: _sizes has every message
        self._refused: MessageTooLargeError | None = None

    # --- plumbing --------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server (``b""`` at end of stream)."""
        self.connection.receive_data(data)

    @property
    def may_send_password(self) -> bool:
        """Whether a password may be sent as it is: TLS is active, or it was allowed."""
        return self.allow_plaintext_login or self.connection.tls_active

    @property
    def secure(self) -> bool:
        """Deprecated name of ``may_send_password``."""
        warnings.warn(
            "ClientSession.secure is deprecated: use may_send_password",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.may_send_password

    def _send(self, *commands: ev.Command) -> Generator[Instruction, None, None]:
        if self._refused is not None:
            # The rest of an oversized body is still on its way: no command
            # (QUIT included) can be answered in step any more.
            raise RemoteProtocolError(
                f"the connection is unusable: {self._refused}", reason="peer-error"
            )
        yield Write(b"".join(self.connection.send(c) for c in commands))

    def _event(self) -> Generator[Instruction, None, ev.Event]:
        while True:
            event = self.connection.next_event()
            if event is not NEED_DATA:
                if isinstance(event, ev.ConnectionClosed):
                    raise RemoteProtocolError("the server closed the connection", reason="closed")
                return event
            yield READ

    def _status(
        self, command: str, default: type[Pop3Error] = Pop3Error
    ) -> Generator[Instruction, None, ev.Ok | ev.SaslChallenge]:
        event = yield from self._event()
        if isinstance(event, ev.Err):
            raise error_for(event, command, default)
        assert isinstance(event, ev.Ok | ev.SaslChallenge)
        return event

    def _body(self) -> Generator[Instruction, None, bytes]:
        """A listing's whole body (collected: LIST, UIDL and CAPA are parsed at once)."""
        parts: list[bytes] = []
        size = 0
        while True:
            event = yield from self._event()
            if isinstance(event, ev.EndOfResponse):
                return b"".join(parts)
            assert isinstance(event, ev.Data)
            size += len(event.data)
            if size > self.max_listing_size:
                raise RemoteProtocolError("multi-line answer over its size limit", reason="too-big")
            parts.append(event.data)

    def _simple(self, command: ev.Command, name: str) -> Generator[Instruction, None, str]:
        yield from self._send(command)
        ok = yield from self._status(name)
        assert isinstance(ok, ev.Ok)
        return ok.text

    # --- start and TLS -----------------------------------------------------------------

    def start(self, *, starttls: bool = False) -> Generator[Instruction, None, ev.Greeting]:
        """Read the greeting; with ``starttls``, upgrade with STLS (RFC 2595).

        Refuses to go on in plaintext if the server does not offer STLS: a
        man in the middle removing it must not downgrade the session.
        """
        event = yield from self._event()
        if isinstance(event, ev.Err):
            raise error_for(event, "greeting", TemporaryError)
        assert isinstance(event, ev.Greeting)
        self.greeting = event
        if starttls:
            caps = yield from self.capa()
            if caps is None or not caps.stls:
                raise Pop3Error(
                    "the server does not offer STLS; not going on without TLS",
                    None,
                    "STLS",
                    local=True,
                )
            yield from self._simple(ev.Stls(), "STLS")
            self.connection.start_tls()
            yield StartTls()
            # RFC 2595 section 4: forget what was learnt before TLS.
            self._capabilities = None
            self._capa_known = False
        return event

    def capa(self, *, refresh: bool = False) -> Generator[Instruction, None, Capabilities | None]:
        """The server's capabilities (cached), or ``None`` if it does not support CAPA."""
        if self._capa_known and not refresh:
            return self._capabilities
        yield from self._send(ev.Capa())
        event = yield from self._event()
        # RFC 2449 section 5: -ERR means CAPA is not implemented.
        caps = None
        if not isinstance(event, ev.Err):
            caps = Capabilities.parse((yield from self._body()))
        self._capabilities = caps
        self._capa_known = True
        return caps

    # --- AUTHORIZATION ---------------------------------------------------------------------

    def login(
        self,
        username: str,
        password: str | None = None,
        *,
        token: str | None = None,
        mechanism: str | None = None,
    ) -> Generator[Instruction, None, str]:
        """Authenticate with the strongest method both sides have; return the ``+OK`` text.

        Order: SCRAM-SHA-256, SCRAM-SHA-1; then, where a password may be sent
        (``may_send_password``), PLAIN, LOGIN, USER/PASS; then the challenge-response
        methods CRAM-MD5 and APOP. With ``token``: OAUTHBEARER or XOAUTH2.
        ``mechanism`` forces one SASL mechanism (or ``"USER"``/``"APOP"``).
        Raises ``AuthError`` when no safe method is offered or the
        credentials are refused, ``InUseError`` when the maildrop is locked.
        """
        caps = yield from self.capa()
        methods = self._methods(caps, token is not None) if mechanism is None else [mechanism]
        if not methods:
            raise AuthError(
                "no authentication method the server offers is safe on this connection "
                "(use TLS, or allow plaintext explicitly)",
                None,
                "login",
                local=True,
            )
        method = methods[0].upper()
        if method == "USER":
            if password is None:
                raise LocalProtocolError("USER/PASS needs a password", reason="bad-argument")
            if not self.may_send_password:
                raise AuthError(
                    "refusing to send a password in the clear", None, "login", local=True
                )
            if caps is not None and caps.pipelining:
                yield from self._send(ev.User(username), ev.Pass(password))
                # Both answers are read, even when USER fails, to stay in step.
                user_answer = yield from self._event()
                pass_answer = yield from self._event()
            else:
                yield from self._send(ev.User(username))
                user_answer = yield from self._event()
                pass_answer = user_answer
                if isinstance(user_answer, ev.Ok):
                    yield from self._send(ev.Pass(password))
                    pass_answer = yield from self._event()
            if isinstance(user_answer, ev.Err):
                raise error_for(user_answer, "USER", AuthError)
            if isinstance(pass_answer, ev.Err):
                raise error_for(pass_answer, "PASS", AuthError)
            assert isinstance(pass_answer, ev.Ok)
            return pass_answer.text
        if method == "APOP":
            if self.greeting is None or self.greeting.timestamp is None or password is None:
                raise AuthError("APOP is not possible with this server", None, "APOP", local=True)
            digest = apop_digest(self.greeting.timestamp, password)
            yield from self._send(ev.Apop(username, digest))
            return (yield from self._simple_answer("APOP", AuthError))
        return (yield from self.auth(method, username, password=password, token=token))

    def _simple_answer(
        self, name: str, default: type[Pop3Error]
    ) -> Generator[Instruction, None, str]:
        ok = yield from self._status(name, default)
        assert isinstance(ok, ev.Ok)
        return ok.text

    def _methods(self, caps: Capabilities | None, with_token: bool) -> list[str]:
        sasl = caps.sasl if caps is not None else ()
        if with_token:
            # A bearer token is as good as a password to whoever reads it.
            return (
                [m for m in ("OAUTHBEARER", "XOAUTH2") if m in sasl]
                if self.may_send_password
                else []
            )
        order: list[str] = []
        if self._random is not None:
            order += [m for m in ("SCRAM-SHA-256", "SCRAM-SHA-1") if m in sasl]
        if self.may_send_password:
            order += [m for m in ("PLAIN", "LOGIN") if m in sasl]
            # RFC 2449 section 7: USER may be used without being announced.
            if caps is None or caps.user or not sasl:
                order.append("USER")
        if "CRAM-MD5" in sasl:
            order.append("CRAM-MD5")
        if self.greeting is not None and self.greeting.timestamp is not None:
            order.append("APOP")
        return order

    def auth(
        self,
        mechanism: str | ClientMechanism,
        username: str = "",
        *,
        password: str | None = None,
        token: str | None = None,
    ) -> Generator[Instruction, None, str]:
        """Run one SASL exchange (RFC 5034); return the ``+OK`` text.

        The initial response is sent with the command when it fits in 255
        octets, else after the server's empty challenge (RFC 5034 section 4).
        A challenge that is not base64 is answered with ``*``.
        """
        if isinstance(mechanism, str):
            # Here, not at the top: a USER/PASS or APOP login never loads SASL,
            # SCRAM, json or stringprep (docs/architecture.md, section 8).
            from ._sasl import client_mechanism

            nonce = None
            if self._random is not None:
                nonce = self._random(18).hex()
            mech = client_mechanism(
                mechanism, username=username, password=password, token=token, nonce=nonce
            )
        else:
            mech = mechanism
        if mech.name in _CLEARTEXT_MECHANISMS and not self.may_send_password:
            raise AuthError("refusing to send a password in the clear", None, "AUTH", local=True)
        command = ev.Auth(mech.name, mech.initial_response())
        if len(encode_command(command)) + 2 > self.connection.max_command_length:
            # RFC 5034 section 4: too long for the command line, so it goes
            # after the server's empty challenge instead.
            command = ev.Auth(mech.name)
        yield Write(self.connection.send(command))
        while True:
            event = yield from self._status("AUTH", AuthError)
            if isinstance(event, ev.Ok):
                if not mech.is_complete:
                    # The server said +OK before proving itself (SCRAM):
                    # do not trust this session.
                    raise RemoteProtocolError(
                        "server accepted authentication without completing it",
                        reason="sasl-incomplete",
                    )
                return event.text
            if event.data is None:
                yield from self._send(ev.SaslCancel())
                continue
            try:
                response = mech.respond(event.data)
            except RemoteProtocolError:
                # A forged or malformed challenge: cancel, read the -ERR that
                # must follow, and report what was wrong with the challenge.
                yield from self._send(ev.SaslCancel())
                try:  # noqa: SIM105 - contextlib costs a client's import time
                    yield from self._status("AUTH", AuthError)
                except Pop3Error:
                    pass
                raise
            yield from self._send(ev.SaslResponse(response))

    # --- TRANSACTION ---------------------------------------------------------------------

    def stat(self) -> Generator[Instruction, None, tuple[int, int]]:
        """``STAT`` -> ``(message count, total size)``."""
        return parse_stat((yield from self._simple(ev.Stat(), "STAT")))

    def list(self, msg: int | None = None) -> Generator[Instruction, None, dict[int, int]]:
        """``LIST`` -> ``{msgno: size}`` (one entry for ``LIST msg``)."""
        if msg is not None:
            n, size = parse_scan_line((yield from self._simple(ev.List(msg), "LIST")))
            self._sizes[n] = size
            return {n: size}
        yield from self._simple(ev.List(), "LIST")
        sizes = parse_scan_listing((yield from self._body()))
        self._sizes.update(sizes)
        self._listed = True
        return sizes

    def uidl(self, msg: int | None = None) -> Generator[Instruction, None, dict[int, str]]:
        """``UIDL`` -> ``{msgno: unique id}`` (one entry for ``UIDL msg``)."""
        if msg is not None:
            text = yield from self._simple(ev.Uidl(msg), "UIDL")
            # Twisted answers with the unique-id alone, without the message number.
            n, uid = parse_uid_line(text if " " in text else f"{msg} {text}")
            return {n: uid}
        yield from self._simple(ev.Uidl(), "UIDL")
        return parse_uid_listing((yield from self._body()))

    def body_limit(self, size: int) -> int:
        """The octets accepted for a RETR or TOP body of a message announced as ``size``.

        Twice the size plus ``BODY_SLACK``: RFC 1939 section 11 counts each
        line end as two octets (CRLF), yet some servers give the size of the
        stored file with one-octet LF ends, which a body of short lines
        nearly doubles on the wire; the slack covers small messages.
        ``max_message_size``, when set, caps it.
        """
        limit = 2 * size + BODY_SLACK
        cap = self.max_message_size
        return limit if cap is None or cap > limit else cap

    def _open_body(
        self, command: ev.Retr | ev.Top, name: str
    ) -> Generator[Instruction, None, tuple[int, int]]:
        """Send ``command``, read its ``+OK``; return the message's ``(size, body limit)``.

        The size comes from an earlier LIST when there was one. Otherwise
        ``LIST msg`` asks for it: in the same write as ``command`` when the
        server pipelines (RFC 2449 section 6.6), else one round trip before
        it (``list()`` first saves them for every message at once).
        """
        msg = command.msg
        size = self._sizes.get(msg)
        caps = self._capabilities
        if size is None and caps is not None and caps.pipelining:
            yield from self._send(ev.List(msg), command)
            try:
                ok = yield from self._status("LIST")
            except Pop3Error:
                # No such message: read the answer to ``command`` too, in step.
                yield from self._skip_answers([command])
                raise
            assert isinstance(ok, ev.Ok)
            n, size = parse_scan_line(ok.text)
            self._sizes[n] = size
            limit = self._check_announced(msg, size)
        else:
            if size is None:
                (size,) = (yield from self.list(msg)).values()
            limit = self._check_announced(msg, size)
            yield from self._send(command)
        yield from self._status(name)
        return size, limit

    def _check_announced(self, msg: int, size: int) -> int:
        limit = self.body_limit(size)
        if self.max_message_size is not None and size > self.max_message_size:
            # Known too big before a byte of it is sent: not fetched at all.
            self._refuse(MessageTooLargeError(msg, size, limit, received=None))
        return limit

    def _refuse(self, error: MessageTooLargeError) -> NoReturn:
        self._refused = error
        raise error

    def retr(self, msg: int) -> Generator[Instruction, None, None]:
        """``RETR msg``: yields the message as ``Chunk`` instructions.

        Raises ``MessageTooLargeError`` once the body goes over its
        ``body_limit`` (from the LIST size, asked for as well if not known).
        """
        size, limit = yield from self._open_body(ev.Retr(msg), "RETR")
        yield from self._chunks(msg, size, limit)

    def top(self, msg: int, lines: int) -> Generator[Instruction, None, None]:
        """``TOP msg lines``: yields the headers and ``lines`` body lines as ``Chunk``.

        Held to the whole message's ``body_limit``, as ``retr`` is: headers
        and some lines are never more than the message.
        """
        size, limit = yield from self._open_body(ev.Top(msg, lines), "TOP")
        yield from self._chunks(msg, size, limit)

    def _chunks(
        self, msg: int, size: int, limit: int, *, keep: bool = True
    ) -> Generator[Instruction, None, None]:
        """A body as ``Chunk`` instructions (dropped unless ``keep``), up to ``limit`` octets."""
        received = 0
        while True:
            event = yield from self._event()
            if isinstance(event, ev.EndOfResponse):
                return
            assert isinstance(event, ev.Data)
            received += len(event.data)
            if received > limit:
                # Not drained: a server that never stops would keep us here.
                self._refuse(MessageTooLargeError(msg, size, limit, received=received))
            if keep:
                yield Chunk(event.data)

    def retr_many(
        self, msgs: Iterable[int], *, delete: bool = False, window: int = 32
    ) -> Generator[Instruction, None, None]:
        """RETR each of ``msgs`` (and DELE it after, with ``delete``), pipelined.

        Yields, per message, a ``Chunk`` for each piece of it and then an empty
        ``Chunk(b"")`` that marks its end. With PIPELINING (RFC 2449 section
        6.6) up to ``window`` (at least 1) RETRs are in flight; otherwise one
        command at a time. A message is marked for deletion only after the caller has taken
        all of it (the DELE goes out when the generator is resumed after its
        end marker). A RETR or DELE that fails raises its ``Pop3Error`` once the
        answers to the commands already sent are read, so the session stays
        in step and no message the caller did not get is marked.

        Each body is held to its ``body_limit``. Sizes not known from an
        earlier LIST are asked for with one LIST of every message first (one
        round trip for them all, not one ``LIST msg`` each); a message that
        listing lacks is held to ``BODY_SLACK``. Whether the server pipelines
        comes from CAPA, asked for first unless known.
        """
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        order = list(msgs)
        caps = yield from self.capa()  # pipelining depends on it (RFC 2449 section 6.6)
        pipelining = caps is not None and caps.pipelining
        depth = window if pipelining else 1
        sizes = self._sizes
        if not self._listed and any(msg not in sizes for msg in order):
            yield from self.list()
        rest = iter(order)  # messages whose RETR has not been sent
        left = len(order)  # how many ``rest`` still holds
        sent: deque[ev.Retr | ev.Dele] = deque()  # written, answers not read yet, in order
        retrs = 0  # RETRs among ``sent``
        dele: ev.Dele | None = None  # goes out with the next write
        while left or sent or dele is not None:
            batch: list[ev.Retr | ev.Dele] = [] if dele is None else [dele]
            dele = None
            if _window_open(retrs, depth, bool(batch)):
                # Without pipelining a DELE goes alone, and one RETR at a time.
                while left and retrs < depth and (pipelining or not batch):
                    batch.append(ev.Retr(next(rest)))
                    left -= 1
                    retrs += 1
            if batch:
                yield from self._send(*batch)
                sent.extend(batch)
            command = sent.popleft()
            try:
                if isinstance(command, ev.Dele):
                    yield from self._status("DELE")
                    self._marked.add(command.msg)
                    continue
                retrs -= 1
                yield from self._status("RETR")
            except Pop3Error:
                yield from self._skip_answers(sent)
                raise
            msg = command.msg
            size = sizes.get(msg, 0)
            yield from self._chunks(msg, size, self._check_announced(msg, size))
            yield Chunk(b"")
            if delete:
                dele = ev.Dele(msg)

    def _skip_answers(self, commands: Iterable[ev.Command]) -> Generator[Instruction, None, None]:
        """Read and drop the answers to ``commands`` (already sent), bodies up to their limit."""
        for command in commands:
            event = yield from self._event()
            if isinstance(event, ev.Ok) and isinstance(command, ev.Retr | ev.Top):
                # Dropped as it arrives, in no memory, yet not for ever.
                size = self._sizes.get(command.msg, 0)
                yield from self._chunks(command.msg, size, self.body_limit(size), keep=False)
            elif isinstance(event, ev.Ok) and isinstance(command, ev.Dele):
                # A pipelined DELE the server took: it is marked, whatever failed before it,
                # so that a connection lost later still reports it as not deleted.
                self._marked.add(command.msg)

    def dele(self, msg: int) -> Generator[Instruction, None, str]:
        """``DELE msg``: mark for deletion at QUIT."""
        text = yield from self._simple(ev.Dele(msg), "DELE")
        self._marked.add(msg)
        return text

    def rset(self) -> Generator[Instruction, None, str]:
        """``RSET``: unmark everything."""
        text = yield from self._simple(ev.Rset(), "RSET")
        self._marked.clear()
        return text

    def noop(self) -> Generator[Instruction, None, str]:
        """``NOOP``."""
        return (yield from self._simple(ev.Noop(), "NOOP"))

    def utf8(self) -> Generator[Instruction, None, str]:
        """``UTF8`` (RFC 6856)."""
        return (yield from self._simple(ev.Utf8(), "UTF8"))

    def quit(self) -> Generator[Instruction, None, str]:
        """``QUIT``: in TRANSACTION this commits the deletions (RFC 1939 section 6).

        Raises ``Pop3Error`` if the server could not remove every message.
        """
        state = self.connection.our_state
        if state in (State.CLOSED, State.ERROR):
            return ""
        try:
            return (yield from self._simple(ev.Quit(), "QUIT"))
        except RemoteProtocolError as exc:
            # Before login QUIT only says goodbye: a server that already hung
            # up (Dovecot does after -ERR [IN-USE]) loses nothing.
            if state is State.AUTHORIZATION and exc.reason in ("closed", "truncated"):
                return ""
            raise

    @property
    def marked(self) -> frozenset[int]:
        """Messages the server has marked for deletion (``+OK`` to DELE, no RSET since).

        They are deleted only when QUIT is answered ``+OK`` (RFC 1939 section 6).
        """
        return frozenset(self._marked)

    def raise_if_marks_lost(self, cause: BaseException | None) -> None:
        """Raise ``ConnectionError`` if messages are marked: for a binding closing without QUIT.

        A binding whose connection became unusable (``cause``) calls this when
        its user leaves the session normally: the marked messages were not
        deleted, and the user must hear it rather than believe they were.
        """
        if self._marked:
            raise ConnectionError(
                f"{len(self._marked)} message(s) marked for deletion were not deleted: "
                "the connection became unusable before QUIT"
            ) from cause

    @property
    def quit_commits(self) -> bool:
        """Whether QUIT would commit deletions now (the session is in TRANSACTION)."""
        return self.connection.our_state is State.TRANSACTION
