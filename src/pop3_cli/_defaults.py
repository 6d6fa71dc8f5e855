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
    "LEASE_SECONDS",
    "LOGIN_TIMEOUT",
    "MAX_SESSIONS_PER_ADDRESS",
    "POOL_MAX",
    "STORAGE_TIMEOUT",
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

POOL_MAX = 10
"""``pop3_maildrop.PostgresStorage``'s ``pool_max`` default (``--pool-max``)."""
LEASE_SECONDS = 60.0
"""``pop3_maildrop.PostgresStorage``'s ``lease_seconds`` default (``--lease-seconds``)."""
STORAGE_TIMEOUT = 10.0
"""``pop3_maildrop.PostgresStorage``'s ``timeout`` default (``--storage-timeout``)."""
