"""The pure helpers: response codes, capabilities, listings, APOP, base64, multi-line
coders (``TopFilter`` is tested directly: no public API reaches it yet), event
validation and the error classes."""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import time
from typing import SupportsIndex

import pytest
from hypothesis import given, settings, strategies as st

from pop3_sansio import (
    AUTH,
    IN_USE,
    LOGIN_DELAY,
    SYS_PERM,
    SYS_TEMP,
    UTF8,
    Apop,
    Auth,
    Capabilities,
    Data,
    Dele,
    Err,
    Greeting,
    List,
    LocalProtocolError,
    Ok,
    Pass,
    ProtocolError,
    RemoteProtocolError,
    ResponseCode,
    Retr,
    SaslChallenge,
    SaslResponse,
    Top,
    Uidl,
    User,
    apop_digest,
    b64decode_strict,
    b64encode,
    check_apop_digest,
    find_timestamp,
    make_timestamp,
    message_size,
    parse_scan_line,
    parse_scan_listing,
    parse_stat,
    parse_uid_line,
    parse_uid_listing,
    split_response_code,
)
from pop3_sansio._multiline import BodyDecoder, BodyEncoder, TopFilter

# ======================================================================================
# Response codes (RFC 2449 section 8, RFC 3206)
# ======================================================================================


@pytest.mark.parametrize(
    ("text", "code", "rest"),
    [
        ("[SYS/TEMP] try later", SYS_TEMP, "try later"),
        ("[sys/perm] call the admin", SYS_PERM, "call the admin"),  # case-insensitive
        ("[IN-USE] locked", IN_USE, "locked"),
        ("[LOGIN-DELAY] wait", LOGIN_DELAY, "wait"),
        ("[AUTH] bad password", AUTH, "bad password"),
        ("[UTF8]", UTF8, ""),
        ("[AUTH]no space", AUTH, "no space"),
        ("[X-VENDOR/A/B] kept", ResponseCode(("X-VENDOR", "A", "B")), "kept"),  # unknown
        ("[[odd] x", ResponseCode(("[ODD",)), "x"),  # "[" is an rchar
        ("no code", None, "no code"),
        ("", None, ""),
        ("[SYS/] broken", None, "[SYS/] broken"),  # malformed: kept as text
        ("[] empty", None, "[] empty"),
        ("[/TEMP] x", None, "[/TEMP] x"),
        ("[SYS TEMP] x", None, "[SYS TEMP] x"),
        ("[unclosed", None, "[unclosed"),
        ("[caf\u00e9] x", None, "[caf\u00e9] x"),
        (" [AUTH] leading space", None, " [AUTH] leading space"),
    ],
)
def test_split_response_code(text: str, code: ResponseCode | None, rest: str) -> None:
    assert split_response_code(text) == (code, rest)


def test_response_code_hierarchy() -> None:
    disk = ResponseCode.parse("sys/temp/disk")
    assert disk.levels == ("SYS", "TEMP", "DISK")
    assert str(disk) == "SYS/TEMP/DISK"
    assert disk.matches("SYS/TEMP") and disk.matches(SYS_TEMP) and disk.matches("sys")
    assert disk.matches("SYS/TEMP/DISK")
    assert not disk.matches("SYS/PERM")
    assert not disk.matches("SYS/TEMP/DISK/MORE")
    assert not SYS_TEMP.matches(disk)
    assert not IN_USE.matches("IN")  # levels match whole, not as string prefixes
    assert str(SYS_TEMP) == "SYS/TEMP"


@pytest.mark.parametrize("bad", ["", "/", "A//B", "A B", "A]", "\u00e9", "A\x00", "A\x20B"])
def test_response_code_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a response code"):
        ResponseCode.parse(bad)


# ======================================================================================
# Capabilities (RFC 2449 section 6, RFC 2595, RFC 5034, RFC 6856)
# ======================================================================================

ALL_TAGS = (
    b"TOP\r\n"
    b"USER\r\n"
    b"SASL PLAIN cram-md5 SCRAM-SHA-256\r\n"
    b"RESP-CODES\r\n"
    b"LOGIN-DELAY 900 USER\r\n"
    b"PIPELINING\r\n"
    b"EXPIRE NEVER\r\n"
    b"UIDL\r\n"
    b"IMPLEMENTATION Shlemazle Plotz v302\r\n"
    b"STLS\r\n"
    b"UTF8 USER\r\n"
    b"AUTH-RESP-CODE\r\n"
    b"X-VENDOR a b\r\n"
)


def test_capabilities_every_tag() -> None:
    caps = Capabilities.parse(ALL_TAGS)
    assert caps.top and caps.user and caps.uidl and caps.stls and caps.utf8
    assert caps.pipelining and caps.resp_codes and caps.auth_resp_code
    assert caps.sasl == ("PLAIN", "CRAM-MD5", "SCRAM-SHA-256")
    assert caps.login_delay == (900, True)
    assert caps.expire == (None, False)
    assert caps.implementation == "Shlemazle Plotz v302"
    assert caps.args("utf8") == ("USER",)
    assert caps.args("x-vendor") == ("a", "b")
    assert caps.args("LANG") is None
    assert "x-vendor" in caps and "TOP" in caps and "LANG" not in caps
    assert 42 not in caps
    assert caps.encode() == ALL_TAGS
    assert Capabilities.parse(caps.encode()) == caps


def test_capabilities_empty_and_absent() -> None:
    caps = Capabilities.parse(b"")
    assert caps == Capabilities()
    assert not (caps.top or caps.user or caps.uidl or caps.stls or caps.utf8)
    assert not (caps.pipelining or caps.resp_codes or caps.auth_resp_code)
    assert caps.sasl == ()
    assert caps.login_delay is None and caps.expire is None and caps.implementation is None
    assert caps.encode() == b""


def test_capabilities_lenient_forms() -> None:
    caps = Capabilities.parse(b"top\nSasl  plain\r\n\r\npipeline\r\nexpire 0 user\r\n")
    assert caps.top
    assert caps.sasl == ("PLAIN",)
    assert caps.pipelining  # Twisted's "PIPELINE" misspelling
    assert caps.expire == (0, True)
    assert Capabilities.parse(b"EXPIRE never USER\r\n").expire == (None, True)
    assert Capabilities.parse(b"LOGIN-DELAY 0\r\n").login_delay == (0, False)


def test_capabilities_line_limit() -> None:
    line = b"IMPLEMENTATION " + b"x" * (512 - 17) + b"\r\n"
    assert len(line) == 512
    assert Capabilities.parse(line).implementation == "x" * 495
    with pytest.raises(RemoteProtocolError) as info:
        Capabilities.parse(b"IMPLEMENTATION " + b"x" * 496 + b"\r\n")
    assert info.value.reason == "bad-capability"


@pytest.mark.parametrize(
    "body",
    [
        b"IMPLEMENTATION caf\xc3\xa9\r\n",  # not ASCII
        b"LOGIN-DELAY\r\n",
        b"LOGIN-DELAY soon\r\n",
        b"LOGIN-DELAY -1\r\n",
        b"LOGIN-DELAY 12345678901\r\n",  # 11 digits
        b"EXPIRE\r\n",
        b"EXPIRE 9999999999999999999999999\r\n",
        b"EXPIRE \xd9\xa1\r\n",
    ],
)
def test_capabilities_malformed(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Capabilities.parse(body)
    assert info.value.reason == "bad-capability"


def test_capabilities_non_ascii_digits_in_a_built_value() -> None:
    caps = Capabilities({"LOGIN-DELAY": ("\u0661",)})  # ARABIC-INDIC DIGIT ONE
    with pytest.raises(RemoteProtocolError):
        _ = caps.login_delay


# ======================================================================================
# Listings (RFC 1939 sections 5 and 7)
# ======================================================================================


def test_parse_stat() -> None:
    assert parse_stat("2 320") == (2, 320)
    assert parse_stat("0 0") == (0, 0)
    assert parse_stat("2 320 extra text") == (2, 320)
    assert parse_scan_line("1 120") == (1, 120)
    assert parse_scan_line("00001 99999999999999999999") == (1, 99999999999999999999)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "bad-listing"),
        ("2", "bad-listing"),
        ("2  320", "bad-number"),
        ("two 320", "bad-number"),
        ("-2 320", "bad-number"),
        ("2 +320", "bad-number"),
        ("2 3.5", "bad-number"),
        ("\u0661 320", "bad-number"),  # a non-ASCII digit
        ("2 " + "9" * 21, "bad-number"),
    ],
)
def test_parse_stat_rejects(text: str, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_stat(text)
    assert info.value.reason == reason


def test_huge_digit_strings_are_refused_cheaply() -> None:
    # int() of a million digits is slow (and refused by Python >= 3.11 with a
    # ValueError, which must not escape); the length is checked first.
    digits = "9" * 1_000_000
    for call in (
        lambda: parse_stat(digits + " 1"),
        lambda: parse_stat("1 " + digits),
        lambda: parse_uid_line(digits + " uid"),
        lambda: parse_scan_listing(digits.encode() + b" 1\r\n"),
        lambda: parse_uid_listing(b"1 " + b"u" * 1_000_000 + b"\r\n"),
    ):
        with pytest.raises(RemoteProtocolError):
            call()
    with pytest.raises(RemoteProtocolError):
        Capabilities.parse(b"LOGIN-DELAY " + digits[:400].encode() + b"\r\n")


@pytest.mark.parametrize(
    ("body", "result"),
    [
        (b"", {}),
        (b"1 120\r\n2 200\r\n", {1: 120, 2: 200}),
        (b"1 120\n2 200\n", {1: 120, 2: 200}),
        (b"1 120 extra text\r\n2 200\r\n", {1: 120, 2: 200}),  # RFC 1939 section 5
        (b"3 1\r\n1 2\r\n", {3: 1, 1: 2}),
    ],
)
def test_parse_scan_listing(body: bytes, result: dict[int, int]) -> None:
    assert parse_scan_listing(body) == result


@pytest.mark.parametrize(
    "body",
    [
        b"1 120\r\n1 200\r\n",  # repeated number (fast path)
        b"1 120 x\r\n1 200\r\n",  # repeated number (slow path)
        b"1 120",  # no line end
        b"1 120\r\n\r\n",  # empty line
        b"1\r\n",
        b"1 12x\r\n",
        b"1 120 caf\xc3\xa9\r\n",  # not ASCII
        b"1 123456789012345678901\r\n",  # overlong number
        b"123456789012345678901 1\r\n",
    ],
)
def test_parse_scan_listing_rejects(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_scan_listing(body)
    assert info.value.reason in {"bad-listing", "bad-number"}


def test_parse_uid_line() -> None:
    assert parse_uid_line("1 whqtswO00WBw418f9t5JxYwZ") == (1, "whqtswO00WBw418f9t5JxYwZ")
    for bad in ("1", "1 a b", "1  a", "x a", "1 caf\u00e9", "1 a\tb", "1 ", "1 " + "u" * 513):
        with pytest.raises(RemoteProtocolError):
            parse_uid_line(bad)
    assert parse_uid_line("1 " + "u" * 512) == (1, "u" * 512)


@pytest.mark.parametrize(
    ("body", "result"),
    [
        (b"", {}),
        (
            b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n",
            {
                1: "whqtswO00WBw418f9t5JxYwZ",
                2: "QhdPYR:00WBw1Ph7x7",
            },
        ),
        (b"1 a\n2 a\n", {1: "a", 2: "a"}),  # duplicate uids are tolerated
        (b"1 !~\r\n", {1: "!~"}),
        (b"1 " + b"u" * 512 + b"\r\n", {1: "u" * 512}),
    ],
)
def test_parse_uid_listing(body: bytes, result: dict[int, str]) -> None:
    assert parse_uid_listing(body) == result


@pytest.mark.parametrize(
    "body",
    [
        b"1 a\r\n1 b\r\n",  # repeated message number
        b"1 a extra\r\n",  # nothing may follow the uid
        b"1 caf\xc3\xa9\r\n",
        b"1 a",
        b"1\r\n",
        b"1 a\r\r\n",
        b"1 " + b"u" * 513 + b"\r\n",
        b"x a\r\n",
    ],
)
def test_parse_uid_listing_rejects(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_uid_listing(body)


# ======================================================================================
# APOP (RFC 1939 section 7)
# ======================================================================================


def test_apop_digest() -> None:
    stamp = "<1896.697170952@dbc.mtview.ca.us>"
    assert apop_digest(stamp, "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"
    assert check_apop_digest(stamp, "tanstaaf", "C4C9334BAC560ECC979E58001B3E22FB")
    assert not check_apop_digest(stamp, "tanstaaf", "c4c9334bac560ecc979e58001b3e22fc")
    assert not check_apop_digest(stamp, "tanstaaf", "\u00e9" * 32)
    assert len(apop_digest("<a@b>", "s\u00e9cret")) == 32


@pytest.mark.parametrize(
    ("text", "stamp"),
    [
        (
            "POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            "<1896.697170952@dbc.mtview.ca.us>",
        ),
        ("Dovecot ready. <a1b2.c3d4=@mail.example.org>", "<a1b2.c3d4=@mail.example.org>"),
        ("<no-at-sign> then <1.2@host>", "<1.2@host>"),  # brackets without @ are ignored
        ("<<1.2@host>", "<1.2@host>"),
        ("<a <1.2@host>", "<1.2@host>"),
        ("<has space@host> <x@y>", "<x@y>"),
        ("ready", None),
        ("<1.2@host", None),  # unclosed
        ("1.2@host>", None),
        ("<caf\u00e9@host>", None),
        ("<a\x01@host>", None),
        ("<" + "a" * 300 + "@h>", None),  # longer than any real msg-id
        ("<" + "a" * 252 + "@h>", "<" + "a" * 252 + "@h>"),  # 256 with the brackets
        ("<" + "a" * 253 + "@h>", None),
        ("<>", None),
        ("<@>", "<@>"),
    ],
)
def test_find_timestamp(text: str, stamp: str | None) -> None:
    assert find_timestamp(text) == stamp


LONG_GREETINGS = [
    "<" * 100_000,
    "<" * 50_000 + ">" * 50_000,
    "<a" * 50_000 + ">",
    "<@" * 50_000 + " >",
    "<@ " * 50_000 + ">",
    "<" + "a" * 100_000 + "@h>",
]


class _Scanned(str):
    """A greeting that counts the characters ``find_timestamp`` looks at: what each
    ``find``/``rfind`` passes over, and each slice it takes."""

    scanned = 0

    def find(self, sub: str, start: SupportsIndex | None = None, *rest: SupportsIndex) -> int:
        found = str.find(self, sub, start, *rest)
        begin = 0 if start is None else int(start)
        _Scanned.scanned += (len(self) if found < 0 else found) - begin
        return found

    def rfind(self, sub: str, start: SupportsIndex | None = None, *rest: SupportsIndex) -> int:
        found = str.rfind(self, sub, start, *rest)
        begin = 0 if start is None else int(start)
        end = int(rest[0]) if rest else len(self)
        _Scanned.scanned += end - (begin if found < 0 else found)
        return found

    def __getitem__(self, key: SupportsIndex | slice) -> str:
        part = str.__getitem__(self, key)
        _Scanned.scanned += len(part)
        return part


@pytest.mark.parametrize("text", LONG_GREETINGS)
def test_find_timestamp_looks_at_each_character_a_bounded_number_of_times(text: str) -> None:
    # CVE-2018-1060 was a regex ReDoS on a long greeting: the scan here is linear
    # (each "<" before the last in a candidate is skipped, not re-scanned to the next ">").
    _Scanned.scanned = 0
    greeting = _Scanned(text * 10)  # about a megabyte
    stamp = find_timestamp(greeting)
    assert 0 < _Scanned.scanned <= 3 * len(greeting) + 300, _Scanned.scanned
    assert stamp == find_timestamp(str(greeting))  # counting changed nothing


@pytest.mark.parametrize("text", LONG_GREETINGS)
def test_find_timestamp_is_linear(text: str) -> None:
    # The one test here that reads a clock, kept because counting scanned characters
    # (above) cannot see inside a regular expression engine, where CVE-2018-1060's
    # backtracking was: quadratic work takes seconds on a megabyte, linear
    # milliseconds, so the bound is far from either.
    text = text * 10  # about a megabyte
    start = time.perf_counter()
    find_timestamp(text)
    assert time.perf_counter() - start < 1.0


def test_make_timestamp() -> None:
    stamp = make_timestamp("3f2a", 1234567890, "pop.example.org")
    assert stamp == "<3f2a.1234567890@pop.example.org>"
    assert find_timestamp(f"POP3 ready {stamp}") == stamp
    for token, host in (("a b", "h"), ("a", "h>"), ("<a", "h"), ("\u00e9", "h"), ("a", "\x01")):
        with pytest.raises(ValueError, match="unusable APOP timestamp"):
            make_timestamp(token, 1, host)
    with pytest.raises(ValueError, match="unusable"):
        make_timestamp("a" * 300, 1, "h")


# ======================================================================================
# Strict base64 (RFC 5034 section 4)
# ======================================================================================


@pytest.mark.parametrize(
    ("text", "data"),
    [
        (b"", b""),
        (b"dGVzdA==", b"test"),
        (b"dGVzdDE=", b"test1"),
        (b"dGVzdDEy", b"test12"),
        (b"+/+/", b"\xfb\xff\xbf"),
        (b"dGVzdA", None),  # padding missing
        (b"dGVzdA=", None),
        (b"dGVzdA===", None),
        (b"dG=zdA==", None),  # "=" in the middle
        (b"=", None),
        (b"dGVz dA==", None),
        (b"dGVz\ndA==", None),
        (b"dGVz-A==", None),  # URL-safe alphabet is not base64
        (b"dGVz_A==", None),
        (b"dGVz!A==", None),
        (b"\xffGVzdA==", None),
        (b"QQ==", b"A"),
        (b"QUI=", b"AB"),
    ],
)
def test_b64decode_strict(text: bytes, data: bytes | None) -> None:
    result = b64decode_strict(text)
    assert result == data
    if data is not None:
        assert type(result) is bytes


@pytest.mark.parametrize("text", [b"QR==", b"QX==", b"Q/==", b"QUJ=", b"QUL=", b"dGVzdB=="])
def test_base64_rejects_non_zero_pad_bits(text: bytes) -> None:
    # RFC 4648 section 3.5: a lax decoder ignores the unused low bits of the last
    # character before "=" (QR== reads as QQ==); only the canonical form is base64 here.
    assert binascii.a2b_base64(text)
    assert b64decode_strict(text) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_b64_round_trip(data: bytes) -> None:
    encoded = b64encode(data)
    assert type(encoded) is bytes
    assert encoded == base64.b64encode(data)
    assert b64decode_strict(encoded) == data


# ======================================================================================
# Multi-line coders (RFC 1939 section 3), TopFilter (section 7), message_size (section 11)
# ======================================================================================


def _decode(chunks: list[bytes]) -> tuple[bytes, bool, bytes]:
    """Run a BodyDecoder over chunks: (body, finished, bytes left after the end)."""
    decoder = BodyDecoder()
    out = b""
    for i, chunk in enumerate(chunks):
        data, end, finished = decoder.feed(chunk)
        out += data
        if finished:
            return out, True, chunk[end:] + b"".join(chunks[i + 1 :])
        assert end == len(chunk)
    return out, False, b""


WIRE_CASES = [
    (b".\r\n", b""),
    (b"a\r\n.\r\n", b"a\r\n"),
    (b"..\r\n.\r\n", b".\r\n"),
    (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n"),
    (b".\rx\r\n.\r\n", b"\rx\r\n"),
    (b".\r\r\n.\r\n", b"\r\r\n"),
    (b"..\r.\r\n.\r\n", b".\r.\r\n"),
    (b"a\n.\n", b"a\n"),  # "." LF ends the body as "." CRLF does
    (b"a\n..\n.\n", b"a\n.\n"),
    (b".\n", b""),
]


@pytest.mark.parametrize(("wire", "body"), WIRE_CASES)
def test_body_decoder_any_split(wire: bytes, body: bytes) -> None:
    tail = b"+OK next\r\n"
    data = wire + tail
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            chunks = [c for c in (data[:i], data[i:j], data[j:]) if c]
            assert _decode(chunks) == (body, True, tail), chunks


def test_body_decoder_start_offset() -> None:
    decoder = BodyDecoder()
    assert decoder.feed(b"+OK\r\nab\r\n.\r\nX", 5) == (b"ab\r\n", 12, True)
    decoder = BodyDecoder()
    data, end, finished = decoder.feed(b"xx.", 2)
    assert (data, end, finished) == (b"", 3, False)
    assert decoder.feed(b"\r") == (b"", 1, False)
    assert decoder.feed(b"yy\r\n", 2) == (b"\r\r\n", 4, False)  # ".\r" then "\r\n"
    data, end, finished = decoder.feed(b"..z\r\n.\r\n")
    assert (data, finished) == (b".z\r\n", True)


def test_body_decoder_returns_bytes() -> None:
    decoder = BodyDecoder()
    for chunk in (b"a\r\n..", b"b\r\n", b"c\r\n.x\r\n"):
        data, _, _ = decoder.feed(chunk)
        assert type(data) is bytes


def _encode(chunks: list[bytes]) -> bytes:
    encoder = BodyEncoder()
    return b"".join(encoder.encode(c) for c in chunks) + encoder.finish()


@settings(max_examples=300, deadline=None)
@given(
    message=st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b".."]), max_size=20),
    cuts=st.lists(st.integers(0, 40), max_size=5),
)
def test_encoder_decoder_round_trip(message: list[bytes], cuts: list[int]) -> None:
    raw = b"".join(message)
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    chunks = [raw[a:b] for a, b in itertools.pairwise(points)]
    wire = _encode(chunks)
    assert wire == _encode([raw])  # the encoder's output does not depend on chunking
    body, finished, rest = _decode([wire[i : i + 1] for i in range(len(wire))])
    assert finished and rest == b""
    assert (body, True, b"") == _decode([wire])
    expected = re.sub(rb"(?<!\r)\n", b"\r\n", raw)  # LF -> CRLF; CRLF stays (no CR CR LF)
    if expected and not expected.endswith(b"\n"):
        expected += b"\n" if expected.endswith(b"\r") else b"\r\n"
    assert body == expected
    assert message_size(raw) == message_size(chunks) == len(body)


def _stuffed_by_lines(message: bytes) -> bytes:
    """The wire form of a CRLF ``message``, one line at a time (RFC 1939 section 3)."""
    lines = message.split(b"\r\n")[:-1]
    return b"".join((b"." + x if x[:1] == b"." else x) + b"\r\n" for x in lines) + b".\r\n"


@pytest.mark.parametrize("dots_in_lines", [0, 3, 8, 9, 40])
@pytest.mark.parametrize("first", [b".", b".."])
def test_encoder_stuffs_every_line_start_dot_however_many_dots_lines_hold(
    dots_in_lines: int, first: bytes
) -> None:
    # The encoder walks dots with memchr while few of them are inside lines,
    # then lets one regex pass do the rest: both ways must give the same.
    prose = b"".join(b"Word%d. " % i if i < dots_in_lines else b"word " for i in range(60))
    message = first + b"start\r\n" + prose + b"\r\n.\r\n..x\r\nend.\r\n" + prose + b"\r\n"
    wire = _stuffed_by_lines(message)
    for size in (1, 7, 64, len(message)):
        chunks = [message[i : i + size] for i in range(0, len(message), size)]
        assert _encode(chunks) == wire
        # A chunk that starts inside a line keeps a dot at its start as it is.
        assert _encode([b"x", *chunks]) == _stuffed_by_lines(b"x" + message)
    assert _encode([b"x", message]).startswith(b"x" + first + b"start")


def test_message_size() -> None:
    assert message_size(b"") == 0
    assert message_size([]) == 0
    assert message_size(b"a\nb\n") == 6
    assert message_size(b"a\r\nb\r\n") == 6
    assert message_size(b"a") == 3  # the server adds the final CRLF
    assert message_size([b"a\r", b"\n"]) == 3  # not CR CR LF
    assert message_size(b".\n..\n") == 7  # stuffing is not counted
    assert message_size(iter([b"ab", b"", b"c\n"])) == 5


def _top(chunks: list[bytes], lines: int) -> tuple[bytes, bool]:
    top = TopFilter(lines)
    out = b"".join(top.feed(chunk) for chunk in chunks if chunk)
    return out, top.done


MAIL = b"From: a\r\nSubject: b\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"
LF_MAIL = b"From: a\nSubject: b\n\nline 1\nline 2\n"


@pytest.mark.parametrize(
    ("message", "lines", "expected", "done"),
    [
        (MAIL, 0, b"From: a\r\nSubject: b\r\n\r\n", True),
        (MAIL, 1, b"From: a\r\nSubject: b\r\n\r\nline 1\r\n", True),
        (MAIL, 3, MAIL, True),
        (MAIL, 4, MAIL, False),  # n beyond the body: the whole message
        (LF_MAIL, 1, b"From: a\nSubject: b\n\nline 1\n", True),
        (b"From: a\r\n", 0, b"From: a\r\n", False),  # no blank line: all of it
        (b"\r\nbody\r\n", 0, b"\r\n", True),  # no headers at all
        (b"\nbody\n", 1, b"\nbody\n", True),
        (b"H: x\r\n\r\nlast", 5, b"H: x\r\n\r\nlast", False),
        (b"H: \r\r\n\r\nb\r\n", 0, b"H: \r\r\n\r\n", True),
        (b"\rX: y\r\n\r\nb\r\n", 0, b"\rX: y\r\n\r\n", True),
    ],
)
def test_top_filter_any_chunking(message: bytes, lines: int, expected: bytes, done: bool) -> None:
    for size in range(1, len(message) + 1):
        chunks = [message[i : i + size] for i in range(0, len(message), size)]
        assert _top(chunks, lines) == (expected, done), chunks
    for i in range(len(message)):
        for j in range(i, len(message)):
            chunks = [message[:i], message[i:j], message[j:]]
            assert _top(chunks, lines) == (expected, done), chunks


def test_top_filter_stops_reading() -> None:
    top = TopFilter(0)
    assert top.feed(b"H: 1\r\n\r\nbody\r\n") == b"H: 1\r\n\r\n"
    assert top.done
    assert top.feed(b"more body\r\n") == b""


def test_top_filter_header_line_split_after_its_first_octets() -> None:
    top = TopFilter(0)
    assert top.feed(b"Su") == b"Su"
    assert top.feed(b"bject: x") == b"bject: x"
    assert top.feed(b"\r") == b"\r"
    assert top.feed(b"\n\r") == b"\n\r"
    assert not top.done
    assert top.feed(b"\nbody\r\n") == b"\n"
    assert top.done


# ======================================================================================
# Events: validation at construction
# ======================================================================================


@pytest.mark.parametrize(
    "make",
    [
        lambda: User(""),
        lambda: User("a\r\nDELE 1"),
        lambda: User(b"bob"),  # type: ignore[arg-type]
        lambda: Pass("a\0b"),
        lambda: Apop("a b", "c4c9334bac560ecc979e58001b3e22fb"),
        lambda: Apop("", "c4c9334bac560ecc979e58001b3e22fb"),
        lambda: Apop("a", "c4c9334bac560ecc979e58001b3e22f"),
        lambda: Apop("a", "g4c9334bac560ecc979e58001b3e22fb"),
        lambda: Auth(None, b"x"),
        lambda: Auth(""),
        lambda: Auth("A" * 21),
        lambda: Auth("PL@IN"),
        lambda: Auth("PL\u00c4IN"),
        lambda: Auth("PLAIN", "text"),  # type: ignore[arg-type]
        lambda: Auth("PLAIN", bytearray(b"x")),  # type: ignore[arg-type]
        lambda: SaslResponse(memoryview(b"x")),  # type: ignore[arg-type]
        lambda: SaslChallenge("x"),  # type: ignore[arg-type]
        lambda: Data(bytearray(b"x")),  # type: ignore[arg-type]
        lambda: List(0),
        lambda: List(True),
        lambda: Uidl(-1),
        lambda: Retr(10**20),
        lambda: Retr(1.0),  # type: ignore[arg-type]
        lambda: Top(1, -1),
        lambda: Dele("1"),  # type: ignore[arg-type]
        lambda: Ok("a\nb"),
        lambda: Err("a\rb"),
        lambda: Greeting("a\0b"),
        lambda: Greeting("ready", timestamp="<a b@c>"),
    ],
)
def test_event_validation(make: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        make()  # type: ignore[operator]
    assert info.value.reason in {"type", "bad-argument"}


def test_event_limits_accepted() -> None:
    assert Retr(10**20 - 1).msg == 10**20 - 1
    assert Top(1, 0).lines == 0
    assert Auth("A" * 20).mechanism == "A" * 20
    assert Auth("X-Y_Z", b"").initial_response == b""
    assert Pass("").password == ""
    assert "secret" not in repr(Pass("secret"))
    assert "secret" not in repr(SaslResponse(b"secret"))
    assert "secret" not in repr(Auth("PLAIN", b"secret"))
    with pytest.raises(AttributeError):
        Retr(1).msg = 2  # type: ignore[misc]


# ======================================================================================
# The error classes
# ======================================================================================


def test_protocol_error_fields() -> None:
    error = RemoteProtocolError(
        "too long", reason="line-too-long", state="AUTHORIZATION", line=bytearray(b"x" * 600)
    )
    assert isinstance(error, ProtocolError)
    assert error.message == "too long" and str(error) == "too long"
    assert error.reason == "line-too-long"
    assert error.state == "AUTHORIZATION"
    assert error.line == b"x" * 512 and type(error.line) is bytes
    assert repr(error) == "RemoteProtocolError('too long', reason='line-too-long')"
    plain = LocalProtocolError("misuse")
    assert (plain.reason, plain.state, plain.line) == ("protocol-error", None, None)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
