"""SCRAM (RFC 5802, RFC 7677) algorithms and message grammar, shared by client and server."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from . import _base64
from ._errors import LocalProtocolError
from ._saslprep import saslprep

__all__ = ["ScramCredentials"]

# Mechanism name for each supported hash (RFC 5802 section 4, RFC 7677 section 3).
SCRAM_HASHES: dict[str, str] = {"sha1": "SCRAM-SHA-1", "sha256": "SCRAM-SHA-256"}

# RFC 5802 section 7: printable = %x21-2B / %x2D-7E (no ","), used for nonces.
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
# RFC 5802 section 7: posit-number = %x31-39 *DIGIT. Nine digits bound the work any
# parse does; the iteration limits themselves are checked by the mechanisms.
_POSIT_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
# RFC 5802 section 7: saslname = 1*(value-safe-char / "=2C" / "=3D").
_SASLNAME = re.compile(r"(?:[^=,\x00]|=2C|=3D)+")


def hash_key(hash_name: str) -> str:
    """Normalise a hash name ("SHA-256", "sha256", ...) to a key of ``SCRAM_HASHES``."""
    key = hash_name.lower().replace("-", "")
    if key not in SCRAM_HASHES:
        raise LocalProtocolError(f"unsupported SCRAM hash {hash_name!r}", reason="sasl-bad-hash")
    return key


def b64encode(data: bytes) -> str:
    """Base64 (RFC 4648 section 4) as used inside SCRAM attribute values."""
    return _base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes | None:
    """Strict base64 decoding; ``None`` for anything that is not canonical base64.

    The same rules as the SASL lines' (``_base64.b64decode_strict``), on text.
    """
    if not text.isascii():
        return None
    return _base64.b64decode_strict(text.encode("ascii"))


def is_nonce(text: str) -> bool:
    """True if *text* is a valid SCRAM nonce (printable ASCII without ",")."""
    return _NONCE.fullmatch(text) is not None


def parse_posit_number(text: str) -> int | None:
    """Parse a posit-number of at most nine digits, else ``None``."""
    return int(text) if _POSIT_NUMBER.fullmatch(text) else None


def escape_saslname(name: str) -> str:
    """Escape "=" and "," in a user name (RFC 5802 section 5.1)."""
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_saslname(text: str) -> str | None:
    """Undo ``escape_saslname``; ``None`` if *text* is not a valid saslname."""
    if _SASLNAME.fullmatch(text) is None:
        return None
    return text.replace("=2C", ",").replace("=3D", "=")


def hmac_digest(hash_name: str, key: bytes, msg: bytes) -> bytes:
    """HMAC(key, msg) with the SCRAM hash."""
    return hmac.new(key, msg, hash_name).digest()


def salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(Normalize(password), salt, i) (RFC 5802 section 3).

    Raises ``LocalProtocolError`` if the password fails SASLprep.
    """
    try:
        prepared = saslprep(password)
    except ValueError as exc:
        raise LocalProtocolError(f"password: {exc}", reason="sasl-saslprep") from exc
    # Hi() is PBKDF2 with HMAC as the PRF and dkLen = the hash output length.
    return hashlib.pbkdf2_hmac(hash_name, prepared.encode("utf-8"), salt, iterations)


def client_key(hash_name: str, salted: bytes) -> bytes:
    """ClientKey := HMAC(SaltedPassword, "Client Key")."""
    return hmac_digest(hash_name, salted, b"Client Key")


def server_key(hash_name: str, salted: bytes) -> bytes:
    """ServerKey := HMAC(SaltedPassword, "Server Key")."""
    return hmac_digest(hash_name, salted, b"Server Key")


def stored_key(hash_name: str, key: bytes) -> bytes:
    """StoredKey := H(ClientKey)."""
    return hashlib.new(hash_name, key).digest()


def xor(left: bytes, right: bytes) -> bytes:
    """Bytewise XOR of two equal-length strings."""
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a SCRAM server stores for one user (RFC 5802 section 3).

    ``stored_key`` and ``server_key`` must be as long as the hash output.
    """

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(
        cls, hash_name: str, password: str, salt: bytes, iterations: int
    ) -> ScramCredentials:
        """Derive credentials from a plain *password* (SASLprep'd as a stored string).

        Raises ``LocalProtocolError`` for an unknown hash, an empty salt, a
        non-positive iteration count or a password that fails SASLprep.
        """
        key = hash_key(hash_name)
        if not salt or iterations < 1:
            raise LocalProtocolError(
                "SCRAM needs a non-empty salt and at least one iteration",
                reason="sasl-bad-credentials",
            )
        salted = salted_password(key, password, salt, iterations)
        return cls(
            salt=salt,
            iterations=iterations,
            stored_key=stored_key(key, client_key(key, salted)),
            server_key=server_key(key, salted),
        )
