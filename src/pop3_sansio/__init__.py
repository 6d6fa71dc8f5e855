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
        AsyncClient as AsyncClient,
        AuthError as AuthError,
        Capabilities as Capabilities,
        Chunk as Chunk,
        ClientSession as ClientSession,
        Instruction as Instruction,
        InUseError as InUseError,
        LoginDelayError as LoginDelayError,
        MessageTooLargeError as MessageTooLargeError,
        PermanentError as PermanentError,
        Pop3Error as Pop3Error,
        StartTls as StartTls,
        TemporaryError as TemporaryError,
        TlsMode as TlsMode,
        Write as Write,
        default_port as default_port,
        is_loopback_address as is_loopback_address,
    )
    from .codec import (
        AUTH as AUTH,
        IN_USE as IN_USE,
        LOGIN_DELAY as LOGIN_DELAY,
        SYS_PERM as SYS_PERM,
        SYS_TEMP as SYS_TEMP,
        UTF8 as UTF8,
        BodyDecoder as BodyDecoder,
        BodyEncoder as BodyEncoder,
        TopFilter as TopFilter,
        apop_digest as apop_digest,
        b64decode_strict as b64decode_strict,
        b64encode as b64encode,
        check_apop_digest as check_apop_digest,
        encode_command as encode_command,
        find_timestamp as find_timestamp,
        make_timestamp as make_timestamp,
        message_size as message_size,
        parse_scan_line as parse_scan_line,
        parse_scan_listing as parse_scan_listing,
        parse_stat as parse_stat,
        parse_uid_line as parse_uid_line,
        parse_uid_listing as parse_uid_listing,
        split_response_code as split_response_code,
    )
    from .proxy import (
        MAX_PROXY_V1_LENGTH as MAX_PROXY_V1_LENGTH,
        MAX_PROXY_V2_LENGTH as MAX_PROXY_V2_LENGTH,
        PROXY_V2_SIGNATURE as PROXY_V2_SIGNATURE,
        ProxyCommand as ProxyCommand,
        ProxyHeader as ProxyHeader,
        ProxyHeaderError as ProxyHeaderError,
        ProxyParser as ProxyParser,
    )
    from .sasl import (
        SUPPORTED_CLIENT_MECHANISMS as SUPPORTED_CLIENT_MECHANISMS,
        SUPPORTED_SERVER_MECHANISMS as SUPPORTED_SERVER_MECHANISMS,
        TOKEN_MECHANISMS as TOKEN_MECHANISMS,
        CheckPassword as CheckPassword,
        CheckToken as CheckToken,
        ClientMechanism as ClientMechanism,
        CramMD5Client as CramMD5Client,
        CramMD5Server as CramMD5Server,
        Failed as Failed,
        LoginClient as LoginClient,
        LoginServer as LoginServer,
        LookupScram as LookupScram,
        LookupSecret as LookupSecret,
        OAuthBearerClient as OAuthBearerClient,
        OAuthBearerServer as OAuthBearerServer,
        PlainClient as PlainClient,
        PlainServer as PlainServer,
        ScramClient as ScramClient,
        ScramCredentials as ScramCredentials,
        ScramServer as ScramServer,
        ScramSHA1Client as ScramSHA1Client,
        ScramSHA1Server as ScramSHA1Server,
        ScramSHA256Client as ScramSHA256Client,
        ScramSHA256Server as ScramSHA256Server,
        SendChallenge as SendChallenge,
        ServerMechanism as ServerMechanism,
        Step as Step,
        Succeeded as Succeeded,
        XOAuth2Client as XOAuth2Client,
        XOAuth2Server as XOAuth2Server,
        client_mechanism as client_mechanism,
        saslprep as saslprep,
        server_mechanism as server_mechanism,
    )
    from .server import (
        AcceptPause as AcceptPause,
        AddressCounter as AddressCounter,
        BackendProtocol,
        Call as Call,
        CloseConnection as CloseConnection,
        CommitDeletions as CommitDeletions,
        MaildropError as MaildropError,
        MaildropLockedError as MaildropLockedError,
        MaildropProtocol,
        MessageInfo as MessageInfo,
        OpenMaildrop as OpenMaildrop,
        ReadMessage as ReadMessage,
        Request as Request,
        ServerOptions as ServerOptions,
        ServerSession as ServerSession,
        SessionDriver as SessionDriver,
        Sleep as Sleep,
        peer_host as peer_host,
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
