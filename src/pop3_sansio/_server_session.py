"""The server's session semantics, written once for every binding.

A ``ServerSession`` answers what can be answered from the maildrop snapshot
(STAT, LIST, UIDL, DELE, RSET, NOOP, CAPA...) by itself, and asks the binding,
through *requests*, for what needs the outside world: checking credentials,
opening and locking the maildrop, reading a message, committing deletions,
starting TLS, closing. The binding performs each request and calls the
matching answer method. No I/O, no clock, no randomness of its own.

RFC 1939 sections 4-8 (states, commands, UPDATE), RFC 2449 (CAPA, codes),
RFC 5034 (AUTH), RFC 2595 (STLS).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

from . import _events as ev
from ._apop import check_apop_digest
from ._base64 import b64encode
from ._capabilities import Capabilities
from ._codes import AUTH, IN_USE, SYS_TEMP, ResponseCode
from ._commands import COMMANDS
from ._connection import ServerConnection
from ._errors import LocalProtocolError, RemoteProtocolError
from ._instructions import StartTls
from ._multiline import TopFilter
from ._sasl import (
    CheckPassword,
    CheckToken,
    Failed,
    LookupScram,
    LookupSecret,
    ScramServer,
    SendChallenge,
    ServerMechanism,
    Step,
    Succeeded,
    server_mechanism,
)
from ._scram import ScramCredentials, hash_key, hmac_digest
from ._serverlog import LoginAttempt, LoginResult, trace_command, trace_response, trace_status
from ._state import NEED_DATA, PAUSED, Sentinel, State
from ._storage import MessageInfo

__all__ = [
    "CloseConnection",
    "CommitDeletions",
    "OpenMaildrop",
    "ReadMessage",
    "Request",
    "ServerSession",
    "StartTls",
]

PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})
"""Mechanisms that reveal the password to anyone who can read the connection."""

_NEEDS_RANDOM = frozenset({"CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"})


# --- requests: what the binding must do ------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenMaildrop:
    """Open and exclusively lock ``username``'s maildrop (RFC 1939 section 4).

    Answer ``maildrop_opened(messages)``, ``maildrop_locked()`` when another
    session holds the lock, or ``maildrop_failed()``. The binding releases the
    lock when the connection ends, however it ends.
    """

    username: str


@dataclass(frozen=True, slots=True)
class ReadMessage:
    """Read message ``msg`` (``uid``) and stream it with ``message_data``.

    Call ``message_data(chunk)`` for each piece while it returns ``True``, then
    ``message_end()``; or ``message_failed()`` if it cannot be read. ``lines`` is
    set for TOP: the session cuts the message itself, and ``message_data``
    returns ``False`` once it has what it needs.
    """

    msg: int
    uid: str
    lines: int | None = None


@dataclass(frozen=True, slots=True)
class CommitDeletions:
    """QUIT in TRANSACTION: remove these messages for good (RFC 1939 section 6).

    ``messages`` are message numbers, ``uids`` their unique ids, in the same
    order. Answer ``deletions_committed(failed)`` with the numbers that could
    not be removed. This is the only request that deletes anything.
    """

    messages: tuple[int, ...]
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Write ``data_to_send()`` and close the connection; nothing more will happen.

    ``reason``: ``"quit"``, ``"client-closed"``, ``"protocol-error"``,
    ``"too-many-failures"``, ``"read-error"``, ``"refused"``.
    """

    reason: str


Request: TypeAlias = (
    CheckPassword
    | LookupSecret
    | CheckToken
    | OpenMaildrop
    | ReadMessage
    | CommitDeletions
    | StartTls
    | CloseConnection
)
"""What a ``ServerSession`` needs from the outside world; ``SessionDriver`` answers each."""

_R = TypeVar("_R", bound=Request)


class ServerSession:
    """One POP3 server session over a ``ServerConnection``.

    Drive it like this:

        session = ServerSession(...)
        write(session.data_to_send())            # the greeting
        while True:
            request = session.next_request()
            write(session.data_to_send())
            if request is NEED_DATA: feed session.receive_data(await read())
            elif request is PAUSED: continue (only with max_output, see below)
            else: perform the request and call its answer method

    ``allow_plaintext`` permits USER/PASS, PLAIN and LOGIN without TLS; the
    default refuses them (RFC 5034 section 4, RFC 2595 section 2.3), and a
    binding usually allows them only for loopback peers. ``mechanisms`` are the
    SASL mechanisms offered; CRAM-MD5 and SCRAM need ``random_bytes`` (a
    function returning that many random octets) and a backend that can look up
    the plain secret, as does APOP, enabled by passing ``apop_timestamp``.

    ``max_output`` bounds what pipelined commands may queue (RFC 2449
    PIPELINING lets a client send many commands without reading the answers):
    once that many octets wait in ``data_to_send()``, ``next_request`` returns
    ``PAUSED`` instead of answering the next buffered command -- write the
    data, then call it again without reading. ``None`` (the default): no
    bound, ``PAUSED`` never comes.

    ``on_login`` is called with a ``LoginAttempt`` when a login attempt is
    decided (wrong credentials at once; right ones once the maildrop is open,
    locked or unavailable). ``on_trace`` is called with a line for each
    command received and each status line sent (``trace_command``,
    ``trace_response``: secrets hidden, no message bodies); leave it ``None``
    unless a trace is wanted, the lines cost time to make.

    ``retrieved``, ``retrieved_octets``, ``topped`` and ``removed`` count the
    messages sent whole by RETR (and their listed octets), the TOP answers
    completed, and the messages QUIT removed.
    """

    def __init__(
        self,
        *,
        greeting: str = "POP3 server ready",
        hostname: str = "localhost",
        tls: bool = False,
        starttls: bool = False,
        allow_plaintext: bool = False,
        user_pass: bool = True,
        mechanisms: Sequence[str] = ("PLAIN", "LOGIN"),
        apop_timestamp: str | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
        scram_iterations: int = 4096,
        max_failed_logins: int = 3,
        implementation: str | None = None,
        login_delay: int | None = None,
        expire: int | None = None,
        refuse: str | None = None,
        connection: ServerConnection | None = None,
        max_output: int | None = None,
        on_login: Callable[[LoginAttempt], None] | None = None,
        on_trace: Callable[[str], None] | None = None,
    ) -> None:
        self.connection = connection or ServerConnection(tls=tls)
        self._on_login = on_login
        self._on_trace = on_trace
        self._method = ""  # the login method being tried: USER, APOP or a SASL mechanism
        self._attempted: str | None = None  # the user name it was tried for
        self.retrieved = 0
        self.retrieved_octets = 0
        self.topped = 0
        self.removed = 0
        self._hostname = hostname
        self._starttls = starttls
        self.allow_plaintext = allow_plaintext
        self._user_pass = user_pass
        self._mechanisms = tuple(m.upper() for m in mechanisms)
        for mech in self._mechanisms:
            server_mechanism(mech, nonce="x", challenge=b"<x@y>")  # validates the name
            if mech in _NEEDS_RANDOM and random_bytes is None:
                raise LocalProtocolError(f"{mech} needs random_bytes", reason="bad-argument")
        self._random = random_bytes
        self._scram_iterations = scram_iterations
        # SCRAM salts are HMAC(key, user name) for known and unknown users
        # alike, so the exchange does not tell which user names exist.
        self._scram_key = random_bytes(32) if random_bytes is not None else b""
        self._max_failures = max_failed_logins
        self._implementation = implementation
        self._login_delay = login_delay
        self._expire = expire
        self._out: list[bytes] = []
        self._out_size = 0  # octets in _out
        self._max_output = max_output
        self._pending: Request | None = None  # handed to the binding, awaiting its answer
        self._queued: Request | None = None  # made by an answer, for the next next_request()
        self._failures = 0
        self._user: str | None = None  # from USER, for PASS
        self._username: str | None = None  # authenticated, awaiting or holding the maildrop
        self._apop_timestamp = apop_timestamp
        self._apop_digest: str | None = None
        self._mech: ServerMechanism | None = None
        self._messages: tuple[MessageInfo, ...] = ()
        self._deleted: set[int] = set()
        self._body_started = False
        self._top: TopFilter | None = None
        self._failure: RemoteProtocolError | None = None
        if refuse is not None:
            # Turning the client away (e.g. too many sessions): a -ERR
            # greeting, then the close (RFC 1939 section 4 allows no more).
            self._send(ev.Err(refuse, SYS_TEMP))
            self._queued = CloseConnection("refused")
        else:
            self._send(ev.Greeting(greeting, timestamp=apop_timestamp))

    # --- plumbing ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes queued for the client since the last call (``b""`` if none)."""
        out = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` when the client closed.

        A client that breaks the protocol (e.g. floods more than the buffer
        cap) is not an exception here: ``next_request`` then answers
        ``-ERR`` where it still can and returns ``CloseConnection``.
        """
        if self._failure is None:
            try:
                self.connection.receive_data(data)
            except RemoteProtocolError as exc:
                self._failure = exc

    def _send(self, event: ev.Response) -> None:
        data = self.connection.send(event)
        self._out.append(data)
        self._out_size += len(data)
        if self._on_trace is not None and (line := trace_response(event, data)) is not None:
            self._on_trace(line)

    def _ok(self, text: str = "") -> None:
        self._send(ev.Ok(text))

    def _err(self, text: str, code: ResponseCode | None = None) -> None:
        self._send(ev.Err(text, code))

    def _multiline(self, text: str, body: bytes) -> None:
        self._ok(text)
        if body:
            self._send(ev.Data(body))
        self._send(ev.EndOfResponse())

    def _answer(self, kind: type[_R]) -> _R:
        pending = self._pending
        if not isinstance(pending, kind):
            raise LocalProtocolError(
                f"no {kind.__name__} request is waiting for this answer (waiting: {pending!r})",
                reason="no-request",
            )
        self._pending = None
        return pending

    @property
    def state(self) -> State:
        """The session state (``ServerConnection.our_state``)."""
        return self.connection.our_state

    @property
    def username(self) -> str | None:
        """The authenticated user, once the maildrop is open."""
        return self._username if self.state is not State.AUTHORIZATION else None

    @property
    def failed_logins(self) -> int:
        """How many authentication attempts have failed in this session."""
        return self._failures

    @property
    def messages(self) -> tuple[MessageInfo, ...]:
        """The maildrop snapshot taken when it was opened."""
        return self._messages

    @property
    def deleted(self) -> frozenset[int]:
        """Message numbers marked for deletion (committed only by QUIT)."""
        return frozenset(self._deleted)

    # --- the loop ------------------------------------------------------------------

    def next_request(self) -> Request | Literal[Sentinel.NEED_DATA, Sentinel.PAUSED]:
        """Answer commands until one needs the binding; return that request or ``NEED_DATA``.

        With ``max_output``, ``PAUSED`` once that many octets are queued: write
        ``data_to_send()`` and call again (the next command is already received).

        Raises ``LocalProtocolError`` if a request is still unanswered.
        """
        if self._pending is not None:
            if isinstance(self._pending, CloseConnection):
                return self._pending
            raise LocalProtocolError(
                f"answer {type(self._pending).__name__} first", reason="request-pending"
            )
        request = self._queued or self._answer_commands()
        self._queued = None
        if request is not NEED_DATA and request is not PAUSED:
            self._pending = request
        return request

    def _answer_commands(self) -> Request | Literal[Sentinel.NEED_DATA, Sentinel.PAUSED]:
        conn = self.connection
        while True:
            if self._max_output is not None and self._out_size >= self._max_output:
                # A client that pipelines commands without reading the answers
                # (LIST or UIDL of a big maildrop, again and again) would make
                # us queue answers without end: let the binding write them
                # first, so that the peer's TCP window holds us back.
                return PAUSED
            try:
                if self._failure is not None:
                    raise self._failure
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self._failure = exc
                # In the middle of a multi-line answer no -ERR can be sent: just close.
                with contextlib.suppress(LocalProtocolError):
                    data = conn.send_failure(exc.message)
                    self._out.append(data)
                    if self._on_trace is not None:
                        self._on_trace(trace_status(data))
                return self._close("protocol-error")
            if event is NEED_DATA:
                return NEED_DATA
            if event is PAUSED:  # pragma: no cover - every command is answered first
                raise AssertionError("the session answers every command before reading on")
            if isinstance(event, ev.ConnectionClosed):
                # RFC 1939 section 6: no UPDATE without QUIT -- nothing is deleted.
                return self._close("client-closed")
            request = self._dispatch(event)
            if request is not None:
                return request

    def _close(self, reason: str) -> CloseConnection:
        return CloseConnection(reason)

    def _dispatch(self, event: ev.Event) -> Request | None:
        if self._on_trace is not None:
            self._on_trace(trace_command(event))
        if isinstance(event, ev.UnknownCommand):
            return self._unknown(event)
        if isinstance(event, ev.SaslResponse | ev.SaslCancel):
            return self._sasl_line(event)
        handler = _HANDLERS[type(event)]
        return handler(self, event)

    def _unknown(self, event: ev.UnknownCommand) -> Request | None:
        if self._mech is not None:
            # An undecodable SASL line fails the exchange (RFC 5034 section 4).
            self._mech = None
            return self._auth_failed("malformed SASL response")
        text = {
            "unknown": "unknown command",
            "syntax": "syntax error",
            "wrong-state": "command not valid in this state",
            "tls-active": "TLS is already active",
        }[event.reason]
        keyword = event.keyword
        # The keyword is the client's: echo it only when it is plain printable
        # ASCII (a TLS ClientHello sent to a plaintext port is not).
        if keyword and keyword.isascii() and keyword.isprintable() and len(keyword) <= 40:
            text = f"{text}: {keyword}"
        self._err(text)
        return None

    # --- AUTHORIZATION -------------------------------------------------------------

    def _plaintext_ok(self) -> bool:
        return self.allow_plaintext or self.connection.tls_active

    def capabilities(self) -> Capabilities:
        """What CAPA announces now (RFC 2449 section 5).

        Capabilities of the AUTHORIZATION state are announced in both states,
        as RFC 2449 section 5 and RFC 5034 section 3 require.
        """
        tags: dict[str, tuple[str, ...]] = {
            "TOP": (),
            "UIDL": (),
            "RESP-CODES": (),
            "AUTH-RESP-CODE": (),
            "PIPELINING": (),
            "UTF8": (),
        }
        if self._user_pass and self._plaintext_ok():
            tags["USER"] = ()
        mechanisms = self._offered_mechanisms()
        if mechanisms:
            tags["SASL"] = mechanisms
        if self._starttls and not self.connection.tls_active:
            tags["STLS"] = ()
        if self._login_delay is not None:
            tags["LOGIN-DELAY"] = (str(self._login_delay),)
        if self._expire is not None:
            tags["EXPIRE"] = (str(self._expire),)
        if self._implementation:
            tags["IMPLEMENTATION"] = tuple(self._implementation.split())
        return Capabilities(tags)

    def _offered_mechanisms(self) -> tuple[str, ...]:
        plaintext = self._plaintext_ok()
        return tuple(m for m in self._mechanisms if plaintext or m not in PLAINTEXT_MECHANISMS)

    def _capa(self, _: ev.Capa) -> None:
        self._multiline("capability list follows", self.capabilities().encode())

    def _stls(self, _: ev.Stls) -> Request | None:
        if not self._starttls:
            self._err("STLS not available")
            return None
        self._ok("begin TLS negotiation")
        try:
            self.connection.start_tls()
        except RemoteProtocolError:
            # Commands pipelined behind STLS in plaintext must never run
            # inside TLS (CVE-2011-0411): drop the connection.
            return self._close("protocol-error")
        return StartTls()

    def tls_established(self) -> None:
        """Answer ``StartTls``: the handshake is done; earlier state is forgotten (RFC 2595 §4)."""
        self._answer(StartTls)
        self._user = None

    def _utf8(self, _: ev.Utf8) -> None:
        self._ok("UTF8 enabled")

    def _user_cmd(self, event: ev.User) -> None:
        self._user = None
        if not self._user_pass:
            self._err("USER/PASS not supported, use AUTH")
        elif not self._plaintext_ok():
            self._err("plaintext authentication disallowed without TLS", AUTH)
        else:
            # Always +OK: -ERR would tell which names exist (RFC 1939 section 13).
            self._user = event.name
            self._ok("send PASS")

    def _pass(self, event: ev.Pass) -> Request:
        assert self._user is not None  # the connection only passes PASS right after USER
        user, self._user = self._user, None
        self._mech = None
        self._method, self._attempted = "USER", user
        return CheckPassword(user, event.password, "")

    def _apop(self, event: ev.Apop) -> Request | None:
        if self._apop_timestamp is None:
            self._err("APOP not supported")
            return None
        self._apop_digest = event.digest
        self._method, self._attempted = "APOP", event.name
        return LookupSecret(event.name)

    def _auth(self, event: ev.Auth) -> Request | None:
        offered = self._offered_mechanisms()
        if event.mechanism is None:
            body = "".join(f"{m}\r\n" for m in offered).encode("ascii")
            self._multiline("SASL mechanisms follow", body)
            return None
        name = event.mechanism
        if name not in offered:
            if name in self._mechanisms:
                self._err("plaintext authentication disallowed without TLS", AUTH)
            else:
                self._err(f"unsupported mechanism {name}")
            return None
        mech: ServerMechanism
        if name.startswith("SCRAM-"):
            nonce = self._nonce()
            assert nonce is not None  # SCRAM is refused at construction without random_bytes
            mech = ScramServer(
                name[len("SCRAM-") :],
                nonce,
                mock_key=self._scram_key,
                mock_iterations=self._scram_iterations,
            )
        else:
            mech = server_mechanism(name, nonce=self._nonce(), challenge=self._cram_challenge(name))
        if event.initial_response is not None and not mech.allows_initial_response:
            # RFC 5034 section 4: an initial response to a server-first mechanism.
            self._err(f"{name} takes no initial response")
            return None
        self._mech = mech
        self._method, self._attempted = name, None
        return self._step(mech.start(event.initial_response))

    def _nonce(self) -> str | None:
        if self._random is None:
            return None
        return b64encode(self._random(18)).decode("ascii")

    def _cram_challenge(self, name: str) -> bytes | None:
        if name != "CRAM-MD5" or self._random is None:
            return None
        return f"<{self._random(8).hex()}@{self._hostname}>".encode("ascii")

    def _sasl_line(self, event: ev.SaslResponse | ev.SaslCancel) -> Request | None:
        mech = self._mech
        assert mech is not None  # the connection reads SASL lines only after a challenge
        if isinstance(event, ev.SaslCancel):
            # RFC 5034 section 4: "*" cancels and MUST be answered -ERR.
            self._mech = None
            self._err("authentication cancelled")
            return None
        return self._step(mech.receive(event.data))

    def _step(self, step: Step) -> Request | None:
        """Carry out what the SASL mechanism asks for next."""
        if isinstance(step, SendChallenge):
            self._send(ev.SaslChallenge(step.data))
            return None
        if isinstance(step, CheckPassword | LookupSecret | CheckToken):
            self._attempted = step.username
            return step
        if isinstance(step, LookupScram):
            # SCRAM credentials are derived from the plain secret here, with a
            # fresh salt, so a backend only has to look the secret up.
            self._attempted = step.username
            return LookupSecret(step.username)
        self._mech = None
        if isinstance(step, Failed):
            return self._auth_failed("authentication failed")
        assert isinstance(step, Succeeded)
        if step.authzid and step.authzid != step.username:
            # Acting as another user (proxy authorization) is not supported.
            return self._auth_failed("authorization identity refused")
        return self._authenticated(step.username)

    def password_checked(self, ok: bool) -> None:
        """Answer ``CheckPassword``: whether the password is right for the user."""
        request = self._answer(CheckPassword)
        if self._mech is not None:
            self._queued = self._step(self._mech.password_checked(ok))
        elif ok:
            self._queued = self._authenticated(request.username)
        else:
            self._queued = self._auth_failed("authentication failed")

    def token_checked(self, ok: bool) -> None:
        """Answer ``CheckToken``: whether the OAuth token is valid for the user."""
        self._answer(CheckToken)
        assert self._mech is not None
        self._queued = self._step(self._mech.token_checked(ok))

    def secret_found(self, secret: str | None) -> None:
        """Answer ``LookupSecret`` with the user's plain secret, or ``None`` if there is none."""
        request = self._answer(LookupSecret)
        mech = self._mech
        if mech is None:  # APOP
            digest, self._apop_digest = self._apop_digest, None
            assert digest is not None and self._apop_timestamp is not None
            if secret is not None and check_apop_digest(self._apop_timestamp, secret, digest):
                self._queued = self._authenticated(request.username)
            else:
                self._queued = self._auth_failed("authentication failed")
        elif mech.name.startswith("SCRAM-"):
            creds = None
            if secret is not None:
                assert self._random is not None
                hash_name = hash_key(mech.name[len("SCRAM-") :])
                salt = hmac_digest(hash_name, self._scram_key, request.username.encode())
                creds = ScramCredentials.from_password(
                    hash_name, secret, salt[:16], self._scram_iterations
                )
            self._queued = self._step(mech.scram_found(creds))
        else:
            self._queued = self._step(mech.secret_found(secret))

    def _login(self, result: LoginResult) -> None:
        if self._on_login is not None:
            attempt = LoginAttempt(self._method, self._attempted, result, self._failures)
            self._on_login(attempt)

    def _auth_failed(self, text: str) -> Request | None:
        self._failures += 1
        self._login("failed")
        self._err(text, AUTH)
        if self._failures >= self._max_failures:
            return self._close("too-many-failures")
        return None

    def _authenticated(self, username: str) -> Request:
        self._username = self._attempted = username
        return OpenMaildrop(username)

    def maildrop_opened(self, messages: Sequence[MessageInfo]) -> None:
        """Answer ``OpenMaildrop``: the lock is held and this is the snapshot."""
        self._answer(OpenMaildrop)
        self._messages = tuple(messages)
        self._deleted.clear()
        self._login("ok")
        count, size = self._drop_listing()
        self._ok(f"maildrop has {count} messages ({size} octets)")

    def maildrop_locked(self) -> None:
        """Answer ``OpenMaildrop``: another session holds the lock (RFC 2449 ``[IN-USE]``)."""
        self._answer(OpenMaildrop)
        self._username = None
        self._login("in-use")
        self._err("maildrop already locked by another session", IN_USE)

    def maildrop_failed(self, text: str = "unable to open maildrop") -> None:
        """Answer ``OpenMaildrop``: it could not be opened (``[SYS/TEMP]``)."""
        self._answer(OpenMaildrop)
        self._username = None
        self._login("unavailable")
        self._err(text, SYS_TEMP)

    # --- TRANSACTION ---------------------------------------------------------------

    def _drop_listing(self) -> tuple[int, int]:
        live = [m.size for i, m in enumerate(self._messages, 1) if i not in self._deleted]
        return len(live), sum(live)

    def _lookup(self, msg: int) -> MessageInfo | None:
        """The message, or ``None`` after answering -ERR for a bad or deleted number."""
        if msg > len(self._messages):
            self._err(f"no such message, only {len(self._messages)} messages in maildrop")
            return None
        if msg in self._deleted:
            # RFC 1939 section 5: a deleted message may not be referred to.
            self._err(f"message {msg} already deleted")
            return None
        return self._messages[msg - 1]

    def _live(self) -> list[tuple[int, MessageInfo]]:
        return [(i, m) for i, m in enumerate(self._messages, 1) if i not in self._deleted]

    def _stat(self, _: ev.Stat) -> None:
        count, size = self._drop_listing()
        self._ok(f"{count} {size}")

    def _list(self, event: ev.List) -> None:
        if event.msg is None:
            count, size = self._drop_listing()
            body = "".join(f"{i} {m.size}\r\n" for i, m in self._live())
            self._multiline(f"{count} messages ({size} octets)", body.encode("ascii"))
        elif (info := self._lookup(event.msg)) is not None:
            self._ok(f"{event.msg} {info.size}")

    def _uidl(self, event: ev.Uidl) -> None:
        if event.msg is None:
            body = "".join(f"{i} {m.uid}\r\n" for i, m in self._live())
            self._multiline("unique-id listing follows", body.encode("ascii"))
        elif (info := self._lookup(event.msg)) is not None:
            self._ok(f"{event.msg} {info.uid}")

    def _retr(self, event: ev.Retr | ev.Top) -> Request | None:
        info = self._lookup(event.msg)
        if info is None:
            return None
        lines = event.lines if isinstance(event, ev.Top) else None
        self._top = None if lines is None else TopFilter(lines)
        self._body_started = False
        return ReadMessage(event.msg, info.uid, lines)

    def message_data(self, chunk: bytes) -> bool:
        """Answer ``ReadMessage`` with the next piece of the message (LF or CRLF line ends).

        Returns whether more is wanted: ``False`` once TOP has all it needs.
        """
        request = self._pending
        if not isinstance(request, ReadMessage):
            raise LocalProtocolError("no ReadMessage request is waiting", reason="no-request")
        self._start_body(request)
        if self._top is not None:
            chunk = self._top.feed(chunk)
        if chunk:
            self._send(ev.Data(chunk))
        return self._top is None or not self._top.done

    def _start_body(self, request: ReadMessage) -> None:
        if not self._body_started:
            self._body_started = True
            size = self._messages[request.msg - 1].size
            self._ok(f"{size} octets" if request.lines is None else "top of message follows")

    def message_end(self) -> None:
        """Answer ``ReadMessage``: the whole message (or all TOP needs) was given."""
        request = self._answer(ReadMessage)
        self._start_body(request)
        self._send(ev.EndOfResponse())
        self._top = None
        if request.lines is None:
            self.retrieved += 1
            self.retrieved_octets += self._messages[request.msg - 1].size
        else:
            self.topped += 1

    def message_failed(self) -> None:
        """Answer ``ReadMessage``: the message could not be read.

        Before any data this is ``-ERR [SYS/TEMP]``; after some data the answer
        cannot be taken back, so the session asks to close (``read-error``): the
        client sees a truncated answer, never a wrong message.
        """
        self._answer(ReadMessage)
        self._top = None
        if self._body_started:
            self._queued = self._close("read-error")
        else:
            self._err("message could not be read", SYS_TEMP)

    def _dele(self, event: ev.Dele) -> None:
        if self._lookup(event.msg) is not None:
            # RFC 1939 section 5: DELE only marks; UPDATE removes.
            self._deleted.add(event.msg)
            self._ok(f"message {event.msg} deleted")

    def _noop(self, _: ev.Noop) -> None:
        self._ok()

    def _rset(self, _: ev.Rset) -> None:
        self._deleted.clear()
        count, size = self._drop_listing()
        self._ok(f"maildrop has {count} messages ({size} octets)")

    def _quit(self, _: ev.Quit) -> Request:
        if self.connection.our_state is not State.UPDATE or not self._deleted:
            # From AUTHORIZATION no UPDATE happens (RFC 1939 section 6).
            self._ok("POP3 server signing off")
            return self._close("quit")
        marked = tuple(sorted(self._deleted))
        uids = tuple(self._messages[i - 1].uid for i in marked)
        return CommitDeletions(marked, uids)

    def deletions_committed(self, failed: Sequence[int] = ()) -> None:
        """Answer ``CommitDeletions`` with the message numbers that could not be removed.

        All removed: ``+OK``. Otherwise RFC 1939 section 6's ``-ERR some deleted
        messages not removed``, with ``[SYS/TEMP]`` and the numbers that remain.
        """
        request = self._answer(CommitDeletions)
        left = sorted(set(failed) & set(request.messages))
        self.removed = len(request.messages) - len(left)
        if left:
            remain = " ".join(map(str, left))
            self._err(f"some deleted messages not removed: {remain}", SYS_TEMP)
        else:
            self._ok(f"POP3 server signing off ({len(request.messages)} messages deleted)")
        self._queued = self._close("quit")


_HANDLERS: dict[type, Callable[[ServerSession, Any], Request | None]] = {
    spec.event: getattr(ServerSession, spec.handler)
    for spec in COMMANDS.values()
    if spec.handler is not None
}
"""Command event -> the ``ServerSession`` method that answers it, from the command table."""
