"""The crypt(3)-family password hashes of Dovecot's passwd-files, through maintained libraries.

``{SHA512-CRYPT}$6$...``, ``{SHA256-CRYPT}$5$...``, ``{MD5-CRYPT}$1$...`` (libpass),
``{BLF-CRYPT}$2y$...`` (bcrypt), ``{ARGON2I}$argon2i$...`` and ``{ARGON2ID}$argon2id$...``
(argon2-cffi); ``{CRYPT}`` takes any of these by its ``$id$`` prefix, as Dovecot's
``crypt(3)`` does, and a bare ``$id$...`` value (what ``openssl passwd -6`` prints) is
the same as ``{CRYPT}``. The libraries are the optional extra ``passwords``; a value
whose library is missing is refused when the users file is read, naming the package.

A value shaped like a modular-crypt hash whose ``$id$`` is not one of these (``$y$``
yescrypt, ``$7$`` scrypt, ``$2x$``...) is refused, naming the scheme: taking it for a
plain password would lock the user out and leave APOP, CRAM-MD5 and SCRAM enabled
for a "secret" that is a hash.
"""

from __future__ import annotations

import importlib
import re
import secrets
from collections.abc import Callable
from typing import Any

__all__ = [
    "CRYPT_SCHEMES",
    "crypt_cost",
    "crypt_scheme",
    "hash_crypt",
    "looks_like_crypt",
    "verify_crypt",
]

# scheme -> the $id$ prefixes of its values
CRYPT_SCHEMES: dict[str, tuple[str, ...]] = {
    "MD5-CRYPT": ("$1$",),
    "SHA256-CRYPT": ("$5$",),
    "SHA512-CRYPT": ("$6$",),
    "BLF-CRYPT": ("$2y$", "$2b$", "$2a$"),
    "ARGON2I": ("$argon2i$",),
    "ARGON2ID": ("$argon2id$",),
}

# Modular crypt format: "$id$" then fields of the crypt alphabet (and argon2's "=,+").
_MCF = re.compile(r"\$([A-Za-z0-9-]{1,32})\$[./A-Za-z0-9$=,+-]*\Z")
_KNOWN_IDS = {
    "y": "yescrypt",
    "gy": "gost-yescrypt",
    "7": "scrypt",
    "2x": "bcrypt with the pre-2011 sign bug",
    "sha1": "SHA1-CRYPT",
    "md5": "Sun MD5-CRYPT",
    "argon2d": "ARGON2D",
}
_PASSWORDS_EXTRA = "pip install 'pop3-sansio[passwords]'"
_BCRYPT_MAX = 72  # bcrypt uses the first 72 octets; Dovecot's crypt_blowfish too
_ROUNDS = re.compile(r"\$rounds=([0-9]{1,9})\$")
_ARGON2_COST = re.compile(r"\$m=([0-9]{1,10}),t=([0-9]{1,10}),")


def looks_like_crypt(value: str) -> bool:
    """Whether a bare password-file value is shaped like a modular-crypt hash.

    At least three ``$``, the crypt alphabet only and 20 characters or more: a
    plain password of that shape must be written ``{PLAIN}...``.
    """
    return len(value) >= 20 and value.count("$") >= 3 and _MCF.match(value) is not None


def crypt_scheme(value: str, named: str | None = None) -> str:
    """The scheme of a crypt value, or ``ValueError`` naming what is wrong.

    ``named`` is the ``{SCHEME}`` the file gives (``None`` for a bare value or
    ``{CRYPT}``); the value's ``$id$`` must agree with it. The library the scheme
    needs must be importable.
    """
    match = _MCF.match(value)
    scheme = None
    if match is not None:
        scheme = next((name for name, ids in CRYPT_SCHEMES.items() if value.startswith(ids)), None)
    if scheme is None:
        if match is None:
            raise ValueError(f"{{{named or 'CRYPT'}}} value is not a $id$... crypt hash")
        ident = match.group(1)
        what = _KNOWN_IDS.get(ident, f"an unknown crypt scheme ${ident}$")
        raise ValueError(
            f"${ident}$ is {what}, which is not supported"
            " (supported: " + ", ".join(CRYPT_SCHEMES) + "; write {PLAIN}... for a"
            " plain password that starts with $)"
        )
    if named is not None and named != scheme:
        raise ValueError(f"{{{named}}} value starts with {value[: value.index('$', 1) + 1]}")
    # Refuse now, not at the first login: a missing library, or a value that no
    # password can ever match (cut short, a bad cost or salt).
    backend = _backend(scheme)
    if not _well_formed(backend, scheme, value):
        raise ValueError(f"{{{scheme}}} value is malformed")
    return scheme


_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}\Z")


def _well_formed(backend: Any, scheme: str, value: str) -> bool:
    if scheme == "BLF-CRYPT":
        return _BCRYPT.match(value) is not None
    if scheme.startswith("ARGON2"):
        try:
            backend.extract_parameters(value)
        except backend.exceptions.InvalidHashError:
            return False
        return True
    try:
        _libpass_handler(backend, scheme).from_string(value)
    except ValueError:
        return False
    return True


def verify_crypt(scheme: str, value: str, password: bytes) -> bool:
    """Whether ``password`` matches the crypt ``value`` of ``scheme`` (from ``crypt_scheme``)."""
    backend = _backend(scheme)
    if scheme == "BLF-CRYPT":
        # bcrypt >= 5 refuses longer input; crypt_blowfish (Dovecot) ignores it.
        return bool(backend.checkpw(password[:_BCRYPT_MAX], value.encode("ascii")))
    if scheme.startswith("ARGON2"):
        try:
            return bool(backend.PasswordHasher().verify(value, password))
        except backend.exceptions.VerificationError:
            return False
        except backend.exceptions.InvalidHashError:
            return False
    return bool(_libpass_handler(backend, scheme).verify(password, value))


def hash_crypt(scheme: str, password: bytes, rounds: int | None = None) -> str:
    """A new crypt value of ``scheme`` for ``password`` (without the ``{SCHEME}`` prefix).

    ``rounds``: SHA-crypt rounds (default 5000, glibc's and Dovecot's), bcrypt's
    log2 cost (default 12) or argon2's time cost (default 3, with 64 MiB).
    """
    backend = _backend(scheme)
    if scheme == "BLF-CRYPT":
        salt = backend.gensalt(rounds=rounds or 12, prefix=b"2b")
        value = backend.hashpw(password[:_BCRYPT_MAX], salt).decode("ascii")
        # $2y$ and $2b$ are the same algorithm; $2y$ is what Dovecot writes and
        # what every crypt_blowfish reads (older ones do not know $2b$).
        return "$2y$" + str(value)[4:]
    if scheme.startswith("ARGON2"):
        kind = backend.Type.ID if scheme == "ARGON2ID" else backend.Type.I
        hasher = backend.PasswordHasher(time_cost=rounds or 3, type=kind)
        return str(hasher.hash(password))
    handler = _libpass_handler(backend, scheme)
    if scheme != "MD5-CRYPT":
        handler = handler.using(rounds=rounds or 5000)
    elif rounds is not None:
        raise ValueError("MD5-CRYPT has a fixed number of rounds")
    salt = "".join(
        secrets.choice(_SALT_ALPHABET) for _ in range(16 if scheme != "MD5-CRYPT" else 8)
    )
    return str(handler.using(salt=salt).hash(password))


_SALT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def crypt_cost(scheme: str, value: str) -> tuple[int, int]:
    """Roughly how long checking ``value`` takes: (tier, work), to rank decoys."""
    if scheme == "BLF-CRYPT":
        return (7, 2 ** int(value[4:6]))
    if scheme.startswith("ARGON2"):
        found = _ARGON2_COST.search(value)
        return (8, int(found.group(1)) * int(found.group(2)) if found else 0)
    if scheme == "MD5-CRYPT":
        return (5, 1000)
    found = _ROUNDS.match(value, 2)
    return (6, int(found.group(1)) if found else 5000)


_LIBRARIES: dict[str, tuple[str, str]] = {
    "MD5-CRYPT": ("passlib.hash", "libpass"),
    "SHA256-CRYPT": ("passlib.hash", "libpass"),
    "SHA512-CRYPT": ("passlib.hash", "libpass"),
    "BLF-CRYPT": ("bcrypt", "bcrypt"),
    "ARGON2I": ("argon2", "argon2-cffi"),
    "ARGON2ID": ("argon2", "argon2-cffi"),
}


def _backend(scheme: str) -> Any:
    module, package = _LIBRARIES[scheme]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{{{scheme}}} needs the {package} package: {_PASSWORDS_EXTRA}") from None


_LIBPASS_NAMES: dict[str, str] = {
    "MD5-CRYPT": "md5_crypt",
    "SHA256-CRYPT": "sha256_crypt",
    "SHA512-CRYPT": "sha512_crypt",
}


def _libpass_handler(module: Any, scheme: str) -> Any:
    handler: Callable[..., Any] = getattr(module, _LIBPASS_NAMES[scheme])
    return handler
