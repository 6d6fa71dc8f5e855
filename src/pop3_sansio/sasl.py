"""SASL (RFC 4422, RFC 5034) for both roles: mechanisms, their steps, SASLprep.

Every name is imported on first use (PEP 562).
"""

from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._sasl import (
        SUPPORTED_CLIENT_MECHANISMS as SUPPORTED_CLIENT_MECHANISMS,
    )
    from ._sasl import (
        SUPPORTED_SERVER_MECHANISMS as SUPPORTED_SERVER_MECHANISMS,
    )
    from ._sasl import (
        TOKEN_MECHANISMS as TOKEN_MECHANISMS,
    )
    from ._sasl import (
        CheckPassword as CheckPassword,
    )
    from ._sasl import (
        CheckToken as CheckToken,
    )
    from ._sasl import (
        ClientMechanism as ClientMechanism,
    )
    from ._sasl import (
        CramMD5Client as CramMD5Client,
    )
    from ._sasl import (
        CramMD5Server as CramMD5Server,
    )
    from ._sasl import (
        Failed as Failed,
    )
    from ._sasl import (
        LoginClient as LoginClient,
    )
    from ._sasl import (
        LoginServer as LoginServer,
    )
    from ._sasl import (
        LookupScram as LookupScram,
    )
    from ._sasl import (
        LookupSecret as LookupSecret,
    )
    from ._sasl import (
        OAuthBearerClient as OAuthBearerClient,
    )
    from ._sasl import (
        OAuthBearerServer as OAuthBearerServer,
    )
    from ._sasl import (
        PlainClient as PlainClient,
    )
    from ._sasl import (
        PlainServer as PlainServer,
    )
    from ._sasl import (
        ScramClient as ScramClient,
    )
    from ._sasl import (
        ScramCredentials as ScramCredentials,
    )
    from ._sasl import (
        ScramServer as ScramServer,
    )
    from ._sasl import (
        ScramSHA1Client as ScramSHA1Client,
    )
    from ._sasl import (
        ScramSHA1Server as ScramSHA1Server,
    )
    from ._sasl import (
        ScramSHA256Client as ScramSHA256Client,
    )
    from ._sasl import (
        ScramSHA256Server as ScramSHA256Server,
    )
    from ._sasl import (
        SendChallenge as SendChallenge,
    )
    from ._sasl import (
        ServerMechanism as ServerMechanism,
    )
    from ._sasl import (
        Step as Step,
    )
    from ._sasl import (
        Succeeded as Succeeded,
    )
    from ._sasl import (
        XOAuth2Client as XOAuth2Client,
    )
    from ._sasl import (
        XOAuth2Server as XOAuth2Server,
    )
    from ._sasl import (
        client_mechanism as client_mechanism,
    )
    from ._sasl import (
        saslprep as saslprep,
    )
    from ._sasl import (
        server_mechanism as server_mechanism,
    )

__all__ = [
    "SUPPORTED_CLIENT_MECHANISMS",
    "SUPPORTED_SERVER_MECHANISMS",
    "TOKEN_MECHANISMS",
    "CheckPassword",
    "CheckToken",
    "ClientMechanism",
    "CramMD5Client",
    "CramMD5Server",
    "Failed",
    "LoginClient",
    "LoginServer",
    "LookupScram",
    "LookupSecret",
    "OAuthBearerClient",
    "OAuthBearerServer",
    "PlainClient",
    "PlainServer",
    "ScramClient",
    "ScramCredentials",
    "ScramSHA1Client",
    "ScramSHA1Server",
    "ScramSHA256Client",
    "ScramSHA256Server",
    "ScramServer",
    "SendChallenge",
    "ServerMechanism",
    "Step",
    "Succeeded",
    "XOAuth2Client",
    "XOAuth2Server",
    "client_mechanism",
    "saslprep",
    "server_mechanism",
]

_EXPORTS = {
    "SUPPORTED_CLIENT_MECHANISMS": "_sasl",
    "SUPPORTED_SERVER_MECHANISMS": "_sasl",
    "TOKEN_MECHANISMS": "_sasl",
    "CheckPassword": "_sasl",
    "CheckToken": "_sasl",
    "ClientMechanism": "_sasl",
    "CramMD5Client": "_sasl",
    "CramMD5Server": "_sasl",
    "Failed": "_sasl",
    "LoginClient": "_sasl",
    "LoginServer": "_sasl",
    "LookupScram": "_sasl",
    "LookupSecret": "_sasl",
    "OAuthBearerClient": "_sasl",
    "OAuthBearerServer": "_sasl",
    "PlainClient": "_sasl",
    "PlainServer": "_sasl",
    "ScramClient": "_sasl",
    "ScramCredentials": "_sasl",
    "ScramSHA1Client": "_sasl",
    "ScramSHA1Server": "_sasl",
    "ScramSHA256Client": "_sasl",
    "ScramSHA256Server": "_sasl",
    "ScramServer": "_sasl",
    "SendChallenge": "_sasl",
    "ServerMechanism": "_sasl",
    "Step": "_sasl",
    "Succeeded": "_sasl",
    "XOAuth2Client": "_sasl",
    "XOAuth2Server": "_sasl",
    "client_mechanism": "_sasl",
    "saslprep": "_sasl",
    "server_mechanism": "_sasl",
}
"""Each name and the private module that defines it."""

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
