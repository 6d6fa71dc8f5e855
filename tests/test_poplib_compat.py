"""pop3_sync.poplib: CPython's own test_poplib.py run against it, and its deliberate differences.

CPython's suite is imported from the interpreter's ``test`` package; its
``poplib`` global is pointed at ``pop3_sync.poplib`` for every test. Where an
upstream test relies on a poplib defect we fixed on purpose (its client verifies
no certificate), only that step changes: the TLS set-ups and ``test_stls`` use
a context that trusts the suite's test CA. Nothing is skipped.
"""

from __future__ import annotations

import poplib as stdlib_poplib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

import pop3_sync as ps
from pop3_maildrop import Backend, MemoryStorage, UserDB
from pop3_sync import poplib as compat

upstream: Any = pytest.importorskip(
    "test.test_poplib", reason="CPython's test/test_poplib.py is not installed here"
)

VERIFIES = (
    "deliberate difference: without a context, pop3_sync.poplib verifies the certificate "
    "and host name (ssl.create_default_context()); the upstream dummy server's certificate "
    "comes from CPython's test CA, which is not trusted"
)


@pytest.fixture(autouse=True)
def _upstream_uses_pop3_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "poplib", compat)


def _variant(base: type, name: str, **attrs: Any) -> type:
    return type(name, (base,), dict(attrs))


def _trust_test_ca() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=upstream.CAFILE)


def _ssl_set_up(self: Any) -> None:
    self.server = upstream.DummyPOP3Server((upstream.HOST, upstream.PORT))
    self.server.handler = upstream.DummyPOP3_SSLHandler
    self.server.start()
    # The test certificate is for "localhost"; the dummy server listens on 127.0.0.1.
    self.client = upstream.poplib.POP3_SSL(
        "localhost", self.server.port, context=_trust_test_ca(), timeout=10
    )


def _tls_set_up(self: Any) -> None:
    self.server = upstream.DummyPOP3Server((upstream.HOST, upstream.PORT))
    self.server.start()
    self.client = upstream.poplib.POP3("localhost", self.server.port, timeout=10)
    self.client.stls(context=_trust_test_ca())


def _stls_trusting_test_ca(self: Any) -> None:
    # Upstream calls stls() without a context on a client connected to
    # 127.0.0.1, and expects success only because poplib verifies nothing.
    context = _trust_test_ca()
    context.check_hostname = False  # the test certificate names "localhost"
    self.assertEqual(self.client.stls(context=context), b"+OK Begin TLS negotiation")


TestPOP3Class = _variant(upstream.TestPOP3Class, "TestPOP3Class", test_stls=_stls_trusting_test_ca)
TestTimeouts = _variant(upstream.TestTimeouts, "TestTimeouts")
# Upstream's TestPOP3_SSLClass and TestPOP3_TLSClass connect without a context
# in their set-up, which only works with a client that verifies nothing
# (VERIFIES). They run here unchanged but for a set-up that trusts the test CA.
# The same tests, with a context that trusts the test CA.
TestPOP3_SSLClassTrustingTestCA = _variant(
    upstream.TestPOP3_SSLClass, "TestPOP3_SSLClassTrustingTestCA", setUp=_ssl_set_up
)
TestPOP3_TLSClassTrustingTestCA = _variant(
    upstream.TestPOP3_TLSClass, "TestPOP3_TLSClassTrustingTestCA", setUp=_tls_set_up
)


# --- against the pop3_sync server: same answers as the standard library, minus its defects ---

LONG_LINE = b"x" * 5000
MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nHello.\n",
    b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two\r\nno final newline",
    b"Subject: long\n\n" + LONG_LINE + b"\n",
]


class Running:
    def __init__(self, server: ps.Server, storage: MemoryStorage) -> None:
        self.server = server
        self.storage = storage
        self.port = server.port


@pytest.fixture
def running(server_ssl: ssl.SSLContext) -> Iterator[Running]:
    storage = MemoryStorage({"alice": list(MESSAGES)})
    backend = Backend(UserDB.from_pairs({"alice": "secret"}), storage)
    with ps.serve(
        backend,
        "127.0.0.1",
        0,
        failed_login_delay=0,
        starttls_context=server_ssl,
        hostname="pop.example.org",
        greeting="ready",
    ).start() as server:
        yield Running(server, storage)


def call(client: Any, name: str, *args: object) -> object:
    try:
        return getattr(client, name)(*args)
    except stdlib_poplib.error_proto as exc:
        return ("error_proto", exc.args)


def session(module: Any, port: int) -> list[object]:
    """Every command once, through ``module.POP3``; the results, or the exceptions' types."""
    client = module.POP3("127.0.0.1", port, timeout=10)
    results: list[object] = [client.getwelcome()]
    calls = [
        ("capa",),
        ("user", "alice"),
        ("pass_", "secret"),
        ("stat",),
        ("list",),
        ("list", 2),
        ("uidl",),
        ("uidl", "1"),
        ("retr", 1),
        ("retr", 2),
        ("top", 2, 1),
        ("retr", 9),
        ("noop",),
        ("dele", 1),
        ("dele", 1),
        ("rset",),
        ("utf8",),
        ("rpop", "x"),
        ("quit",),
    ]
    results += [call(client, name, *args) for name, *args in calls]
    results.append((client.sock, client.file))
    return results


def test_same_answers_as_the_standard_library(running: Running) -> None:
    ours = session(compat, running.port)
    theirs = session(stdlib_poplib, running.port)
    assert ours == theirs
    assert len(running.storage.contents("alice")) == 3


def test_long_lines_in_a_message(running: Running) -> None:
    # Deliberate: no 2048-octet limit inside a message (poplib._MAXLINE).
    client = compat.POP3("127.0.0.1", running.port, timeout=10)
    client.user("alice")
    client.pass_("secret")
    assert client.retr(3)[1] == [b"Subject: long", b"", LONG_LINE]
    client.quit()
    theirs = stdlib_poplib.POP3("127.0.0.1", running.port, timeout=10)
    theirs.user("alice")
    theirs.pass_("secret")
    with pytest.raises(stdlib_poplib.error_proto, match="line too long"):
        theirs.retr(3)
    theirs.close()


@pytest.mark.parametrize("argument", ["bob\r\nDELE 1", "bob\nDELE 1", "bob\rx", "bob\0x"])
def test_no_command_injection(running: Running, argument: str) -> None:
    client = compat.POP3("127.0.0.1", running.port, timeout=10)
    with pytest.raises(compat.error_proto, match="CR, LF or NUL"):
        client.user(argument)
    # Nothing was sent: the session is still in step.
    assert client.user("alice").startswith(b"+OK")
    assert client.pass_("secret").startswith(b"+OK")
    with pytest.raises(compat.error_proto):
        client.dele("1\r\nQUIT")
    assert client.stat()[0] == 3
    client.quit()
    assert len(running.storage.contents("alice")) == 3


def test_stls_verifies_by_default(running: Running, client_ssl: ssl.SSLContext) -> None:
    client = compat.POP3("localhost", running.port, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.stls()
    assert client.sock is None
    client = compat.POP3("localhost", running.port, timeout=10)
    assert client.stls(context=client_ssl).startswith(b"+OK")
    assert isinstance(client.sock, ssl.SSLSocket)
    with pytest.raises(compat.error_proto, match="already"):
        client.stls(context=client_ssl)
    client.user("alice")
    client.pass_("secret")
    assert client.stat()[0] == 3
    client.quit()


def test_pop3_ssl_verifies_by_default(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    storage = MemoryStorage({"alice": list(MESSAGES)})
    backend = Backend(UserDB.from_pairs({"alice": "secret"}), storage)
    with ps.serve(backend, "127.0.0.1", 0, ssl_context=server_ssl).start() as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            compat.POP3_SSL("localhost", server.port, timeout=10)
        client = compat.POP3_SSL("localhost", server.port, timeout=10, context=client_ssl)
        client.user("alice")
        client.pass_("secret")
        assert client.stat()[0] == 3
        with pytest.raises(compat.error_proto):
            client.stls()
        client.quit()


def test_apop_against_the_server() -> None:
    storage = MemoryStorage({"alice": list(MESSAGES)})
    backend = Backend(UserDB.from_pairs({"alice": "secret"}), storage)
    with ps.serve(backend, "127.0.0.1", 0, apop=True, failed_login_delay=0).start() as server:
        client = compat.POP3("127.0.0.1", server.port, timeout=10)
        assert client.apop("alice", "secret").startswith(b"+OK")
        assert client.stat()[0] == 3
        client.quit()
        client = compat.POP3("127.0.0.1", server.port, timeout=10)
        with pytest.raises(compat.error_proto):
            client.apop("alice", "wrong")
        client.close()


def test_debug_output_hides_the_password(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    client = compat.POP3("127.0.0.1", running.port, timeout=10)
    client.set_debuglevel(2)
    client.user("alice")
    client.pass_("secret")
    client.quit()
    out = capsys.readouterr().out
    assert "*cmd* 'USER alice'" in out and "PASS ****" in out and "secret" not in out


def test_module_surface() -> None:
    assert issubclass(compat.error_proto, stdlib_poplib.error_proto)
    assert (compat.POP3_PORT, compat.POP3_SSL_PORT) == (110, 995)
    assert set(compat.__all__) == set(stdlib_poplib.__all__)
    for name in dir(stdlib_poplib.POP3):
        if not name.startswith("__") and name != "timestamp":
            assert hasattr(compat.POP3, name), name
