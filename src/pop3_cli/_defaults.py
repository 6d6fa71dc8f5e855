"""Constants that ``pop3 --help`` shows, kept apart so that printing the help
imports no server, storage or event loop (docs/architecture.md, section 8).

``tests/test_cli.py`` checks that they agree with ``pop3_sansio.server.ServerOptions``
and with ``pop3 serve``'s backends.
"""

from __future__ import annotations

__all__ = [
    "AUTH_METHODS",
    "BACKEND_NAMES",
    "DEFAULT_HOST",
    "DEFAULT_LMTP_PORT",
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "EX_USAGE",
    "LEASE_SECONDS",
    "LMTP_MAX_MESSAGE_SIZE",
    "LOGIN_TIMEOUT",
    "MAX_SESSIONS_PER_ADDRESS",
    "PASSWORD_SCHEMES",
    "POOL_MAX",
    "STORAGE_TIMEOUT",
    "TOKEN_AUTH_METHODS",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1110
DEFAULT_TLS_PORT = 1995
DEFAULT_LMTP_PORT = 2424
"""``pop3 lmtp``'s port (LMTP's own, 24, needs root; RFC 2033 section 5)."""
LMTP_MAX_MESSAGE_SIZE = 64 << 20
"""``pop3 lmtp --max-message-size``'s default: an LMTP message is held in memory."""

EX_USAGE = 64
"""sysexits.h: ``pop3 deliver``'s exit code for bad arguments (a mail system reads sysexits)."""

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
AUTH_METHODS = (
    "user",
    "apop",
    "plain",
    "login",
    "cram-md5",
    "scram-sha-1",
    "scram-sha-256",
    "xoauth2",
    "oauthbearer",
)
"""``pop3 fetch --auth`` choices: the login methods of ``pop3_sansio.ClientSession.login``."""
TOKEN_AUTH_METHODS = ("xoauth2", "oauthbearer")
"""The methods that log in with an OAuth 2.0 token rather than a password."""
POOL_MAX = 10
"""``pop3_maildrop.PostgresStorage``'s ``pool_max`` default (``--pool-max``)."""
LEASE_SECONDS = 60.0
"""``pop3_maildrop.PostgresStorage``'s ``lease_seconds`` default (``--lease-seconds``)."""
STORAGE_TIMEOUT = 10.0
"""``pop3_maildrop.PostgresStorage``'s ``timeout`` default (``--storage-timeout``)."""
