"""The client role: sessions, the async client core, I/O instructions and errors.

``ClientSession`` is the sans-IO client (a generator per operation);
``AsyncClient`` is the part of an async client that is the same for every event
loop; ``ClientGuard`` holds the rules for using one connection that it and
``pop3_sync.Client`` share. ``Pop3Error`` and its subclasses are what an ``-ERR`` becomes;
``Pop3TimeoutError``, ``Pop3ConnectionError`` and ``Pop3ConnectionRefusedError`` what a
timeout or a failure to connect becomes, in every binding (docs/errors.md). SASL is
loaded only when a SASL login or ``auth`` is used (``pop3_sansio.sasl``).

Every name is imported on first use (PEP 562).
"""

from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._async_client import (
        AsyncClient as AsyncClient,
    )
    from ._capabilities import (
        Capabilities as Capabilities,
    )
    from ._client_guard import (
        ClientGuard as ClientGuard,
    )
    from ._client_session import (
        MAX_LISTING_SIZE as MAX_LISTING_SIZE,
        Chunk as Chunk,
        ClientSession as ClientSession,
        Instruction as Instruction,
    )
    from ._errors import (
        AuthError as AuthError,
        InUseError as InUseError,
        LoginDelayError as LoginDelayError,
        MessageTooLargeError as MessageTooLargeError,
        PermanentError as PermanentError,
        Pop3ConnectionError as Pop3ConnectionError,
        Pop3ConnectionRefusedError as Pop3ConnectionRefusedError,
        Pop3Error as Pop3Error,
        Pop3TimeoutError as Pop3TimeoutError,
        TemporaryError as TemporaryError,
    )
    from ._instructions import (
        READ as READ,
        StartTls as StartTls,
        Write as Write,
    )
    from ._net import (
        TlsMode as TlsMode,
        default_port as default_port,
        is_loopback_address as is_loopback_address,
    )

__all__ = [
    "MAX_LISTING_SIZE",
    "READ",
    "AsyncClient",
    "AuthError",
    "Capabilities",
    "Chunk",
    "ClientGuard",
    "ClientSession",
    "InUseError",
    "Instruction",
    "LoginDelayError",
    "MessageTooLargeError",
    "PermanentError",
    "Pop3ConnectionError",
    "Pop3ConnectionRefusedError",
    "Pop3Error",
    "Pop3TimeoutError",
    "StartTls",
    "TemporaryError",
    "TlsMode",
    "Write",
    "default_port",
    "is_loopback_address",
]

_EXPORTS = {
    "MAX_LISTING_SIZE": "_client_session",
    "READ": "_instructions",
    "AsyncClient": "_async_client",
    "AuthError": "_errors",
    "Capabilities": "_capabilities",
    "Chunk": "_client_session",
    "ClientGuard": "_client_guard",
    "ClientSession": "_client_session",
    "InUseError": "_errors",
    "Instruction": "_client_session",
    "LoginDelayError": "_errors",
    "MessageTooLargeError": "_errors",
    "PermanentError": "_errors",
    "Pop3ConnectionError": "_errors",
    "Pop3ConnectionRefusedError": "_errors",
    "Pop3Error": "_errors",
    "Pop3TimeoutError": "_errors",
    "StartTls": "_instructions",
    "TemporaryError": "_errors",
    "TlsMode": "_net",
    "Write": "_instructions",
    "default_port": "_net",
    "is_loopback_address": "_net",
}
"""Each name and the private module that defines it."""

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
