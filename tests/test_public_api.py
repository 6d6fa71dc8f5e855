"""The public names of every package stay importable from where they are today.

The lists are frozen here on purpose, not read from ``__all__`` at run time: a
name may move to another module, but ``from package import name`` must keep
working. A name that is retired on purpose leaves this file in the same commit,
with a deprecation test of its own.
"""

from __future__ import annotations

import importlib

import pytest

import pop3_sansio

# pop3_sansio, grouped by topic; each group sorted.
SANSIO_PROTOCOL = [
    "ClientConnection",
    "DEFAULT_MAX_BUFFER_SIZE",
    "LocalProtocolError",
    "MAX_COMMAND_LENGTH",
    "MAX_RESPONSE_LINE_LENGTH",
    "MAX_SASL_LINE_LENGTH",
    "NEED_DATA",
    "PAUSED",
    "ProtocolError",
    "RemoteProtocolError",
    "Sentinel",
    "ServerConnection",
    "State",
]
SANSIO_EVENTS = [
    "Apop",
    "Auth",
    "Capa",
    "Command",
    "ConnectionClosed",
    "Data",
    "Dele",
    "EndOfResponse",
    "Err",
    "Event",
    "Greeting",
    "List",
    "Noop",
    "Ok",
    "Pass",
    "Quit",
    "Response",
    "Retr",
    "Rset",
    "SaslCancel",
    "SaslChallenge",
    "SaslResponse",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "UnknownCommand",
    "User",
    "Utf8",
]
SANSIO_CODES_AND_CODEC = [
    "AUTH",
    "BodyDecoder",
    "BodyEncoder",
    "Capabilities",
    "IN_USE",
    "LOGIN_DELAY",
    "ResponseCode",
    "SYS_PERM",
    "SYS_TEMP",
    "TopFilter",
    "UTF8",
    "apop_digest",
    "b64decode_strict",
    "b64encode",
    "check_apop_digest",
    "encode_command",
    "find_timestamp",
    "make_timestamp",
    "message_size",
    "parse_scan_line",
    "parse_scan_listing",
    "parse_stat",
    "parse_uid_line",
    "parse_uid_listing",
    "split_response_code",
]
SANSIO_CLIENT = [
    "AsyncClient",
    "AuthError",
    "Chunk",
    "ClientSession",
    "InUseError",
    "Instruction",
    "LoginDelayError",
    "MessageTooLargeError",
    "PermanentError",
    "Pop3Error",
    "READ",
    "TemporaryError",
    "TlsMode",
    "Write",
    "default_port",
    "is_loopback_address",
]
# Backend and Maildrop (the storage Protocols) were retired on purpose: they warn and
# point to pop3_sansio.server.BackendProtocol/MaildropProtocol (tests/test_public_modules.py).
SANSIO_SERVER = [
    "AcceptPause",
    "AddressCounter",
    "Call",
    "CloseConnection",
    "CommitDeletions",
    "MaildropError",
    "MaildropLockedError",
    "MessageInfo",
    "OpenMaildrop",
    "ReadMessage",
    "Request",
    "ServerOptions",
    "ServerSession",
    "SessionDriver",
    "Sleep",
    "StartTls",
    "peer_host",
    "refusal",
]
SANSIO_SASL = [
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
    "SUPPORTED_CLIENT_MECHANISMS",
    "SUPPORTED_SERVER_MECHANISMS",
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
    "TOKEN_MECHANISMS",
    "XOAuth2Client",
    "XOAuth2Server",
    "client_mechanism",
    "saslprep",
    "server_mechanism",
]
SANSIO_PROXY = [
    "MAX_PROXY_V1_LENGTH",
    "MAX_PROXY_V2_LENGTH",
    "PROXY_V2_SIGNATURE",
    "ProxyCommand",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyParser",
]
SANSIO = (
    SANSIO_PROTOCOL
    + SANSIO_EVENTS
    + SANSIO_CODES_AND_CODEC
    + SANSIO_CLIENT
    + SANSIO_SERVER
    + SANSIO_SASL
    + SANSIO_PROXY
)

# The client exceptions every binding re-exports from pop3_sansio.
_CLIENT_ERRORS = [
    "AuthError",
    "InUseError",
    "LoginDelayError",
    "MessageTooLargeError",
    "PermanentError",
    "Pop3Error",
    "ProtocolError",
    "RemoteProtocolError",
    "TemporaryError",
]
BINDINGS = {
    "pop3_asyncio": [
        "AuthError",
        "Client",
        "InUseError",
        "LoginDelayError",
        "MessageTooLargeError",
        "PermanentError",
        "Pop3ConnectionError",
        "Pop3ConnectionRefusedError",
        "Pop3Error",
        "Pop3TimeoutError",
        "ProtocolError",
        "RemoteProtocolError",
        "Server",
        "ServerOptions",
        "TemporaryError",
        "connect",
        "serve",
    ],
    "pop3_trio": [
        "AuthError",
        "BrokenConnectionError",
        "Client",
        "InUseError",
        "LoginDelayError",
        "MessageTooLargeError",
        "OperationTimeoutError",
        "PermanentError",
        "Pop3ConnectionError",
        "Pop3ConnectionRefusedError",
        "Pop3Error",
        "Pop3TimeoutError",
        "ProtocolError",
        "RemoteProtocolError",
        "Server",
        "ServerOptions",
        "TemporaryError",
        "connect",
        "serve",
    ],
    "pop3_sync": [
        "AuthError",
        "Client",
        "InUseError",
        "LoginDelayError",
        "MessageTooLargeError",
        "PermanentError",
        "Pop3ConnectionError",
        "Pop3ConnectionRefusedError",
        "Pop3Error",
        "Pop3TimeoutError",
        "ProtocolError",
        "RemoteProtocolError",
        "Server",
        "ServerOptions",
        "TemporaryError",
        "Timeout",
        "connect",
        "serve",
    ],
    "pop3_sync.poplib": ["POP3", "POP3_SSL", "error_proto"],
    "pop3_maildrop": [
        "Backend",
        "HASH_SCHEMES",
        "MaildirStorage",
        "Maildrop",
        "MaildropError",
        "MaildropLocked",
        "MboxStorage",
        "MemoryStorage",
        "PostgresStorage",
        "Storage",
        "StorageUnavailableError",
        "UserDB",
        "hash_password",
        "read_eml_dir",
        "verify_password",
    ],
    "pop3_testing": [
        "AsyncPop3TestServer",
        "DEFAULT_PASSWORD",
        "DEFAULT_USER",
        "MessageSource",
        "Pop3TestServer",
        "StoredMessage",
        "default_options",
    ],
    "pop3_testing.plugin": ["pop3_server", "pop3_starttls_server", "pop3_tls_server"],
}

# Names a package re-exports from pop3_sansio: the same object, so that
# ``except pop3_sansio.Pop3Error`` catches what ``pop3_sync`` raises.
REEXPORTS = [
    *(
        (binding, name, name)
        for binding in ("pop3_asyncio", "pop3_trio", "pop3_sync")
        for name in _CLIENT_ERRORS
    ),
    *(
        (binding, "ServerOptions", "ServerOptions")
        for binding in ("pop3_asyncio", "pop3_trio", "pop3_sync")
    ),
    ("pop3_maildrop", "MaildropError", "MaildropError"),
    ("pop3_maildrop", "MaildropLocked", "MaildropLockedError"),
]


def test_frozen_lists_are_sorted_and_distinct() -> None:
    """The lists stay readable: each group sorted, no name twice."""
    groups = [
        SANSIO_PROTOCOL,
        SANSIO_EVENTS,
        SANSIO_CODES_AND_CODEC,
        SANSIO_CLIENT,
        SANSIO_SERVER,
        SANSIO_SASL,
        SANSIO_PROXY,
        *BINDINGS.values(),
    ]
    for group in groups:
        assert group == sorted(group)
    assert len(set(SANSIO)) == len(SANSIO)
    for names in BINDINGS.values():
        assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", SANSIO)
def test_pop3_sansio_name_importable(name: str) -> None:
    """Every name of today's ``pop3_sansio.__all__`` is importable from ``pop3_sansio``."""
    namespace: dict[str, object] = {}
    exec(f"from pop3_sansio import {name}", namespace)  # the spelling users write
    assert namespace[name] is getattr(pop3_sansio, name)


@pytest.mark.parametrize(
    ("module", "name"), [(module, name) for module, names in BINDINGS.items() for name in names]
)
def test_binding_name_importable(module: str, name: str) -> None:
    """Every name of the bindings' and ``pop3_maildrop``'s ``__all__`` stays importable."""
    package = importlib.import_module(module)
    namespace: dict[str, object] = {}
    exec(f"from {module} import {name}", namespace)
    assert namespace[name] is getattr(package, name)


@pytest.mark.parametrize(("module", "name", "sansio_name"), REEXPORTS)
def test_reexports_are_the_core_objects(module: str, name: str, sansio_name: str) -> None:
    """A name a package takes from ``pop3_sansio`` is that very object."""
    assert getattr(importlib.import_module(module), name) is getattr(pop3_sansio, sansio_name)


def test_today_all_is_covered() -> None:
    """The frozen lists hold every name exported today: none was forgotten here.

    Only a superset check: the reshaping may shrink ``__all__`` (the names move
    to submodules), never the importable names.
    """
    assert set(pop3_sansio.__all__) <= set(SANSIO)
    for module, names in BINDINGS.items():
        assert set(importlib.import_module(module).__all__) <= set(names)
