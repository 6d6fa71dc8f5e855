"""The PROXY protocol parser (versions 1 and 2), and the server options that use its address.

Every input is fed three ways: whole, one octet at a time, and in reads of exactly
``wanted`` octets from a stream that goes on after the header. The last proves that a
binding reading so never consumes what follows the header (with implicit TLS, the
ClientHello).
"""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

import pop3_sansio as p
from helpers import FakeBackend

SIG = p.PROXY_V2_SIGNATURE
AFTER = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # what follows: a TLS ClientHello


# --- building headers ----------------------------------------------------------------------


def v1(proto: str, src: str, dst: str, sport: int | str, dport: int | str) -> bytes:
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(
    command: int = 0x1,
    family: int = 0x11,
    body: bytes = b"",
    *,
    version: int = 0x2,
    length: int | None = None,
) -> bytes:
    size = len(body) if length is None else length
    return SIG + bytes([version << 4 | command, family]) + struct.pack("!H", size) + body


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.ip_address(src).packed
        + ipaddress.ip_address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


# --- feeding three ways ---------------------------------------------------------------------


def feed_whole(data: bytes) -> tuple[p.ProxyHeader, bytes]:
    parser = p.ProxyParser()
    header = parser.feed(data)
    assert isinstance(header, p.ProxyHeader), header
    assert parser.header is header
    return header, parser.leftover


def feed_bytewise(data: bytes) -> tuple[p.ProxyHeader, bytes]:
    parser = p.ProxyParser()
    for i in range(len(data)):
        result = parser.feed(data[i : i + 1])
        if result is not p.NEED_DATA:
            assert isinstance(result, p.ProxyHeader)
            assert parser.wanted == 0
            return result, parser.leftover + data[i + 1 :]
    raise AssertionError("no header")


def feed_wanted(data: bytes, *, short: bool = False) -> tuple[p.ProxyHeader, int]:
    """Read as a binding does: ``wanted`` octets at a time (``short``: one fewer when possible)."""
    parser = p.ProxyParser()
    pos = 0
    while parser.wanted:
        size = parser.wanted - 1 if short and parser.wanted > 1 else parser.wanted
        parser.feed(data[pos : pos + size])
        pos += size
    assert parser.leftover == b""
    assert parser.header is not None
    return parser.header, pos


def parse(header: bytes) -> p.ProxyHeader:
    """``header`` parsed every way; all must agree and consume exactly ``header``."""
    whole, rest = feed_whole(header + AFTER)
    assert rest == AFTER
    assert feed_bytewise(header + AFTER) == (whole, AFTER)
    assert feed_wanted(header + AFTER) == (whole, len(header))
    assert feed_wanted(header + AFTER, short=True) == (whole, len(header))
    return whole


def error(data: bytes) -> p.ProxyHeaderError:
    """The error for ``data`` (then EOF), the same fed whole and octet by octet."""
    errors = []
    for chunks in ([data, b""], [data[i : i + 1] for i in range(len(data))] + [b""]):
        parser = p.ProxyParser()
        with pytest.raises(p.ProxyHeaderError) as info:
            for chunk in chunks:
                assert parser.feed(chunk) is p.NEED_DATA
        assert parser.wanted == 0
        # The error sticks.
        with pytest.raises(p.ProxyHeaderError) as again:
            parser.feed(b"more")
        assert again.value is info.value
        errors.append(info.value)
    assert errors[0].reason == errors[1].reason
    assert isinstance(errors[0], p.RemoteProtocolError)
    return errors[0]


# --- version 1 --------------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    header = parse(v1("TCP4", "192.0.2.7", "198.51.100.1", 56324, 110))
    assert header == p.ProxyHeader(1, "PROXY", ("192.0.2.7", 56324), ("198.51.100.1", 110))


def test_v1_tcp6_is_normalised() -> None:
    header = parse(v1("TCP6", "2001:DB8:0:0::1", "::1", 0, 65535))
    assert header == p.ProxyHeader(1, "PROXY", ("2001:db8::1", 0), ("::1", 65535))


@pytest.mark.parametrize(
    "line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"]
)
def test_v1_unknown(line: bytes) -> None:
    assert parse(line) == p.ProxyHeader(1, "UNKNOWN")


def test_v1_longest_and_one_more() -> None:
    longest = b"PROXY UNKNOWN " + b"x" * (107 - 16) + b"\r\n"
    assert len(longest) == p.MAX_PROXY_V1_LENGTH
    assert parse(longest).command == "UNKNOWN"
    assert error(longest[:-2] + b"xx\r\n").reason == "proxy-too-long"
    assert error(b"PROXY TCP4 " + b"1" * 200).reason == "proxy-too-long"


def test_v1_longest_address_line_fits() -> None:
    big = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = v1("TCP6", big, big, 65535, 65535)
    assert len(line) == 104
    assert parse(line).source == (big, 65535)


@pytest.mark.parametrize(
    "line",
    [
        v1("TCP4", "256.0.0.1", "127.0.0.1", 1, 2),
        v1("TCP4", "127.0.0.01", "127.0.0.1", 1, 2),  # leading zeros are ambiguous
        v1("TCP4", "::1", "127.0.0.1", 1, 2),
        v1("TCP6", "127.0.0.1", "::1", 1, 2),
        v1("TCP6", ":::", "::1", 1, 2),
        v1("TCP6", "fe80::1%eth0", "::1", 1, 2),
        v1("TCP4", "127.0.0.1", "127.0.0.1", 65536, 2),
        v1("TCP4", "127.0.0.1", "127.0.0.1", 1, 99999),
        v1("TCP4", "127.0.0.1", "127.0.0.1", "01", 2),
        v1("TCP4", "127.0.0.1", "127.0.0.1", "-1", 2),
        v1("TCP4", "127.0.0.1", "127.0.0.1", 1, "2 3"),
        v1("TCP5", "127.0.0.1", "127.0.0.1", 1, 2),
        b"PROXY TCP4  127.0.0.1 127.0.0.1 1 2\r\n",
        b"PROXY tcp4 127.0.0.1 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 127.0.0.1 127.0.0.1 1\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\n",  # LF without CR
        b"PROXY TCP4 127.0.0.1\r127.0.0.1 1 2\r\n",  # CR without LF
        b"PROXY \r\n",
    ],
)
def test_v1_malformed(line: bytes) -> None:
    exc = error(line)
    assert exc.reason == "proxy-malformed"
    assert exc.state == "PROXY"
    assert exc.line is not None


@pytest.mark.parametrize(
    "data", [b"USER alice\r\n", b"proxy TCP4", b"PROXYTCP4 ", b"\x16\x03\x01", b"\r\n\r\n\x01"]
)
def test_not_a_proxy_header(data: bytes) -> None:
    assert error(data).reason == "proxy-signature"


@pytest.mark.parametrize("data", [b"", b"PROXY TCP4 127.0.0.1", SIG, v2(body=b"\0" * 12)[:20]])
def test_connection_ends_first(data: bytes) -> None:
    assert error(data).reason == "proxy-incomplete"


# --- version 2 ------------------------------------------------------------------------------


def test_v2_inet_with_tlvs() -> None:
    body = inet("203.0.113.9", "10.0.0.1", 40000, 995)
    tlvs = tlv(0x01, b"pop3") + tlv(0x04, b"") + tlv(0x20, b"\x01" + b"\0" * 4 + tlv(0x21, b"1.3"))
    header = parse(v2(family=0x11, body=body + tlvs))
    assert header == p.ProxyHeader(2, "PROXY", ("203.0.113.9", 40000), ("10.0.0.1", 995))


def test_v2_inet6_and_datagram() -> None:
    body = inet("2001:db8::5", "::1", 1, 2)
    assert parse(v2(family=0x21, body=body)).source == ("2001:db8::5", 1)
    assert parse(v2(family=0x22, body=body)).destination == ("::1", 2)
    assert parse(v2(family=0x12, body=inet("10.1.2.3", "10.0.0.1", 5, 6))).command == "PROXY"


def test_v2_without_ip_addresses() -> None:
    # AF_UNIX: two 108-octet paths, then TLVs; AF_UNSPEC: nothing is read from the block.
    unix = b"/run/client".ljust(108, b"\0") + b"/run/pop3".ljust(108, b"\0")
    assert parse(v2(family=0x31, body=unix + tlv(0x04, b"ab"))) == p.ProxyHeader(2, "UNKNOWN")
    assert parse(v2(family=0x00, body=b"anything at all")) == p.ProxyHeader(2, "UNKNOWN")
    assert parse(v2(family=0x00)) == p.ProxyHeader(2, "UNKNOWN")


def test_v2_local_ignores_family_and_body() -> None:
    assert parse(v2(command=0x0, family=0x00)) == p.ProxyHeader(2, "LOCAL")
    assert parse(v2(command=0x0, family=0xFF, body=b"\xff" * 7)).command == "LOCAL"


@pytest.mark.parametrize(
    "data",
    [
        v2(version=1, body=inet("127.0.0.1", "127.0.0.1", 1, 2)),
        v2(version=3, body=inet("127.0.0.1", "127.0.0.1", 1, 2)),
        v2(command=0x2, body=inet("127.0.0.1", "127.0.0.1", 1, 2)),
        v2(family=0x41, body=b"\0" * 12),
        v2(family=0x13, body=b"\0" * 12),
        v2(family=0x10, body=b"\0" * 12),
        v2(family=0x01),
        v2(family=0x11, body=b"\0" * 11),
        v2(family=0x21, body=b"\0" * 35),
        v2(family=0x31, body=b"\0" * 215),
        v2(family=0x11, body=b"\0" * 12 + b"\x01"),
        v2(family=0x11, body=b"\0" * 12 + b"\x01\x00"),
        v2(family=0x11, body=b"\0" * 12 + b"\x01\x00\x02a"),
        v2(family=0x11, body=b"\0" * 12 + tlv(1, b"ok") + b"\x02\xff\xff"),
    ],
)
def test_v2_malformed(data: bytes) -> None:
    assert error(data).reason == "proxy-malformed"


def test_v2_length_is_bounded_before_the_body_arrives() -> None:
    exc = error(v2(body=b"", length=p.MAX_PROXY_V2_LENGTH + 1))
    assert exc.reason == "proxy-too-long"
    assert exc.line is not None and len(exc.line) == 16
    big = b"\0" * 12 + tlv(0x04, b"\0" * (p.MAX_PROXY_V2_LENGTH - 15))
    assert len(big) == p.MAX_PROXY_V2_LENGTH
    assert parse(v2(body=big)).source == ("0.0.0.0", 0)
    parser = p.ProxyParser(max_v2_length=12)
    with pytest.raises(p.ProxyHeaderError, match="too long"):
        parser.feed(v2(body=b"\0" * 13))


# --- how much to read, and what is left over ---------------------------------------------


def test_wanted_never_reaches_past_the_shortest_header() -> None:
    parser = p.ProxyParser()
    assert parser.wanted == 15  # "PROXY UNKNOWN\r\n"
    parser.feed(b"PROXY TCP4 1.2.")
    assert parser.wanted == 32 - 15  # "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n"
    parser.feed(b"3.4 5.6.7.8 1 22")
    assert parser.wanted == 1
    parser.feed(b"3")
    assert parser.wanted == 2  # at least CRLF
    parser.feed(b"\r")
    assert parser.wanted == 1
    assert parser.feed(b"\n") == p.ProxyHeader(1, "PROXY", ("1.2.3.4", 1), ("5.6.7.8", 223))
    assert parser.wanted == 0

    parser = p.ProxyParser()
    parser.feed(b"PROXY TCP6 ")
    assert parser.wanted == 15 - 11
    parser.feed(b"::1 ")
    assert parser.wanted == 22 - 15  # "PROXY TCP6 :: :: 0 0\r\n"
    parser = p.ProxyParser()
    parser.feed(SIG)
    assert parser.wanted == 3
    parser.feed(v2(body=b"\0" * 300)[12:15])
    assert parser.wanted == 1
    parser.feed(b"\x2c")
    assert parser.wanted == 300


def test_leftover_when_fed_more_than_wanted() -> None:
    header = v1("TCP4", "127.0.0.2", "127.0.0.1", 3, 4)
    parser = p.ProxyParser()
    huge = os.urandom(100_000)
    assert parser.feed(header + huge) == p.ProxyHeader(
        1, "PROXY", ("127.0.0.2", 3), ("127.0.0.1", 4)
    )
    assert parser.leftover == huge
    assert type(parser.leftover) is bytes
    with pytest.raises(p.LocalProtocolError) as info:
        parser.feed(b"x")
    assert info.value.reason == "proxy-done"


def test_client_address() -> None:
    peer = ("127.0.0.1", 5000)
    proxied = p.ProxyHeader(1, "PROXY", ("192.0.2.1", 7), ("127.0.0.1", 110))
    assert proxied.client_address(peer) == ("192.0.2.1", 7)
    assert p.ProxyHeader(2, "LOCAL").client_address(peer) == peer
    assert p.ProxyHeader(1, "UNKNOWN").client_address(None) is None


_v4 = st.ip_addresses(v=4).map(str)
_v6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, p.ProxyHeader]:
    version = draw(st.sampled_from([1, 2]))
    six = draw(st.booleans())
    src, dst = draw(_v6 if six else _v4), draw(_v6 if six else _v4)
    sport, dport = draw(_port), draw(_port)
    expected = p.ProxyHeader(version, "PROXY", (src, sport), (dst, dport))
    if version == 1:
        return v1("TCP6" if six else "TCP4", src, dst, sport, dport), expected
    records = draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=3))
    body = inet(src, dst, sport, dport) + b"".join(tlv(kind, value) for kind, value in records)
    return v2(family=0x21 if six else 0x11, body=body), expected


@settings(max_examples=300, deadline=None)
@given(headers(), st.binary(max_size=64), st.lists(st.integers(1, 40), max_size=30))
def test_any_header_any_chunking(
    made: tuple[bytes, p.ProxyHeader], after: bytes, sizes: list[int]
) -> None:
    data, expected = made
    stream = data + after
    parser = p.ProxyParser()
    pos = 0
    result: object = p.NEED_DATA
    for size in [*sizes, len(stream)]:
        result = parser.feed(stream[pos : pos + size])
        pos += size
        if result is not p.NEED_DATA:
            break
    assert result == expected
    assert parser.leftover + stream[pos:] == after
    assert feed_wanted(stream) == (expected, len(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_proxy_header_errors(data: bytes) -> None:
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        parser = p.ProxyParser()
        try:
            for chunk in chunks:
                if parser.wanted == 0:
                    break
                parser.feed(chunk)
        except p.ProxyHeaderError as exc:
            assert exc.reason.startswith("proxy-")


# --- the server options that use the client's address ---------------------------------------


def _greeting(options: p.ServerOptions, *, sessions: int = 1, same_address: int = 1) -> bytes:
    driver = options.start_session(
        FakeBackend(),  # never asked: only the greeting is read
        peer_is_loopback=True,
        sessions=sessions,
        same_address=same_address,
        hostname="pop.example",
        random_bytes=os.urandom,
        clock=1,
    )
    return driver.session.data_to_send()


def test_sessions_per_address_are_limited() -> None:
    unlimited = p.ServerOptions(max_sessions_per_address=None)
    assert _greeting(unlimited, same_address=10_000).startswith(b"+OK")
    # By default one address may hold 20 sessions (of 1000), logged in or not.
    default = p.ServerOptions()
    assert _greeting(default, same_address=20).startswith(b"+OK")
    assert _greeting(default, same_address=21) == (
        b"-ERR [SYS/TEMP] too many sessions from your address\r\n"
    )
    limited = p.ServerOptions(max_sessions_per_address=2, max_sessions=5)
    assert _greeting(limited, same_address=2).startswith(b"+OK")
    assert _greeting(limited, same_address=3) == (
        b"-ERR [SYS/TEMP] too many sessions from your address\r\n"
    )
    assert _greeting(limited, sessions=6) == b"-ERR [SYS/TEMP] too many sessions\r\n"


def test_address_counter() -> None:
    counter = p.AddressCounter()
    assert counter.add(("192.0.2.1", 1)) == 1
    assert counter.add(("192.0.2.1", 2)) == 2
    assert counter.add(("192.0.2.2", 1)) == 1
    assert len(counter) == 2
    counter.remove(("192.0.2.1", 2))
    assert counter.add("192.0.2.1") == 2
    counter.remove(("192.0.2.1", 1))
    counter.remove(("192.0.2.1", 1))
    counter.remove(("192.0.2.2", 9))
    assert len(counter) == 0
    assert counter.add(None) == 1  # an unknown peer counts as "?"


@pytest.mark.parametrize(
    ("peer", "host", "loopback"),
    [
        (("127.0.0.1", 1), "127.0.0.1", True),
        (("127.9.9.9", 1, 0, 0), "127.9.9.9", True),
        ("::1", "::1", True),
        (("::ffff:127.0.0.1", 1, 0, 0), "::ffff:127.0.0.1", True),
        (("::ffff:192.0.2.1", 1, 0, 0), "::ffff:192.0.2.1", False),
        (("192.0.2.1", 1), "192.0.2.1", False),
        (("localhost", 1), "localhost", False),  # a name is not an address
        (None, "?", False),
        ((), "?", False),
        ((b"\0abstract",), "?", False),
    ],
)
def test_peer_helpers(peer: object, host: str, loopback: bool) -> None:
    assert p.peer_host(peer) == host
    assert p.is_loopback_address(peer) is loopback
