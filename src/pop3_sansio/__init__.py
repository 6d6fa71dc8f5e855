"""pop3_sansio: a pure, I/O-free POP3 engine for the client and the server role.

Bytes in, events out; events in, bytes out -- in the manner of h11. Nothing
here opens a socket, reads a file or looks at a clock.

The top level is the protocol: the two connections, their states, the events,
the errors and the limits. The roles' code is in public submodules:
``pop3_sansio.client``, ``pop3_sansio.server``, ``pop3_sansio.sasl``,
``pop3_sansio.proxy`` and ``pop3_sansio.codec``. Their names stay reachable
from here (PEP 562, imported on first use) for code written before they moved.
"""

from __future__ import annotations

from ._codes import (
    ResponseCode,
)
from ._connection import (
    DEFAULT_MAX_BUFFER_SIZE,
    MAX_COMMAND_LENGTH,
    MAX_RESPONSE_LINE_LENGTH,
    MAX_SASL_LINE_LENGTH,
    ClientConnection,
    ServerConnection,
)
from ._errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ._events import (
    Apop,
    Auth,
    Capa,
    Command,
    ConnectionClosed,
    Data,
    Dele,
    EndOfResponse,
    Err,
    Event,
    Greeting,
    List,
    Noop,
    Ok,
    Pass,
    Quit,
    Response,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    Stls,
    Top,
    Uidl,
    UnknownCommand,
    User,
    Utf8,
)
from ._state import (
    NEED_DATA,
    PAUSED,
    Sentinel,
    State,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from .client import (
        READ as READ,
    )
    from .client import (
        AsyncClient as AsyncClient,
    )
    from .client import (
        AuthError as AuthError,
    )
    from .client import (
        Capabilities as Capabilities,
    )
    from .client import (
        Chunk as Chunk,
    )
    from .client import (
        ClientSession as ClientSession,
    )
    from .client import (
        Instruction as Instruction,
    )
    from .client import (
        InUseError as InUseError,
    )
    from .client import (
        LoginDelayError as LoginDelayError,
    )
    from .client import (
        MessageTooLargeError as MessageTooLargeError,
    )
    from .client import (
        PermanentError as PermanentError,
    )
    from .client import (
        Pop3Error as Pop3Error,
    )
    from .client import (
        StartTls as StartTls,
    )
    from .client import (
        TemporaryError as TemporaryError,
    )
    from .client import (
        TlsMode as TlsMode,
    )
    from .client import (
        Write as Write,
    )
    from .client import (
        default_port as default_port,
    )
    from .client import (
        is_loopback_address as is_loopback_address,
    )
    from .codec import (
        AUTH as AUTH,
    )
    from .codec import (
        IN_USE as IN_USE,
    )
    from .codec import (
        LOGIN_DELAY as LOGIN_DELAY,
    )
    from .codec import (
        SYS_PERM as SYS_PERM,
    )
    from .codec import (
        SYS_TEMP as SYS_TEMP,
    )
    from .codec import (
        UTF8 as UTF8,
    )
    from .codec import (
        BodyDecoder as BodyDecoder,
    )
    from .codec import (
        BodyEncoder as BodyEncoder,
    )
    from .codec import (
        TopFilter as TopFilter,
    )
    from .codec import (
        apop_digest as apop_digest,
    )
    from .codec import (
        b64decode_strict as b64decode_strict,
    )
    from .codec import (
        b64encode as b64encode,
    )
    from .codec import (
        check_apop_digest as check_apop_digest,
    )
    from .codec import (
        encode_command as encode_command,
    )
    from .codec import (
        find_timestamp as find_timestamp,
    )
    from .codec import (
        make_timestamp as make_timestamp,
    )
    from .codec import (
        message_size as message_size,
    )
    from .codec import (
        parse_scan_line as parse_scan_line,
    )
    from .codec import (
        parse_scan_listing as parse_scan_listing,
    )
    from .codec import (
        parse_stat as parse_stat,
    )
    from .codec import (
        parse_uid_line as parse_uid_line,
    )
    from .codec import (
        parse_uid_listing as parse_uid_listing,
    )
    from .codec import (
        split_response_code as split_response_code,
    )
    from .proxy import (
        MAX_PROXY_V1_LENGTH as MAX_PROXY_V1_LENGTH,
    )
    from .proxy import (
        MAX_PROXY_V2_LENGTH as MAX_PROXY_V2_LENGTH,
    )
    from .proxy import (
        PROXY_V2_SIGNATURE as PROXY_V2_SIGNATURE,
    )
    from .proxy import (
        ProxyCommand as ProxyCommand,
    )
    from .proxy import (
        ProxyHeader as ProxyHeader,
    )
    from .proxy import (
        ProxyHeaderError as ProxyHeaderError,
    )
    from .proxy import (
        ProxyParser as ProxyParser,
    )
    from .sasl import (
        SUPPORTED_CLIENT_MECHANISMS as SUPPORTED_CLIENT_MECHANISMS,
    )
    from .sasl import (
        SUPPORTED_SERVER_MECHANISMS as SUPPORTED_SERVER_MECHANISMS,
    )
    from .sasl import (
        TOKEN_MECHANISMS as TOKEN_MECHANISMS,
    )
    from .sasl import (
        CheckPassword as CheckPassword,
    )
    from .sasl import (
        CheckToken as CheckToken,
    )
    from .sasl import (
        ClientMechanism as ClientMechanism,
    )
    from .sasl import (
        CramMD5Client as CramMD5Client,
    )
    from .sasl import (
        CramMD5Server as CramMD5Server,
    )
    from .sasl import (
        Failed as Failed,
    )
    from .sasl import (
        LoginClient as LoginClient,
    )
    from .sasl import (
        LoginServer as LoginServer,
    )
    from .sasl import (
        LookupScram as LookupScram,
    )
    from .sasl import (
        LookupSecret as LookupSecret,
    )
    from .sasl import (
        OAuthBearerClient as OAuthBearerClient,
    )
    from .sasl import (
        OAuthBearerServer as OAuthBearerServer,
    )
    from .sasl import (
        PlainClient as PlainClient,
    )
    from .sasl import (
        PlainServer as PlainServer,
    )
    from .sasl import (
        ScramClient as ScramClient,
    )
    from .sasl import (
        ScramCredentials as ScramCredentials,
    )
    from .sasl import (
        ScramServer as ScramServer,
    )
    from .sasl import (
        ScramSHA1Client as ScramSHA1Client,
    )
    from .sasl import (
        ScramSHA1Server as ScramSHA1Server,
    )
    from .sasl import (
        ScramSHA256Client as ScramSHA256Client,
    )
    from .sasl import (
        ScramSHA256Server as ScramSHA256Server,
    )
    from .sasl import (
        SendChallenge as SendChallenge,
    )
    from .sasl import (
        ServerMechanism as ServerMechanism,
    )
    from .sasl import (
        Step as Step,
    )
    from .sasl import (
        Succeeded as Succeeded,
    )
    from .sasl import (
        XOAuth2Client as XOAuth2Client,
    )
    from .sasl import (
        XOAuth2Server as XOAuth2Server,
    )
    from .sasl import (
        client_mechanism as client_mechanism,
    )
    from .sasl import (
        saslprep as saslprep,
    )
    from .sasl import (
        server_mechanism as server_mechanism,
    )
    from .server import (
        AcceptPause as AcceptPause,
    )
    from .server import (
        AddressCounter as AddressCounter,
    )
    from .server import BackendProtocol, MaildropProtocol
    from .server import (
        Call as Call,
    )
    from .server import (
        CloseConnection as CloseConnection,
    )
    from .server import (
        CommitDeletions as CommitDeletions,
    )
    from .server import (
        MaildropError as MaildropError,
    )
    from .server import (
        MaildropLockedError as MaildropLockedError,
    )
    from .server import (
        MessageInfo as MessageInfo,
    )
    from .server import (
        OpenMaildrop as OpenMaildrop,
    )
    from .server import (
        ReadMessage as ReadMessage,
    )
    from .server import (
        Request as Request,
    )
    from .server import (
        ServerOptions as ServerOptions,
    )
    from .server import (
        ServerSession as ServerSession,
    )
    from .server import (
        SessionDriver as SessionDriver,
    )
    from .server import (
        Sleep as Sleep,
    )
    from .server import (
        peer_host as peer_host,
    )
    from .server import (
        refusal as refusal,
    )

    Backend = BackendProtocol  # deprecated, see _DEPRECATED
    Maildrop = MaildropProtocol

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_MAX_BUFFER_SIZE",
    "MAX_COMMAND_LENGTH",
    "MAX_RESPONSE_LINE_LENGTH",
    "MAX_SASL_LINE_LENGTH",
    "NEED_DATA",
    "PAUSED",
    "Apop",
    "Auth",
    "Capa",
    "ClientConnection",
    "Command",
    "ConnectionClosed",
    "Data",
    "Dele",
    "EndOfResponse",
    "Err",
    "Event",
    "Greeting",
    "List",
    "LocalProtocolError",
    "Noop",
    "Ok",
    "Pass",
    "ProtocolError",
    "Quit",
    "RemoteProtocolError",
    "Response",
    "ResponseCode",
    "Retr",
    "Rset",
    "SaslCancel",
    "SaslChallenge",
    "SaslResponse",
    "Sentinel",
    "ServerConnection",
    "Stat",
    "State",
    "Stls",
    "Top",
    "Uidl",
    "UnknownCommand",
    "User",
    "Utf8",
]

_MOVED = {
    "READ": "client",
    "AsyncClient": "client",
    "AuthError": "client",
    "Capabilities": "client",
    "Chunk": "client",
    "ClientSession": "client",
    "InUseError": "client",
    "Instruction": "client",
    "LoginDelayError": "client",
    "MessageTooLargeError": "client",
    "PermanentError": "client",
    "Pop3Error": "client",
    "StartTls": "client",
    "TemporaryError": "client",
    "TlsMode": "client",
    "Write": "client",
    "default_port": "client",
    "is_loopback_address": "client",
    "AUTH": "codec",
    "IN_USE": "codec",
    "LOGIN_DELAY": "codec",
    "SYS_PERM": "codec",
    "SYS_TEMP": "codec",
    "UTF8": "codec",
    "BodyDecoder": "codec",
    "BodyEncoder": "codec",
    "TopFilter": "codec",
    "apop_digest": "codec",
    "b64decode_strict": "codec",
    "b64encode": "codec",
    "check_apop_digest": "codec",
    "encode_command": "codec",
    "find_timestamp": "codec",
    "make_timestamp": "codec",
    "message_size": "codec",
    "parse_scan_line": "codec",
    "parse_scan_listing": "codec",
    "parse_stat": "codec",
    "parse_uid_line": "codec",
    "parse_uid_listing": "codec",
    "split_response_code": "codec",
    "MAX_PROXY_V1_LENGTH": "proxy",
    "MAX_PROXY_V2_LENGTH": "proxy",
    "PROXY_V2_SIGNATURE": "proxy",
    "ProxyCommand": "proxy",
    "ProxyHeader": "proxy",
    "ProxyHeaderError": "proxy",
    "ProxyParser": "proxy",
    "SUPPORTED_CLIENT_MECHANISMS": "sasl",
    "SUPPORTED_SERVER_MECHANISMS": "sasl",
    "TOKEN_MECHANISMS": "sasl",
    "CheckPassword": "sasl",
    "CheckToken": "sasl",
    "ClientMechanism": "sasl",
    "CramMD5Client": "sasl",
    "CramMD5Server": "sasl",
    "Failed": "sasl",
    "LoginClient": "sasl",
    "LoginServer": "sasl",
    "LookupScram": "sasl",
    "LookupSecret": "sasl",
    "OAuthBearerClient": "sasl",
    "OAuthBearerServer": "sasl",
    "PlainClient": "sasl",
    "PlainServer": "sasl",
    "ScramClient": "sasl",
    "ScramCredentials": "sasl",
    "ScramSHA1Client": "sasl",
    "ScramSHA1Server": "sasl",
    "ScramSHA256Client": "sasl",
    "ScramSHA256Server": "sasl",
    "ScramServer": "sasl",
    "SendChallenge": "sasl",
    "ServerMechanism": "sasl",
    "Step": "sasl",
    "Succeeded": "sasl",
    "XOAuth2Client": "sasl",
    "XOAuth2Server": "sasl",
    "client_mechanism": "sasl",
    "saslprep": "sasl",
    "server_mechanism": "sasl",
    "AcceptPause": "server",
    "AddressCounter": "server",
    "Call": "server",
    "CloseConnection": "server",
    "CommitDeletions": "server",
    "MaildropError": "server",
    "MaildropLockedError": "server",
    "MessageInfo": "server",
    "OpenMaildrop": "server",
    "ReadMessage": "server",
    "Request": "server",
    "ServerOptions": "server",
    "ServerSession": "server",
    "SessionDriver": "server",
    "Sleep": "server",
    "peer_host": "server",
    "refusal": "server",
}
"""Names that moved to a public submodule; still served here, without a warning."""

_DEPRECATED = {
    "Backend": (
        "BackendProtocol",
        "pop3_sansio.Backend is the storage Protocol; use pop3_sansio.server.BackendProtocol "
        "(the class that implements it is pop3_maildrop.Backend)",
    ),
    "Maildrop": (
        "MaildropProtocol",
        "pop3_sansio.Maildrop is the maildrop Protocol; use "
        "pop3_sansio.server.MaildropProtocol (the class is pop3_maildrop.Maildrop)",
    ),
}
"""Old names that misled (a Protocol named like a class of pop3_maildrop): they warn."""


if not TYPE_CHECKING:  # pragma: no branch - mypy sees the names above, not a catch-all

    def __getattr__(name: str) -> object:
        if name in _DEPRECATED:
            import warnings

            new, message = _DEPRECATED[name]
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            from . import server

            return getattr(server, new)
        source = _MOVED.get(name)
        if source is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(__import__(f"pop3_sansio.{source}", fromlist=[name]), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__, *_MOVED})
