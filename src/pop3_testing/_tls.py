"""Certificates for tests: one throwaway certificate authority per process, from trustme."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trustme

__all__ = ["TlsMaterial", "tls_material"]

INSTALL_HINT = "pip install 'pop3-sansio[testing]'"

# The names the server certificate is valid for: what a test connects to.
CERTIFICATE_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsMaterial:
    """A CA, the server context its certificate is loaded in, and the CA's PEM."""

    ca: trustme.CA
    server_context: ssl.SSLContext
    ca_pem: bytes

    def client_context(self) -> ssl.SSLContext:
        """A new client context that trusts the CA only, and verifies as by default."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@functools.cache
def tls_material() -> TlsMaterial:
    """The process's test CA and server certificate, made on first use (a few ms).

    ``ModuleNotFoundError`` naming the extra to install when trustme is missing.
    """
    try:
        import trustme
    except ImportError:
        raise ModuleNotFoundError(
            f"TLS in pop3_testing needs trustme: {INSTALL_HINT}", name="trustme"
        ) from None
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*CERTIFICATE_NAMES).configure_cert(context)
    return TlsMaterial(ca, context, ca.cert_pem.bytes())
