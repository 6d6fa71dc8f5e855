"""SASL mechanisms (RFC 4422) for POP3 AUTH (RFC 5034), client and server roles, with no I/O.

Mechanisms take and return *decoded* challenges and responses; the POP3 connection
does the base64 and the ``+ `` / ``*`` / ``=`` framing of RFC 5034 section 4.
Randomness (nonces, challenges, salts) is always supplied by the caller.
"""

from __future__ import annotations

import hmac
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from ._errors import LocalProtocolError, RemoteProtocolError
from ._saslprep import saslprep
from ._scram import (
    SCRAM_HASHES,
    ScramCredentials,
    b64decode,
    b64encode,
    client_key,
    escape_saslname,
    hash_key,
    hmac_digest,
    is_nonce,
    parse_posit_number,
    salted_password,
    server_key,
    stored_key,
    unescape_saslname,
    xor,
)

__all__ = [
    "SUPPORTED_CLIENT_MECHANISMS",
    "SUPPORTED_SERVER_MECHANISMS",
    "TOKEN_MECHANISMS",
    "CheckPassword",
    "CheckToken",
    "ClientMechanism",
    "CramMD5Client",
    "CramMD5Server",
    "Failed",
    "LoginClient",
    "LoginServer",
    "LookupScram",
    "LookupSecret",
    "OAuthBearerClient",
    "OAuthBearerServer",
    "PlainClient",
    "PlainServer",
    "ScramClient",
    "ScramCredentials",
    "ScramSHA1Client",
    "ScramSHA1Server",
    "ScramSHA256Client",
    "ScramSHA256Server",
    "ScramServer",
    "SendChallenge",
    "ServerMechanism",
    "Step",
    "Succeeded",
    "XOAuth2Client",
    "XOAuth2Server",
    "client_mechanism",
    "saslprep",
    "server_mechanism",
]

SUPPORTED_CLIENT_MECHANISMS: tuple[str, ...] = (
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "CRAM-MD5",
    "PLAIN",
    "LOGIN",
)
"""The password mechanisms ``client_mechanism`` builds, strongest first."""
TOKEN_MECHANISMS: tuple[str, ...] = ("OAUTHBEARER", "XOAUTH2")
"""The bearer-token mechanisms (RFC 7628, Google's XOAUTH2): checked with ``CheckToken``."""
SUPPORTED_SERVER_MECHANISMS: tuple[str, ...] = SUPPORTED_CLIENT_MECHANISMS + TOKEN_MECHANISMS
"""The mechanisms ``server_mechanism`` builds: the password ones and the token ones."""

DEFAULT_MIN_ITERATIONS = 4096
DEFAULT_MAX_ITERATIONS = 10_000_000

# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 7628 section 3.1: the Bearer scheme name is case-insensitive (RFC 7235 section 2.1).
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
# RFC 7628 section 3.1: key = 1*(ALPHA); value = *(VCHAR / SP / HTAB / CR / LF).
_KVPAIR = re.compile(r"([A-Za-z]+)=([\x21-\x7e \t\r\n]*)")
# RFC 7628 section 3.1 / RFC 5801 section 4: gs2-header without channel binding.
_OAUTH_GS2 = re.compile(r"[ny],(?:a=([^,]*))?,")
_SCRAM_GS2 = re.compile(r"(n|y|p=[^,]*),(?:a=([^,]*))?,(.*)", re.DOTALL)
_CRAM_DIGEST = re.compile(r"[0-9a-fA-F]{32}")
_PORT = re.compile(r"[1-9][0-9]{0,4}")


def _bad(mechanism: str, message: str, reason: str = "sasl-bad-challenge") -> RemoteProtocolError:
    return RemoteProtocolError(f"{mechanism}: {message}", reason=reason)


def _misuse(message: str, reason: str = "sasl-bad-argument") -> LocalProtocolError:
    return LocalProtocolError(message, reason=reason)


def _require(value: str, what: str, *, forbidden: str = "\x00") -> str:
    """Return *value* if non-empty and free of *forbidden* characters."""
    if not value:
        raise _misuse(f"{what} must not be empty")
    if any(ch in value for ch in forbidden):
        raise _misuse(f"{what} must not contain {forbidden!r}")
    return value


def _parse_error_json(challenge: bytes) -> dict[str, object]:
    """Decode an OAuth error challenge (RFC 7628 section 3.2.2); non-JSON kept as "raw"."""
    try:
        value = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value
    return {"raw": challenge.decode("utf-8", "replace")}


# --------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------


class ClientMechanism(ABC):
    """One client SASL exchange; make a new object for every AUTH attempt.

    ``initial_response()`` may be called once, before ``respond()``; a driver that does
    not send it answers the server's empty challenge with ``respond(b"")`` instead.
    ``respond()`` raises ``RemoteProtocolError`` for a malformed, forged or unexpected
    challenge, after which the object is dead and every call raises
    ``LocalProtocolError``.
    """

    name: str

    def __init__(self) -> None:
        self._called = False
        self._broken = False

    def initial_response(self) -> bytes | None:
        """Return the initial response (``None``: the mechanism has none)."""
        if self._called or self._broken:
            raise _misuse(
                f"{self.name}: initial_response() must be the first call", "sasl-out-of-turn"
            )
        self._called = True
        return self._initial()

    def respond(self, challenge: bytes) -> bytes:
        """Return the response to the server's decoded *challenge*."""
        if self._broken:
            raise _misuse(f"{self.name}: the exchange already failed", "sasl-out-of-turn")
        self._called = True
        try:
            return self._respond(bytes(challenge))
        except RemoteProtocolError:
            self._broken = True
            raise

    @property
    @abstractmethod
    def is_complete(self) -> bool:
        """True once the client can accept the server's +OK."""

    @abstractmethod
    def _initial(self) -> bytes | None: ...

    @abstractmethod
    def _respond(self, challenge: bytes) -> bytes: ...

    def _unexpected(self) -> RemoteProtocolError:
        return _bad(self.name, "unexpected challenge", "sasl-unexpected-challenge")


class _ClientFirst(ClientMechanism):
    """A mechanism whose first message comes from the client (RFC 4422 section 3.3).

    Phases: 0 nothing produced, 1 initial response produced (maybe not sent),
    2 first message sent in reply to an empty challenge, then mechanism-specific.
    """

    def __init__(self) -> None:
        super().__init__()
        self._phase = 0

    @abstractmethod
    def _first_message(self) -> bytes: ...

    def _initial(self) -> bytes:
        self._phase = 1
        return self._first_message()

    def _respond(self, challenge: bytes) -> bytes:
        if self._phase < 2 and not challenge:
            # RFC 5034 section 4: without an initial response the server sends an
            # empty challenge and the client sends its first message in reply.
            self._phase = 2
            return self._first_message()
        if self._phase == 0:
            raise _bad(self.name, "the first challenge must be empty")
        return self._after_first(challenge)

    @abstractmethod
    def _after_first(self, challenge: bytes) -> bytes: ...

    @property
    def is_complete(self) -> bool:
        return self._phase > 0


class PlainClient(_ClientFirst):
    """PLAIN (RFC 4616): sends ``authzid NUL username NUL password`` in UTF-8.

    Raises ``LocalProtocolError`` for an empty username or password or a NUL anywhere.
    """

    name = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        super().__init__()
        _require(username, "username")
        _require(password, "password")
        if "\x00" in authzid:
            raise _misuse("authzid must not contain NUL")
        self._message = f"{authzid}\x00{username}\x00{password}".encode()

    def _first_message(self) -> bytes:
        return self._message

    def _after_first(self, challenge: bytes) -> bytes:
        raise self._unexpected()


class LoginClient(ClientMechanism):
    """LOGIN (draft-murchison-sasl-login): the username, then the password, in reply to
    the server's two challenges, whose text is ignored. No initial response.
    """

    name = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self._answers = (
            _require(username, "username").encode(),
            _require(password, "password").encode(),
        )
        self._sent = 0

    def _initial(self) -> None:
        return None

    def _respond(self, challenge: bytes) -> bytes:
        if self._sent == len(self._answers):
            raise self._unexpected()
        self._sent += 1
        return self._answers[self._sent - 1]

    @property
    def is_complete(self) -> bool:
        return self._sent == len(self._answers)


class CramMD5Client(ClientMechanism):
    """CRAM-MD5 (RFC 2195): answers ``username SP hex(HMAC-MD5(password, challenge))``."""

    name = "CRAM-MD5"

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self._username = _require(username, "username")
        self._password = password.encode()
        self._done = False

    def _initial(self) -> None:
        return None

    def _respond(self, challenge: bytes) -> bytes:
        if self._done:
            raise self._unexpected()
        if not challenge:
            # RFC 2195 section 2: the challenge is a non-empty msg-id string.
            raise _bad(self.name, "empty challenge")
        self._done = True
        digest = hmac.new(self._password, challenge, "md5").hexdigest()
        return f"{self._username} {digest}".encode()

    @property
    def is_complete(self) -> bool:
        return self._done


class _OAuthClient(_ClientFirst):
    """Shared behaviour of XOAUTH2 and OAUTHBEARER: one message, then maybe an error."""

    # RFC 7628 section 3.2.3: the client's reply to the error challenge.
    _error_reply: ClassVar[bytes]

    def __init__(self, token: str) -> None:
        super().__init__()
        if _B64TOKEN.fullmatch(token) is None:
            raise _misuse("token must be a non-empty RFC 6750 b64token")
        self._token = token
        self.error: dict[str, object] | None = None

    def _after_first(self, challenge: bytes) -> bytes:
        if self.error is not None:
            raise self._unexpected()
        self.error = _parse_error_json(challenge)
        return self._error_reply


class XOAuth2Client(_OAuthClient):
    """XOAUTH2 (Google/Microsoft): ``user=U ^A auth=Bearer T ^A ^A``.

    After an error challenge, ``error`` holds its decoded JSON and the reply is empty.
    """

    name = "XOAUTH2"
    _error_reply = b""

    def __init__(self, username: str, token: str) -> None:
        super().__init__(token)
        self._username = _require(username, "username", forbidden="\x00\x01")

    def _first_message(self) -> bytes:
        return f"user={self._username}\x01auth=Bearer {self._token}\x01\x01".encode()


class OAuthBearerClient(_OAuthClient):
    """OAUTHBEARER (RFC 7628 section 3.1) with an optional authzid, host and port.

    After an error challenge, ``error`` holds its decoded JSON and the reply is ``^A``.
    """

    name = "OAUTHBEARER"
    _error_reply = b"\x01"

    def __init__(
        self,
        token: str,
        authzid: str = "",
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(token)
        if "\x00" in authzid or "\x01" in authzid:
            raise _misuse("authzid must not contain NUL or ^A")
        if host is not None and re.fullmatch(r"[\x21-\x7e]+", host) is None:
            raise _misuse("host must be non-empty printable ASCII")
        if port is not None and not 0 < port < 65536:
            raise _misuse("port must be in 1..65535")
        # RFC 5801 section 4: the authzid in a gs2-header is a saslname.
        header = f"n,a={escape_saslname(authzid)}," if authzid else "n,,"
        pairs = "" if host is None else f"host={host}\x01"
        pairs += "" if port is None else f"port={port}\x01"
        self._message = f"{header}\x01{pairs}auth=Bearer {token}\x01\x01".encode()

    def _first_message(self) -> bytes:
        return self._message


class ScramClient(_ClientFirst):
    """SCRAM (RFC 5802; RFC 7677 for SHA-256) without channel binding (gs2 ``n``).

    *nonce* is the client nonce (printable ASCII without ","), chosen randomly by the
    caller. The server's iteration count must lie in [min_iterations, max_iterations].
    ``is_complete`` becomes true only once the server signature has been verified;
    ``respond`` then returns ``b""`` (RFC 5034 section 4 carries server-final in a
    challenge). Raises ``LocalProtocolError`` for bad arguments (including a username or
    password that fails SASLprep).
    """

    def __init__(
        self,
        hash_name: str,
        username: str,
        password: str,
        nonce: str,
        *,
        authzid: str = "",
        min_iterations: int = DEFAULT_MIN_ITERATIONS,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
    ) -> None:
        super().__init__()
        self._hash = hash_key(hash_name)
        self.name = SCRAM_HASHES[self._hash]
        try:
            # RFC 5802 section 5.1: the username is prepared as a query string.
            prepared = saslprep(username, allow_unassigned=True)
            saslprep(password)
        except ValueError as exc:
            raise _misuse(str(exc), "sasl-saslprep") from exc
        _require(prepared, "username")
        if not is_nonce(nonce):
            raise _misuse("nonce must be printable ASCII without ','")
        if "\x00" in authzid:
            raise _misuse("authzid must not contain NUL")
        if not 1 <= min_iterations <= max_iterations:
            raise _misuse("need 1 <= min_iterations <= max_iterations")
        self._password = password
        self._nonce = nonce
        self._min_iterations = min_iterations
        self._max_iterations = max_iterations
        self._gs2_header = f"n,a={escape_saslname(authzid)}," if authzid else "n,,"
        self._client_first_bare = f"n={escape_saslname(prepared)},r={nonce}"
        self._server_signature = b""

    def _first_message(self) -> bytes:
        return (self._gs2_header + self._client_first_bare).encode()

    def _after_first(self, challenge: bytes) -> bytes:
        if self._phase < 3:
            self._phase = 3
            return self._client_final(challenge)
        if self._phase == 3:
            self._verify_server_final(challenge)
            self._phase = 4
            return b""
        raise self._unexpected()

    @property
    def is_complete(self) -> bool:
        return self._phase == 4

    def _client_final(self, challenge: bytes) -> bytes:
        # RFC 5802 section 7: server-first-message =
        #   [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
        try:
            text = challenge.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(self.name, "server-first is not UTF-8") from None
        attrs = text.split(",")
        if len(attrs) < 3 or attrs[0].startswith("m="):
            # A mandatory extension we do not know must fail the exchange.
            raise _bad(self.name, "malformed server-first message")
        nonce, salt_b64, iter_text = attrs[:3]
        if not (nonce.startswith("r=") and salt_b64.startswith("s=") and iter_text[:2] == "i="):
            raise _bad(self.name, "malformed server-first message")
        nonce = nonce[2:]
        if not (is_nonce(nonce) and nonce.startswith(self._nonce) and nonce != self._nonce):
            # RFC 5802 section 5.1: the server appends its own nonce to ours.
            raise _bad(self.name, "server nonce does not extend the client nonce", "sasl-bad-nonce")
        salt = b64decode(salt_b64[2:])
        if not salt:
            raise _bad(self.name, "bad salt")
        iterations = parse_posit_number(iter_text[2:])
        if iterations is None:
            raise _bad(self.name, "bad iteration count")
        if not self._min_iterations <= iterations <= self._max_iterations:
            # RFC 5802 section 9: too few iterations weaken a leaked verifier; too
            # many let a hostile server make us burn CPU.
            raise _bad(
                self.name,
                f"iteration count {iterations} outside "
                f"[{self._min_iterations}, {self._max_iterations}]",
                "sasl-bad-iterations",
            )
        salted = salted_password(self._hash, self._password, salt, iterations)
        key = client_key(self._hash, salted)
        without_proof = f"c={b64encode(self._gs2_header.encode())},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        signature = hmac_digest(self._hash, stored_key(self._hash, key), auth_message)
        self._server_signature = hmac_digest(
            self._hash, server_key(self._hash, salted), auth_message
        )
        return f"{without_proof},p={b64encode(xor(key, signature))}".encode()

    def _verify_server_final(self, challenge: bytes) -> None:
        # RFC 5802 section 7: server-final-message = (server-error / verifier) ["," ext]
        text = challenge.decode("utf-8", "replace")
        first = text.split(",", 1)[0]
        if first.startswith("e="):
            raise _bad(self.name, f"server error: {first[2:]}", "sasl-server-error")
        signature = b64decode(first[2:]) if first.startswith("v=") else None
        if signature is None:
            raise _bad(self.name, "malformed server-final message")
        if not hmac.compare_digest(signature, self._server_signature):
            raise _bad(self.name, "server signature mismatch", "sasl-bad-server-signature")


class ScramSHA1Client(ScramClient):
    """SCRAM-SHA-1 (RFC 5802); see ``ScramClient``."""

    name = "SCRAM-SHA-1"

    def __init__(
        self,
        username: str,
        password: str,
        nonce: str,
        *,
        authzid: str = "",
        min_iterations: int = DEFAULT_MIN_ITERATIONS,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
    ) -> None:
        super().__init__(
            "sha1",
            username,
            password,
            nonce,
            authzid=authzid,
            min_iterations=min_iterations,
            max_iterations=max_iterations,
        )


class ScramSHA256Client(ScramClient):
    """SCRAM-SHA-256 (RFC 7677); see ``ScramClient``."""

    name = "SCRAM-SHA-256"

    def __init__(
        self,
        username: str,
        password: str,
        nonce: str,
        *,
        authzid: str = "",
        min_iterations: int = DEFAULT_MIN_ITERATIONS,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
    ) -> None:
        super().__init__(
            "sha256",
            username,
            password,
            nonce,
            authzid=authzid,
            min_iterations=min_iterations,
            max_iterations=max_iterations,
        )


def client_mechanism(
    name: str,
    *,
    username: str,
    password: str | None = None,
    token: str | None = None,
    nonce: str | None = None,
) -> ClientMechanism:
    """Build the client mechanism called *name* (case-insensitive).

    SCRAM needs *password* and *nonce*; CRAM-MD5, PLAIN and LOGIN need *password*;
    OAUTHBEARER (with *username* as authzid) and XOAUTH2 need *token*. Raises
    ``LocalProtocolError`` for an unsupported name or a missing argument.
    """
    key = name.upper()
    if key in TOKEN_MECHANISMS:
        if token is None:
            raise _misuse(f"{key} needs a token")
        if key == "XOAUTH2":
            return XOAuth2Client(username, token)
        return OAuthBearerClient(token, authzid=username)
    if key not in SUPPORTED_CLIENT_MECHANISMS:
        raise _misuse(f"unsupported SASL mechanism {name!r}", "sasl-unsupported")
    if password is None:
        raise _misuse(f"{key} needs a password")
    if key.startswith("SCRAM-"):
        if nonce is None:
            raise _misuse(f"{key} needs a nonce")
        scram = ScramSHA256Client if key == "SCRAM-SHA-256" else ScramSHA1Client
        return scram(username, password, nonce)
    if key == "CRAM-MD5":
        return CramMD5Client(username, password)
    if key == "PLAIN":
        return PlainClient(username, password)
    return LoginClient(username, password)


# --------------------------------------------------------------------------------------
# Server side: steps
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendChallenge:
    """Send *data* as a challenge; feed the client's reply to ``receive``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Verify *password* for *username*; answer with ``password_checked(ok)``.

    The strings are as the client sent them: preparing them (e.g. with ``saslprep``,
    RFC 4616 section 2) and checking that *username* may act as a non-empty *authzid*
    is the application's job.
    """

    username: str
    password: str = field(repr=False)
    authzid: str


@dataclass(frozen=True, slots=True)
class LookupSecret:
    """Find the plain shared secret of *username*; answer with ``secret_found(secret)``."""

    username: str


@dataclass(frozen=True, slots=True)
class CheckToken:
    """Verify the OAuth bearer *token*; answer with ``token_checked(ok)``.

    *username* is the XOAUTH2 ``user`` or the OAUTHBEARER authzid (may be empty);
    *host* and *port* are what the client claimed to connect to (RFC 7628 section 3.2
    says to check them against the server's own values when it knows them).
    """

    username: str
    token: str = field(repr=False)
    authzid: str
    host: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class LookupScram:
    """Find the SCRAM credentials of *username*; answer with ``scram_found(creds)``."""

    username: str


@dataclass(frozen=True, slots=True)
class Succeeded:
    """Terminal: authenticated as *username*, acting as *authzid* ("" = same)."""

    username: str
    authzid: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Terminal: authentication failed; *reason* is a slug for logs, not for the client."""

    reason: str


Step: TypeAlias = (
    SendChallenge | CheckPassword | LookupSecret | CheckToken | LookupScram | Succeeded | Failed
)
"""What a ``ServerMechanism`` asks for next: a challenge to send, a check, or the outcome."""

# Which method the application must call after each kind of step.
_NEXT_CALL: dict[type, str] = {
    SendChallenge: "receive",
    CheckPassword: "password_checked",
    LookupSecret: "secret_found",
    CheckToken: "token_checked",
    LookupScram: "scram_found",
    Succeeded: "",
    Failed: "",
}


# --------------------------------------------------------------------------------------
# Server side: mechanisms
# --------------------------------------------------------------------------------------


class ServerMechanism(ABC):
    """One server SASL exchange, driven by the application.

    Call ``start`` once, then exactly the method the last step asks for (``receive``
    after ``SendChallenge``, ``password_checked`` after ``CheckPassword``...) until a
    ``Succeeded`` or ``Failed`` step. Any other call raises ``LocalProtocolError``.
    Malformed client data never raises: it yields ``Failed("malformed")``.
    """

    name: str
    allows_initial_response: ClassVar[bool]
    # The identity reported by Succeeded, set by each mechanism before it can succeed.
    _username: str
    _authzid: str

    def __init__(self) -> None:
        self._expected = "start"

    def start(self, initial_response: bytes | None) -> Step:
        """Begin; *initial_response* is ``None`` if the AUTH command carried none."""
        self._check("start")
        if initial_response is None:
            return self._advance(self._begin())
        if not self.allows_initial_response:
            # RFC 5034 section 4: an initial response to a mechanism that does not
            # start with client data must be rejected.
            return self._advance(Failed("malformed"))
        return self._advance(self._receive(bytes(initial_response)))

    def receive(self, response: bytes) -> Step:
        """Consume the client's decoded reply to the last ``SendChallenge``."""
        self._check("receive")
        return self._advance(self._receive(bytes(response)))

    def password_checked(self, ok: bool) -> Step:
        """Answer a ``CheckPassword`` step."""
        self._check("password_checked")
        return self._advance(self._finish(ok, "bad-credentials"))

    def secret_found(self, secret: str | None) -> Step:
        """Answer a ``LookupSecret`` step (``None``: unknown user or no usable secret)."""
        self._check("secret_found")
        return self._advance(self._secret_found(secret))

    def token_checked(self, ok: bool, *, username: str | None = None) -> Step:
        """Answer a ``CheckToken`` step; *username* overrides the identity to report
        (RFC 7628 section 3.2: the identity is the one the token established).
        """
        self._check("token_checked")
        return self._advance(self._token_checked(ok, username))

    def scram_found(self, creds: ScramCredentials | None) -> Step:
        """Answer a ``LookupScram`` step (``None``: unknown user)."""
        self._check("scram_found")
        return self._advance(self._scram_found(creds))

    @abstractmethod
    def _begin(self) -> Step: ...

    @abstractmethod
    def _receive(self, data: bytes) -> Step: ...

    def _finish(self, ok: bool, reason: str) -> Step:
        # Reached only after the mechanism has set _username and _authzid.
        return Succeeded(self._username, self._authzid) if ok else Failed(reason)

    def _secret_found(self, secret: str | None) -> Step:
        raise NotImplementedError

    def _token_checked(self, ok: bool, username: str | None) -> Step:
        raise NotImplementedError

    def _scram_found(self, creds: ScramCredentials | None) -> Step:
        raise NotImplementedError

    def _check(self, method: str) -> None:
        if method != self._expected:
            wanted = f"{self._expected}()" if self._expected else "nothing (exchange over)"
            raise _misuse(
                f"{self.name}: {method}() called out of turn; expected {wanted}",
                "sasl-out-of-turn",
            )

    def _advance(self, step: Step) -> Step:
        self._expected = _NEXT_CALL[type(step)]
        return step


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class PlainServer(ServerMechanism):
    """PLAIN (RFC 4616) server: yields ``CheckPassword``."""

    name = "PLAIN"
    allows_initial_response = True

    def _begin(self) -> Step:
        return SendChallenge(b"")

    def _receive(self, data: bytes) -> Step:
        # RFC 4616 section 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        fields = (_utf8(data) or "").split("\x00")
        if len(fields) != 3 or not fields[1] or not fields[2]:
            return Failed("malformed")
        self._authzid, self._username, password = fields
        return CheckPassword(self._username, password, self._authzid)


class LoginServer(ServerMechanism):
    """LOGIN server: challenges ``Username:`` then ``Password:``; yields ``CheckPassword``."""

    name = "LOGIN"
    allows_initial_response = False

    def __init__(self) -> None:
        super().__init__()
        self._authzid = ""
        self._got_username = False

    def _begin(self) -> Step:
        return SendChallenge(b"Username:")

    def _receive(self, data: bytes) -> Step:
        text = _utf8(data)
        if not text or "\x00" in text:
            return Failed("malformed")
        if not self._got_username:
            self._got_username = True
            self._username = text
            return SendChallenge(b"Password:")
        return CheckPassword(self._username, text, "")


class CramMD5Server(ServerMechanism):
    """CRAM-MD5 (RFC 2195) server; *challenge* is the caller's unique msg-id, e.g.
    ``b"<1896.697170952@postoffice.example.net>"``. Yields ``LookupSecret``.
    """

    name = "CRAM-MD5"
    allows_initial_response = False

    def __init__(self, challenge: bytes) -> None:
        super().__init__()
        if not challenge:
            raise _misuse("the CRAM-MD5 challenge must not be empty")
        self._challenge = bytes(challenge)
        self._authzid = ""

    def _begin(self) -> Step:
        return SendChallenge(self._challenge)

    def _receive(self, data: bytes) -> Step:
        # RFC 2195 section 2: "user SP digest"; the user name may itself contain spaces.
        username, _, digest = (_utf8(data) or "").rpartition(" ")
        if not username or _CRAM_DIGEST.fullmatch(digest) is None:
            return Failed("malformed")
        self._username = username
        self._digest = digest.lower()
        return LookupSecret(username)

    def _secret_found(self, secret: str | None) -> Step:
        if secret is None:
            return Failed("unknown-user")
        expected = hmac.new(secret.encode(), self._challenge, "md5").hexdigest()
        return self._finish(hmac.compare_digest(expected, self._digest), "bad-credentials")


class _OAuthServer(ServerMechanism):
    """Shared behaviour of the XOAUTH2 and OAUTHBEARER servers."""

    allows_initial_response = True

    def __init__(
        self, *, scope: str | None = None, openid_configuration: str | None = None
    ) -> None:
        super().__init__()
        # RFC 7628 section 3.2.2: the error result sent as a challenge on failure.
        error: dict[str, str] = {"status": "invalid_token"}
        if scope is not None:
            error["scope"] = scope
        if openid_configuration is not None:
            error["openid-configuration"] = openid_configuration
        self._error_challenge = json.dumps(error, separators=(",", ":")).encode()
        self._error_sent = False

    def _begin(self) -> Step:
        return SendChallenge(b"")

    @abstractmethod
    def _parse(self, text: str, pairs: dict[str, str]) -> CheckToken | Failed | None:
        """Build the CheckToken step; ``None`` if "auth" is not a Bearer token."""

    def _receive(self, data: bytes) -> Step:
        if self._error_sent:
            # RFC 7628 section 3.2.3: the client's dummy reply ends a failed exchange.
            return Failed("bad-credentials")
        text = _utf8(data)
        if text is None:
            return Failed("malformed")
        step = self._parse_message(text)
        return self._send_error() if step is None else step

    def _parse_message(self, text: str) -> CheckToken | Failed | None:
        # Both mechanisms end with key=value pairs, each ^A-terminated, and one more ^A.
        head, _, rest = text.partition("\x01")
        items = rest.split("\x01")
        pairs: dict[str, str] = {}
        for item in items[:-2]:
            match = _KVPAIR.fullmatch(item)
            if match is None or match[1] in pairs:
                return Failed("malformed")
            pairs[match[1]] = match[2]
        if items[-2:] != ["", ""] or "auth" not in pairs:
            return Failed("malformed")
        return self._parse(head, pairs)

    def _send_error(self) -> Step:
        self._error_sent = True
        return SendChallenge(self._error_challenge)

    def _token_checked(self, ok: bool, username: str | None) -> Step:
        if not ok:
            return self._send_error()
        if username is not None:
            self._username = username
        return Succeeded(self._username, self._authzid)


class XOAuth2Server(_OAuthServer):
    """XOAUTH2 server: yields ``CheckToken(user, token, "")``; on rejection sends the
    JSON error challenge and fails after the client's reply.
    """

    name = "XOAUTH2"

    def _parse(self, text: str, pairs: dict[str, str]) -> CheckToken | Failed | None:
        # The message is "user=U^Aauth=Bearer T^A^A": *text* is the "user" pair, whose
        # value may be any UTF-8 address.
        user = text[5:]
        if text[:5] != "user=" or not user or "\x00" in user or "user" in pairs:
            return Failed("malformed")
        bearer = _BEARER.fullmatch(pairs["auth"])
        if bearer is None:
            return None
        self._username = user
        self._authzid = ""
        return CheckToken(self._username, bearer[1], "")


class OAuthBearerServer(_OAuthServer):
    """OAUTHBEARER (RFC 7628) server: yields ``CheckToken(authzid, token, authzid, host,
    port)``; a rejected or missing token gets the RFC 7628 section 3.2.2 error challenge
    (with the optional *scope* and *openid_configuration*) and fails after the reply.
    """

    name = "OAUTHBEARER"

    def _parse(self, text: str, pairs: dict[str, str]) -> CheckToken | Failed | None:
        # RFC 7628 section 3.1: gs2-header kvsep *kvpair kvsep; no channel binding.
        gs2 = _OAUTH_GS2.fullmatch(text)
        authzid = "" if gs2 is None or gs2[1] is None else unescape_saslname(gs2[1])
        port_text = pairs.get("port")
        if (
            gs2 is None
            or authzid is None
            or (port_text is not None and _PORT.fullmatch(port_text) is None)
        ):
            return Failed("malformed")
        bearer = _BEARER.fullmatch(pairs["auth"])
        if bearer is None:
            # RFC 7628 section 4.3: an empty "auth=" asks for the error (discovery) result.
            return None
        self._username = self._authzid = authzid
        port = None if port_text is None else int(port_text)
        return CheckToken(authzid, bearer[1], authzid, pairs.get("host"), port)


class ScramServer(ServerMechanism):
    """SCRAM (RFC 5802, RFC 7677) server without channel binding; yields ``LookupScram``.

    *nonce* is the server's random nonce part (printable ASCII without ","). After a
    valid client-final it sends server-final as ``SendChallenge`` and expects an empty
    reply (RFC 5034 section 4). If *mock_key* is given, an unknown user gets a
    simulated exchange (salt derived from *mock_key* and the username, *mock_iterations*)
    that fails only at the end, so the exchange does not reveal which users exist.
    """

    allows_initial_response = True

    def __init__(
        self,
        hash_name: str,
        nonce: str,
        *,
        mock_key: bytes | None = None,
        mock_iterations: int = DEFAULT_MIN_ITERATIONS,
    ) -> None:
        super().__init__()
        self._hash = hash_key(hash_name)
        self.name = SCRAM_HASHES[self._hash]
        if not is_nonce(nonce):
            raise _misuse("nonce must be printable ASCII without ','")
        if mock_iterations < 1:
            raise _misuse("mock_iterations must be positive")
        self._server_nonce = nonce
        self._mock_key = mock_key
        self._mock_iterations = mock_iterations
        self._phase = 0
        self._unknown = False

    def _begin(self) -> Step:
        return SendChallenge(b"")

    def _receive(self, data: bytes) -> Step:
        if self._phase == 0:
            return self._client_first(data)
        if self._phase == 1:
            return self._client_final(data)
        # After server-final the client must answer with an empty response.
        return Failed("malformed") if data else Succeeded(self._username, self._authzid)

    def _client_first(self, data: bytes) -> Step:
        # RFC 5802 section 7: gs2-header [reserved-mext ","] username "," nonce ["," ext]
        text = _utf8(data) or ""
        gs2 = _SCRAM_GS2.fullmatch(text)
        if gs2 is None:
            return Failed("malformed")
        if gs2[1].startswith("p="):
            # RFC 5802 section 6: we never advertise -PLUS, so "p" must fail.
            return Failed("unsupported-channel-binding")
        authzid = "" if gs2[2] is None else unescape_saslname(gs2[2])
        attrs = gs2[3].split(",")
        if authzid is None or len(attrs) < 2 or attrs[0][:2] != "n=" or attrs[1][:2] != "r=":
            return Failed("malformed")
        username = unescape_saslname(attrs[0][2:])
        if username is None or not is_nonce(attrs[1][2:]):
            return Failed("malformed")
        try:
            # RFC 5034 section 4 / RFC 5802 section 5.1: prepare the name as a query.
            username = saslprep(username, allow_unassigned=True)
        except ValueError:
            return Failed("malformed")
        if not username:
            return Failed("malformed")
        self._username = username
        self._authzid = authzid
        self._gs2_header = text[: len(text) - len(gs2[3])].encode()
        self._client_first_bare = gs2[3]
        self._nonce = attrs[1][2:] + self._server_nonce
        return LookupScram(username)

    def _scram_found(self, creds: ScramCredentials | None) -> Step:
        size = len(hmac_digest(self._hash, b"", b""))
        if creds is None:
            if self._mock_key is None:
                return Failed("unknown-user")
            self._unknown = True
            salt = hmac_digest(self._hash, self._mock_key, self._username.encode())
            creds = ScramCredentials(salt[:16], self._mock_iterations, salt, salt)
        elif (
            not creds.salt
            or creds.iterations < 1
            or len(creds.stored_key) != size
            or len(creds.server_key) != size
        ):
            raise _misuse(f"{self.name}: credentials do not fit this hash", "sasl-bad-credentials")
        self._creds = creds
        self._server_first = f"r={self._nonce},s={b64encode(creds.salt)},i={creds.iterations}"
        self._phase = 1
        return SendChallenge(self._server_first.encode())

    def _client_final(self, data: bytes) -> Step:
        # RFC 5802 section 7: channel-binding "," nonce ["," extensions] "," proof
        text = _utf8(data) or ""
        without_proof, _, proof_b64 = text.rpartition(",p=")
        attrs = without_proof.split(",")
        proof = b64decode(proof_b64)
        if (
            len(attrs) < 2
            or attrs[0][:2] != "c="
            or b64decode(attrs[0][2:]) != self._gs2_header
            or attrs[1] != f"r={self._nonce}"
            or proof is None
            or len(proof) != len(self._creds.stored_key)
        ):
            return Failed("malformed")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac_digest(self._hash, self._creds.stored_key, auth_message)
        candidate = stored_key(self._hash, xor(proof, signature))
        if not hmac.compare_digest(candidate, self._creds.stored_key) or self._unknown:
            return Failed("unknown-user" if self._unknown else "bad-credentials")
        self._phase = 2
        verifier = hmac_digest(self._hash, self._creds.server_key, auth_message)
        return SendChallenge(f"v={b64encode(verifier)}".encode())


class ScramSHA1Server(ScramServer):
    """SCRAM-SHA-1 server; see ``ScramServer``."""

    name = "SCRAM-SHA-1"

    def __init__(
        self,
        nonce: str,
        *,
        mock_key: bytes | None = None,
        mock_iterations: int = DEFAULT_MIN_ITERATIONS,
    ) -> None:
        super().__init__("sha1", nonce, mock_key=mock_key, mock_iterations=mock_iterations)


class ScramSHA256Server(ScramServer):
    """SCRAM-SHA-256 server; see ``ScramServer``."""

    name = "SCRAM-SHA-256"

    def __init__(
        self,
        nonce: str,
        *,
        mock_key: bytes | None = None,
        mock_iterations: int = DEFAULT_MIN_ITERATIONS,
    ) -> None:
        super().__init__("sha256", nonce, mock_key=mock_key, mock_iterations=mock_iterations)


def server_mechanism(
    name: str, *, nonce: str | None = None, challenge: bytes | None = None
) -> ServerMechanism:
    """Build the server mechanism called *name* (case-insensitive).

    SCRAM needs *nonce*, CRAM-MD5 needs *challenge*. Raises ``LocalProtocolError`` for
    an unsupported name or a missing argument.
    """
    key = name.upper()
    if key not in SUPPORTED_SERVER_MECHANISMS:
        raise _misuse(f"unsupported SASL mechanism {name!r}", "sasl-unsupported")
    if key.startswith("SCRAM-"):
        if nonce is None:
            raise _misuse(f"{key} needs a nonce")
        scram = ScramSHA256Server if key == "SCRAM-SHA-256" else ScramSHA1Server
        return scram(nonce)
    if key == "CRAM-MD5":
        if challenge is None:
            raise _misuse("CRAM-MD5 needs a challenge")
        return CramMD5Server(challenge)
    simple: dict[str, type[ServerMechanism]] = {
        "PLAIN": PlainServer,
        "LOGIN": LoginServer,
        "OAUTHBEARER": OAuthBearerServer,
        "XOAUTH2": XOAuth2Server,
    }
    return simple[key]()
