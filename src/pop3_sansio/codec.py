"""Encoders and parsers below the connections: bodies, listings, base64, APOP, response codes.

Every name is imported on first use (PEP 562).
"""

from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._apop import (
        apop_digest as apop_digest,
        check_apop_digest as check_apop_digest,
        find_timestamp as find_timestamp,
        make_timestamp as make_timestamp,
    )
    from ._base64 import (
        b64decode_strict as b64decode_strict,
        b64encode as b64encode,
    )
    from ._capabilities import (
        Capabilities as Capabilities,
    )
    from ._codes import (
        AUTH as AUTH,
        IN_USE as IN_USE,
        LOGIN_DELAY as LOGIN_DELAY,
        SYS_PERM as SYS_PERM,
        SYS_TEMP as SYS_TEMP,
        UTF8 as UTF8,
        ResponseCode as ResponseCode,
        split_response_code as split_response_code,
    )
    from ._connection import (
        encode_command as encode_command,
    )
    from ._listing import (
        parse_scan_line as parse_scan_line,
        parse_scan_listing as parse_scan_listing,
        parse_stat as parse_stat,
        parse_uid_line as parse_uid_line,
        parse_uid_listing as parse_uid_listing,
    )
    from ._multiline import (
        BodyDecoder as BodyDecoder,
        BodyEncoder as BodyEncoder,
        TopFilter as TopFilter,
        message_size as message_size,
    )

__all__ = [
    "AUTH",
    "IN_USE",
    "LOGIN_DELAY",
    "SYS_PERM",
    "SYS_TEMP",
    "UTF8",
    "BodyDecoder",
    "BodyEncoder",
    "Capabilities",
    "ResponseCode",
    "TopFilter",
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

_EXPORTS = {
    "AUTH": "_codes",
    "IN_USE": "_codes",
    "LOGIN_DELAY": "_codes",
    "SYS_PERM": "_codes",
    "SYS_TEMP": "_codes",
    "UTF8": "_codes",
    "BodyDecoder": "_multiline",
    "BodyEncoder": "_multiline",
    "Capabilities": "_capabilities",
    "ResponseCode": "_codes",
    "TopFilter": "_multiline",
    "apop_digest": "_apop",
    "b64decode_strict": "_base64",
    "b64encode": "_base64",
    "check_apop_digest": "_apop",
    "encode_command": "_connection",
    "find_timestamp": "_apop",
    "make_timestamp": "_apop",
    "message_size": "_multiline",
    "parse_scan_line": "_listing",
    "parse_scan_listing": "_listing",
    "parse_stat": "_listing",
    "parse_uid_line": "_listing",
    "parse_uid_listing": "_listing",
    "split_response_code": "_codes",
}
"""Each name and the private module that defines it."""

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
