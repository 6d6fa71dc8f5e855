"""Constants that ``pop3 --help`` shows, kept apart so that printing the help
imports no server, storage or event loop (docs/architecture.md, section 8).

``tests/test_cli.py`` checks that they agree with ``pop3_sansio.server.ServerOptions``
and with ``pop3 serve``'s backends.
"""

from __future__ import annotations

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "LOGIN_TIMEOUT",
    "MAX_SESSIONS_PER_ADDRESS",
    "PASSWORD_SCHEMES",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1110
DEFAULT_TLS_PORT = 1995

BACKEND_NAMES = ("asyncio", "sync", "trio")
"""``pop3 serve --backend`` choices (the keys of ``_serve.BACKENDS``)."""

MAX_SESSIONS_PER_ADDRESS = 20
"""``ServerOptions.max_sessions_per_address``'s default."""
LOGIN_TIMEOUT = 60.0
"""``ServerOptions.login_timeout``'s default, in seconds."""

PASSWORD_SCHEMES = (
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
"""``pop3 pw --scheme`` choices: ``pop3_maildrop.HASH_SCHEMES``, the first the default."""
