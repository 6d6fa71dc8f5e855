"""Users and their passwords: plain pairs, or a passwd-like file in Dovecot's syntax.

File format: one user per line, ``name:password[:maildir]``; a line whose
first non-blank character is ``#`` is a comment; blank lines are ignored. The
password is plain, or ``{SCHEME}value`` as in Dovecot's passwd-file:
``{PLAIN}``/``{CLEAR}`` (plain), ``{SHA256}``/``{SHA512}`` (base64, or hex, of
the digest), ``{SSHA256}``/``{SSHA512}`` (base64 of digest(password + salt)
followed by the salt), ``{PBKDF2}$1$<salt>$<rounds>$<hex of 20 octets of
PBKDF2-HMAC-SHA1>``; and the crypt(3) family, ``{SHA512-CRYPT}``,
``{SHA256-CRYPT}``, ``{MD5-CRYPT}``, ``{BLF-CRYPT}``, ``{ARGON2I}``, ``{ARGON2ID}``,
``{CRYPT}`` or a bare ``$6$...`` value (``_crypt``; the ``passwords`` extra). A
scheme may end in ``.HEX`` or ``.B64`` to name the encoding, as Dovecot allows. A
password cannot contain ``:``. A value that looks hashed in a scheme not listed
here is refused, naming the scheme, never taken for a plain password.

Secrets never appear in an exception message or a repr (docs/architecture.md, invariant 7).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterator, Mapping

from ._crypt import (
    CRYPT_SCHEMES,
    crypt_cost,
    crypt_scheme,
    hash_crypt,
    looks_like_crypt,
    verify_crypt,
)

__all__ = ["HASH_SCHEMES", "UserDB", "hash_password", "verify_password"]

_SCHEME = re.compile(r"\{([A-Za-z0-9_-]+)(?:\.([A-Za-z0-9]+))?\}(.*)", re.DOTALL)
_SHA = {"SHA256": "sha256", "SSHA256": "sha256", "SHA512": "sha512", "SSHA512": "sha512"}
_ENCODINGS = {"HEX": "hex", "B64": "base64", "BASE64": "base64"}
_ROUNDS = re.compile(r"[0-9]{1,9}\Z")
_PBKDF2_HEX = re.compile(r"[0-9A-Fa-f]{40}\Z")
_PBKDF2_LENGTH = 20  # octets of PBKDF2-HMAC-SHA1 output, as Dovecot stores it
_CRYPT_NAMES = {*CRYPT_SCHEMES, "CRYPT"}
_SUPPORTED = ", ".join(["PLAIN", "CLEAR", *_SHA, "PBKDF2", *CRYPT_SCHEMES, "CRYPT"])


@dataclasses.dataclass(frozen=True)
class _Entry:
    """How to check one user's password. The repr shows no secret material."""

    scheme: str  # "PLAIN", a key of _SHA, "PBKDF2", or a key of CRYPT_SCHEMES
    plain: str | None = None
    crypt: str = ""  # the $id$... value of a crypt scheme
    digest: bytes = b""
    salt: bytes = b""
    rounds: int = 0
    maildir: str | None = None

    def __repr__(self) -> str:
        return f"<password entry {{{self.scheme}}}>"

    def verify(self, password: bytes) -> bool:
        if self.scheme == "PLAIN":
            assert self.plain is not None
            # Digests first, so the comparison time depends on neither length.
            got = hashlib.sha256(password).digest()
            return hmac.compare_digest(got, hashlib.sha256(_encode(self.plain)).digest())
        if self.crypt:
            return verify_crypt(self.scheme, self.crypt, password)
        if self.scheme == "PBKDF2":
            got = hashlib.pbkdf2_hmac("sha1", password, self.salt, self.rounds, _PBKDF2_LENGTH)
        else:
            got = hashlib.new(_SHA[self.scheme], password + self.salt).digest()
        return hmac.compare_digest(got, self.digest)

    def cost(self) -> tuple[int, int]:
        """Roughly how long ``verify`` takes, to pick a decoy for unknown users."""
        if self.crypt:
            return crypt_cost(self.scheme, self.crypt)
        if self.scheme == "PBKDF2":
            return (3, self.rounds)
        if self.scheme in _SHA:
            return (2 if _SHA[self.scheme] == "sha512" else 1, 0)
        return (0, 0)

    def decoy(self) -> _Entry:
        """An entry that costs as much to check; its result is never used."""
        if self.crypt:
            # A crypt value carries its own salt and cost: checking the very same
            # value costs the same, and check_password discards a decoy's result.
            return dataclasses.replace(self, maildir=None)
        return _Entry(
            self.scheme,
            plain=None if self.plain is None else os.urandom(16).hex(),
            digest=os.urandom(len(self.digest)),
            salt=self.salt,
            rounds=self.rounds,
        )


def _encode(text: str) -> bytes:
    # surrogateescape: a password received as undecodable bytes and decoded
    # that way is checked as those very bytes. Any other lone surrogate cannot
    # come from a UTF-8 users file, so surrogatepass makes it match nothing.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _decode(value: str, encoding: str) -> bytes:
    try:
        if encoding == "hex":
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(f"the password value is not valid {encoding}") from None


def _parse_password(field: str) -> _Entry:
    """The entry for one password field; ``ValueError`` naming only the scheme."""
    match = _SCHEME.fullmatch(field)
    if match is None:
        if looks_like_crypt(field):  # what `openssl passwd -6` prints
            return _Entry(crypt_scheme(field), crypt=field)
        return _Entry("PLAIN", plain=field)
    scheme, suffix, value = match.group(1).upper(), match.group(2), match.group(3)
    encoding = None
    if suffix is not None:
        encoding = _ENCODINGS.get(suffix.upper())
        if encoding is None or scheme == "PBKDF2" or scheme in _CRYPT_NAMES:
            raise ValueError(f"unsupported encoding {{{scheme}.{suffix}}}")
    if scheme in _CRYPT_NAMES:
        return _Entry(crypt_scheme(value, None if scheme == "CRYPT" else scheme), crypt=value)
    if scheme in ("PLAIN", "CLEAR"):
        if encoding is None:
            plain = value
        else:
            try:
                plain = _decode(value, encoding).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("the password is not UTF-8") from None
        if not plain:
            raise ValueError("empty password")
        return _Entry("PLAIN", plain=plain)
    if scheme == "PBKDF2":
        return _parse_pbkdf2(value)
    if scheme not in _SHA:
        raise ValueError(f"unknown password scheme {{{scheme}}} (supported: {_SUPPORTED})")
    size = hashlib.new(_SHA[scheme]).digest_size
    salted = scheme.startswith("SSHA")
    if encoding is None:
        # Dovecot guesses an unsalted digest's encoding from its length
        # (password_decode): twice the digest size is hex, anything else base64.
        encoding = "hex" if not salted and len(value) == 2 * size else "base64"
    raw = _decode(value, encoding)
    if salted:
        if len(raw) <= size:
            raise ValueError(f"{{{scheme}}} value too short to hold a salt")
    elif len(raw) != size:
        raise ValueError(f"{{{scheme}}} value has the wrong length")
    return _Entry(scheme, digest=raw[:size], salt=raw[size:])


def _parse_pbkdf2(value: str) -> _Entry:
    # Dovecot's pbkdf2_verify: "$1$" salt "$" rounds "$" 40 hex digits; the
    # salt is used as the octets of the string.
    fields = value.split("$")
    if (
        len(fields) != 5
        or fields[:2] != ["", "1"]
        or not _ROUNDS.match(fields[3])
        or int(fields[3]) < 1
        or not _PBKDF2_HEX.match(fields[4])
    ):
        raise ValueError("{PBKDF2} value is not $1$<salt>$<rounds>$<40 hex digits>")
    return _Entry(
        "PBKDF2",
        digest=bytes.fromhex(fields[4]),
        salt=_encode(fields[2]),
        rounds=int(fields[3]),
    )


HASH_SCHEMES = (
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "BLF-CRYPT",
    "ARGON2ID",
    "ARGON2I",
    "MD5-CRYPT",
    "PBKDF2",
    "SSHA512",
    "SSHA256",
)
"""The schemes ``hash_password`` makes; the first is its default.

SHA512-CRYPT is the default: every Dovecot reads it, ``openssl passwd -6`` makes it,
and at 5000 rounds a login costs milliseconds, which matters for clients that poll
every minute. ARGON2ID resists GPUs best, at 64 MiB and tens of milliseconds a login.
"""


def hash_password(
    password: str, scheme: str = HASH_SCHEMES[0], *, rounds: int | None = None
) -> str:
    """A new users-file value, ``{SCHEME}...``, for ``password`` (as ``doveadm pw -s`` prints).

    ``scheme`` is one of ``HASH_SCHEMES`` (any case). ``rounds``: SHA-crypt rounds,
    bcrypt's log2 cost, argon2's time cost, PBKDF2's iterations. ``ValueError`` for an
    empty password, an unknown scheme, or a missing library (naming the extra).
    """
    scheme = scheme.upper()
    if scheme not in HASH_SCHEMES:
        raise ValueError(f"cannot make {scheme} hashes (choose from: {', '.join(HASH_SCHEMES)})")
    if not password:
        raise ValueError("empty password")
    if rounds is not None and rounds < 1:
        raise ValueError("rounds must be at least 1")
    raw = _encode(password)
    if scheme in CRYPT_SCHEMES:
        value = hash_crypt(scheme, raw, rounds)
    elif scheme == "PBKDF2":
        salt = secrets.token_urlsafe(12)  # 16 characters of [A-Za-z0-9_-], as Dovecot's
        count = rounds or 5000
        key = hashlib.pbkdf2_hmac("sha1", raw, salt.encode(), count, _PBKDF2_LENGTH)
        value = f"$1${salt}${count}${key.hex()}"
    else:
        if rounds is not None:
            raise ValueError(f"{scheme} has no rounds")
        salt_bytes = os.urandom(8)
        value = base64.b64encode(
            hashlib.new(_SHA[scheme], raw + salt_bytes).digest() + salt_bytes
        ).decode()
    return f"{{{scheme}}}{value}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a users-file value (any scheme ``UserDB`` reads).

    ``ValueError`` if ``stored`` is malformed, names an unsupported scheme, or needs a
    missing library; the message never holds ``stored``.
    """
    return _parse_password(stored).verify(_encode(password))


class UserDB:
    """User names, how to check their passwords, and their optional Maildir.

    Build it with ``from_pairs``, ``parse`` or ``from_file``. Checks run in
    constant time for a given entry; an unknown user is checked against a
    decoy as costly as the costliest entry (RFC 1939 section 13: do not reveal
    which names exist).
    """

    def __init__(self, entries: Mapping[str, _Entry]) -> None:
        self._entries = dict(entries)
        costliest = max(self._entries.values(), key=_Entry.cost, default=None)
        self._decoy = (costliest or _Entry("PLAIN", plain="x")).decoy()

    def __repr__(self) -> str:
        return f"<UserDB with {len(self._entries)} users>"

    @classmethod
    def from_pairs(cls, pairs: Mapping[str, str]) -> UserDB:
        """Users with plain passwords: ``{"alice": "secret"}``."""
        for name, secret in pairs.items():
            _check_name(name)
            if not secret:
                raise ValueError(f"empty password for user {name!r}")
        return cls({name: _Entry("PLAIN", plain=secret) for name, secret in pairs.items()})

    @classmethod
    def parse(cls, text: str, *, source: str = "<users>") -> UserDB:
        """Parse the passwd-like format (module docstring).

        ``ValueError`` for a malformed line, naming ``source`` and the line
        number, never the password.
        """
        entries: dict[str, _Entry] = {}
        for number, line in enumerate(text.split("\n"), 1):
            line = line.removesuffix("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                name, sep, rest = line.partition(":")
                if not sep:
                    raise ValueError("expected name:password[:maildir]")
                _check_name(name)
                if name in entries:
                    raise ValueError(f"user {name!r} appears twice")
                password, _, maildir = rest.partition(":")
                if not password:
                    raise ValueError("empty password")
                entry = _parse_password(password)
            except ValueError as exc:
                raise ValueError(f"{source}, line {number}: {exc}") from None
            entries[name] = dataclasses.replace(entry, maildir=maildir or None)
        return cls(entries)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> UserDB:
        """Read and ``parse`` a users file (UTF-8); ``OSError`` or ``ValueError``."""
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return cls.parse(text, source=os.fspath(path))

    def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is ``username``'s; ``False`` for an unknown user."""
        entry = self._entries.get(username)
        result = (entry or self._decoy).verify(_encode(password))
        return entry is not None and result

    def secret(self, username: str) -> str | None:
        """The plain secret (APOP, CRAM-MD5, SCRAM need it); ``None`` if only a hash is stored."""
        entry = self._entries.get(username)
        return None if entry is None else entry.plain

    def maildir(self, username: str) -> str | None:
        """The Maildir given for ``username`` in the file, if any."""
        entry = self._entries.get(username)
        return None if entry is None else entry.maildir

    def __contains__(self, username: object) -> bool:
        return username in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _check_name(name: str) -> None:
    if not name or not name.isprintable() or any(c.isspace() or c == ":" for c in name):
        raise ValueError("a user name must be non-empty, printable, without spaces or ':'")
