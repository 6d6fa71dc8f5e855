"""The PROXY protocol header (versions 1 and 2) that a load balancer puts before POP3.

Every name is imported on first use (PEP 562).
"""

from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._proxy import (
        MAX_PROXY_V1_LENGTH as MAX_PROXY_V1_LENGTH,
        MAX_PROXY_V2_LENGTH as MAX_PROXY_V2_LENGTH,
        PROXY_V2_SIGNATURE as PROXY_V2_SIGNATURE,
        ProxyCommand as ProxyCommand,
        ProxyHeader as ProxyHeader,
        ProxyHeaderError as ProxyHeaderError,
        ProxyParser as ProxyParser,
    )

__all__ = [
    "MAX_PROXY_V1_LENGTH",
    "MAX_PROXY_V2_LENGTH",
    "PROXY_V2_SIGNATURE",
    "ProxyCommand",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyParser",
]

_EXPORTS = {
    "MAX_PROXY_V1_LENGTH": "_proxy",
    "MAX_PROXY_V2_LENGTH": "_proxy",
    "PROXY_V2_SIGNATURE": "_proxy",
    "ProxyCommand": "_proxy",
    "ProxyHeader": "_proxy",
    "ProxyHeaderError": "_proxy",
    "ProxyParser": "_proxy",
}
"""Each name and the private module that defines it."""

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
