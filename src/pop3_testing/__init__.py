"""pop3_testing: a POP3 server for your tests, and the ``pop3_server`` pytest fixture.

``Pop3TestServer`` serves in background threads (``pop3_sync``): use it with
``with`` from blocking code, or ``async with`` from asyncio and trio tests.
``AsyncPop3TestServer`` serves in the test's own event loop (``pop3_asyncio``,
or ``pop3_trio`` inside a trio run). Both listen on a free port of 127.0.0.1
with in-memory maildrops: add users and messages (bytes, ``email.message``
objects, ``.eml`` files), then read back which messages a client deleted.
``tls="implicit"`` or ``"starttls"`` serves a certificate from a throwaway CA
(needs trustme: ``pip install 'pop3-sansio[testing]'``).

The pytest plugin (``pop3_testing.plugin``, registered by the package's
``pytest11`` entry point) gives every test the ``pop3_server``,
``pop3_tls_server`` and ``pop3_starttls_server`` fixtures.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._async import AsyncPop3TestServer
    from ._base import (
        DEFAULT_PASSWORD,
        DEFAULT_USER,
        MessageSource,
        StoredMessage,
        default_options,
    )
    from ._threaded import Pop3TestServer
else:
    _HOMES = {
        "AsyncPop3TestServer": "_async",
        "DEFAULT_PASSWORD": "_base",
        "DEFAULT_USER": "_base",
        "MessageSource": "_base",
        "Pop3TestServer": "_threaded",
        "StoredMessage": "_base",
        "default_options": "_base",
    }

    def __getattr__(name: str) -> object:
        # Loaded on first use (PEP 562): pytest imports pop3_testing.plugin, and
        # with it this package, in every run; the servers only when a test asks.
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        globals()[name] = value
        return value


__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "AsyncPop3TestServer",
    "MessageSource",
    "Pop3TestServer",
    "StoredMessage",
    "default_options",
]
