"""The server role: the session, its driver, options, lifecycle, storage protocols, accept policy.

``ServerSession`` answers commands and asks its binding for storage through
requests; ``SessionDriver`` runs it against a backend that implements
``BackendProtocol`` (``pop3_maildrop.Backend`` is one).

Every name is imported on first use (PEP 562).
"""

from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._accept import (
        AcceptPause as AcceptPause,
        refusal as refusal,
    )
    from ._capabilities import (
        Capabilities as Capabilities,
    )
    from ._instructions import (
        READ as READ,
        StartTls as StartTls,
        Write as Write,
    )
    from ._lifecycle import (
        HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT,
        HandshakeTimeoutError as HandshakeTimeoutError,
        SessionLifecycle as SessionLifecycle,
        SessionLog as SessionLog,
        SessionRun as SessionRun,
    )
    from ._net import (
        is_loopback_address as is_loopback_address,
        peer_host as peer_host,
    )
    from ._server_driver import (
        Call as Call,
        SessionDriver as SessionDriver,
        Sleep as Sleep,
    )
    from ._server_options import (
        AddressCounter as AddressCounter,
        ServerKeywords as ServerKeywords,
        ServerOptions as ServerOptions,
    )
    from ._server_session import (
        CloseConnection as CloseConnection,
        CommitDeletions as CommitDeletions,
        OpenMaildrop as OpenMaildrop,
        ReadMessage as ReadMessage,
        Request as Request,
        ServerSession as ServerSession,
    )
    from ._serverlog import (
        LoginAttempt as LoginAttempt,
        SessionEnd as SessionEnd,
    )
    from ._storage import (
        BackendProtocol as BackendProtocol,
        MaildropError as MaildropError,
        MaildropLockedError as MaildropLockedError,
        MaildropProtocol as MaildropProtocol,
        MessageInfo as MessageInfo,
    )

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "READ",
    "AcceptPause",
    "AddressCounter",
    "BackendProtocol",
    "Call",
    "Capabilities",
    "CloseConnection",
    "CommitDeletions",
    "HandshakeTimeoutError",
    "LoginAttempt",
    "MaildropError",
    "MaildropLockedError",
    "MaildropProtocol",
    "MessageInfo",
    "OpenMaildrop",
    "ReadMessage",
    "Request",
    "ServerKeywords",
    "ServerOptions",
    "ServerSession",
    "SessionDriver",
    "SessionEnd",
    "SessionLifecycle",
    "SessionLog",
    "SessionRun",
    "Sleep",
    "StartTls",
    "Write",
    "is_loopback_address",
    "peer_host",
    "refusal",
]

_EXPORTS = {
    "HANDSHAKE_TIMEOUT": "_lifecycle",
    "READ": "_instructions",
    "AcceptPause": "_accept",
    "AddressCounter": "_server_options",
    "BackendProtocol": "_storage",
    "Call": "_server_driver",
    "Capabilities": "_capabilities",
    "CloseConnection": "_server_session",
    "CommitDeletions": "_server_session",
    "HandshakeTimeoutError": "_lifecycle",
    "LoginAttempt": "_serverlog",
    "MaildropError": "_storage",
    "MaildropLockedError": "_storage",
    "MaildropProtocol": "_storage",
    "MessageInfo": "_storage",
    "OpenMaildrop": "_server_session",
    "ReadMessage": "_server_session",
    "Request": "_server_session",
    "ServerKeywords": "_server_options",
    "ServerOptions": "_server_options",
    "ServerSession": "_server_session",
    "SessionDriver": "_server_driver",
    "SessionEnd": "_serverlog",
    "SessionLifecycle": "_lifecycle",
    "SessionLog": "_lifecycle",
    "SessionRun": "_lifecycle",
    "Sleep": "_server_driver",
    "StartTls": "_instructions",
    "Write": "_instructions",
    "is_loopback_address": "_net",
    "peer_host": "_net",
    "refusal": "_accept",
}
"""Each name and the private module that defines it."""

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
