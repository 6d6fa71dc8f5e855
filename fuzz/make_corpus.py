"""Write the seed corpora: ``fuzz/corpus/<role>/`` for client, server, proxy, sasl, parsers.

Every seed is one options byte (see harness_common) followed by what the peer
sends. Hand-written seeds follow RFC 1939 section 10, RFC 2449 section 5,
RFC 5034 section 6, RFC 2595 (STLS) and Dovecot transcripts; the ``link-*``
seeds are recorded from a ClientConnection and a ServerConnection talking to
each other, one per client script and option set. The sasl seeds are the
example exchanges of RFC 4616, RFC 2195, RFC 5802, RFC 7677 and RFC 7628 (and
their failures), both sides; the parsers seeds are CAPA answers (RFC 2449, RFC
5034, Dovecot, Twisted's PIPELINE), LIST/UIDL bodies, response codes, base64 and
Maildir file names.

Run ``python fuzz/make_corpus.py`` after changing the scripts; the files are
committed as data. The fuzzer adds its own finds next to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness_common import CLIENT_SCRIPTS, SASL_SEPARATOR, _ClientDriver, _ServerDriver

HERE = Path(__file__).resolve().parent

# Options bits: 0-2 client script, 8 pipelined, 16 implicit TLS, 32 cancel SASL,
# 64 leave SASL challenges unanswered (client) or the RFC 1939 APOP greeting
# (server), 128 Dovecot greeting.
PIPELINED, TLS, CANCEL, RFC_STAMP, DOVECOT = 8, 16, 32, 64, 128
SILENT = 64


def lines(*items: str) -> bytes:
    return "".join(item + "\r\n" for item in items).encode("utf-8")


# RFC 2449 section 5's example capability list (a server answer and a parser seed).
RFC2449_CAPABILITIES = (
    "TOP",
    "USER",
    "SASL CRAM-MD5 KERBEROS_V4",
    "RESP-CODES",
    "LOGIN-DELAY 900",
    "PIPELINING",
    "EXPIRE 60",
    "UIDL",
    "IMPLEMENTATION Shlemazle-Plotz-v302",
)


# A message of RFC 1939 section 10's size class, with lines that need stuffing.
MSG1 = lines(
    "From: dewey@dbc.mtview.ca.us",
    "Subject: stuffed",
    "",
    "..a line that began with one dot",
    "..",
    "...",
    "..\t",
    "end",
)
MSG2 = lines("From: mrose@dbc.mtview.ca.us", "Subject: two", "", "hello", "", "bye")

CLIENT_SEEDS: dict[str, bytes] = {
    # RFC 1939 section 10, APOP (script 4).
    "rfc1939-apop": bytes([4])
    + lines(
        "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
        "+OK mrose's maildrop has 2 messages (320 octets)",
        "+OK 2 320",
        "+OK 2 messages (320 octets)",
        "1 120",
        "2 200",
        ".",
        "+OK 120 octets",
    )
    + MSG1
    + lines(".", "+OK message 1 deleted", "+OK 200 octets")
    + MSG2
    + lines(
        ".",
        "+OK message 2 deleted",
        "+OK dewey POP3 server signing off (maildrop empty)",
    ),
    # The same session with USER/PASS, pipelined (script 0).
    "rfc1939-user-pipelined": bytes([0 | PIPELINED])
    + lines(
        "+OK POP3 server ready",
        "+OK mrose",
        "+OK mrose's maildrop has 2 messages (320 octets)",
        "+OK 2 320",
        "+OK 2 messages (320 octets)",
        "1 120",
        "2 200",
        ".",
        "+OK 120 octets",
    )
    + MSG1
    + lines(".", "+OK message 1 deleted", "+OK 200 octets")
    + MSG2
    + lines(".", "+OK message 2 deleted", "+OK dewey POP3 server signing off"),
    # RFC 2449 section 5's CAPA answer, then a failed and a good login (script 3).
    "rfc2449-capa": bytes([3])
    + lines(
        "+OK POP3 server ready",
        "+OK Capability list follows",
        *RFC2449_CAPABILITIES,
        ".",
        "+OK",
        "-ERR [AUTH] invalid password",
        "+OK",
        "-ERR [LOGIN-DELAY] wait a while",
    ),
    # RFC 5034 section 6: CAPA, STLS, and what follows once TLS is up (script 1).
    "rfc5034-stls": bytes([1])
    + lines(
        "+OK pop.example.com BlurdyBlurp POP3 server ready",
        "+OK List of capabilities follows",
        "SASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS",
        "STLS",
        "IMPLEMENTATION BlurdyBlurp POP3 server",
        ".",
        "+OK Begin TLS negotiation now",
    ),
    "rfc5034-auth-plain-challenge": bytes([1 | TLS])
    + lines(
        "+OK pop.example.com BlurdyBlurp POP3 server ready",
        "+OK List of capabilities follows",
        "SASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS",
        "IMPLEMENTATION BlurdyBlurp POP3 server",
        ".",
        "+OK List of capabilities follows",
        "SASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS",
        "IMPLEMENTATION BlurdyBlurp POP3 server",
        ".",
        "+ ",
        "+OK Maildrop locked and ready",
        "+OK 1 messages",
        "1 5",
        ".",
        "+OK bye",
    ),
    "rfc5034-auth-plain-ir": bytes([2 | PIPELINED])
    + lines(
        "+OK POP3 server ready",
        "+OK Maildrop locked and ready",
        "+OK unique-id listing follows",
        "1 whqtswO00WBw418f9t5JxYwZ",
        "2 QhdPYR:00WBw1Ph7x7",
        ".",
        "+OK 1 whqtswO00WBw418f9t5JxYwZ",
        "+OK 1 120",
        "+OK top of message follows",
        "Subject: x",
        "",
        ".",
        "+OK",
    ),
    "rfc5034-auth-failed": bytes([2])
    + lines("+OK POP3 server ready", "-ERR [AUTH] Authentication failed.", "+OK bye"),
    # STLS answered, then plaintext injected before the handshake (CVE-2011-0411).
    "stls-injection": bytes([1 | PIPELINED])
    + lines(
        "+OK ready",
        "+OK Capability list follows",
        "STLS",
        ".",
        "+OK Begin TLS negotiation",
        "+OK injected",
    ),
    # Dovecot, one command at a time and pipelined (script 3).
    "dovecot": bytes([3 | DOVECOT])
    + lines(
        "+OK Dovecot (Debian) ready. <1a2b.3c4d=@host>",
        "+OK",
        "TOP",
        "UIDL",
        "RESP-CODES",
        "PIPELINING",
        "AUTH-RESP-CODE",
        "STLS",
        "USER",
        "SASL PLAIN LOGIN CRAM-MD5",
        ".",
        "+OK",
        "-ERR [AUTH] Authentication failed.",
        "+OK",
        "+OK Logged in.",
        "+OK 3 messages:",
        "1 1320",
        "2 442",
        "3 5611",
        ".",
        "+OK",
        "1 000000015a1b2c3d",
        "2 000000025a1b2c3d",
        "3 000000035a1b2c3d",
        ".",
        "+OK 1320 octets",
    )
    + MSG1
    + lines(".", "+OK Logging out."),
    "dovecot-pipelined": bytes([3 | PIPELINED | DOVECOT])
    + lines(
        "+OK Dovecot (Debian) ready. <1a2b.3c4d=@host>",
        "+OK",
        "TOP",
        "UIDL",
        "RESP-CODES",
        "PIPELINING",
        "AUTH-RESP-CODE",
        "STLS",
        "USER",
        "SASL PLAIN LOGIN CRAM-MD5",
        ".",
        "+OK",
        "-ERR [AUTH] Authentication failed.",
        "+OK",
        "+OK Logged in.",
        "+OK 3 messages:",
        "1 1320",
        "2 442",
        "3 5611",
        ".",
        "+OK",
        "1 000000015a1b2c3d",
        ".",
        "+OK 1320 octets",
        "body",
        ".",
        "+OK Logging out.",
    ),
    "dovecot-apop": bytes([4 | DOVECOT])
    + lines(
        "+OK Dovecot (Debian) ready. <1a2b.3c4d=@host>",
        "-ERR [AUTH] Authentication failed.",
        "+OK Logging out.",
    ),
    # Bodies with dots, bare LF and lone CR in every place (script 0).
    "dot-stuffed": bytes([0 | PIPELINED])
    + b"+OK ready\r\n+OK\r\n+OK in\r\n+OK 2 9\r\n+OK\r\n1 9\r\n.\r\n"
    + b"+OK\r\n..\r\n...\r\n.. \r\n.x\r\n..\rx\r\n.\rx\r\nbare\nlf\n.\n..\n\r\n.\r\n"
    + b"+OK\r\n+OK\r\n.\r\n+OK\r\n+OK bye\r\n",
    "lf-only": bytes([0])
    + b"+OK ready\n+OK\n+OK\n+OK 1 1\n+OK\n1 1\n.\n+OK\nx\n..y\n.\n+OK\n-ERR no\n+OK\n",
    # AUTH with the mechanism list, then LOGIN's two challenges (script 5).
    "auth-login": bytes([5])
    + lines(
        "+OK ready",
        "+OK",
        "PLAIN",
        "LOGIN",
        ".",
        "+ VXNlcm5hbWU6",
        "+ UGFzc3dvcmQ6",
        "+OK Logged in.",
        "+OK 0 0",
        "+OK",
        "+OK",
        "+OK",
    ),
    # RFC 2195's CRAM-MD5 challenge, refused, then USER/PASS (script 7).
    "cram-md5": bytes([7])
    + lines(
        "+OK ready",
        "+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
        "-ERR [AUTH] Authentication failed.",
        "+OK",
        "+OK",
        "+OK message follows",
        "hi",
        ".",
        "+OK",
    ),
    "sasl-bad-base64": bytes([7])
    + lines("+OK ready", "+ !!notbase64", "-ERR cancelled", "+OK", "+OK"),
    "sasl-unanswered": bytes([7 | SILENT])
    + lines("+OK ready", "+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+", "+OK"),
    "sasl-bare-plus": bytes([1 | TLS]) + lines("+OK ready", "+OK", ".", "+OK", ".", "+", "+OK"),
    # UTF8 (RFC 6856), TOP, LIST n (script 6).
    "utf8": bytes([6 | PIPELINED])
    + "+OK ready\r\n+OK UTF8 enabled\r\n+OK\r\n+OK\r\n+OK\r\nUTF8\r\n.\r\n"
    "+OK\r\nSubject: caf\u00e9\r\n\r\n.\r\n-ERR no such message\r\n+OK\r\n+OK\r\n+OK\r\n".encode(),
    "greeting-err": bytes([0]) + lines("-ERR [SYS/TEMP] too busy, try later"),
    "response-codes": bytes([3])
    + lines(
        "+OK [UTF8] ready",
        "-ERR [SYS/PERM/DETAIL] no",
        "-ERR [IN-USE] maildrop locked",
        "-ERR [X-UNKNOWN] unknown code",
        "-ERR [bad code",
        "+OK",
    ),
    "truncated-body": bytes([0 | PIPELINED])
    + b"+OK ready\r\n+OK\r\n+OK\r\n+OK 2 320\r\n+OK\r\n1 120\r\n2 2",
    "unsolicited": bytes([0]) + lines("+OK ready", "+OK surprise", "+OK again"),
}

SERVER_SEEDS: dict[str, bytes] = {
    "rfc1939-apop": bytes([RFC_STAMP])
    + lines(
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
        "STAT",
        "LIST",
        "RETR 1",
        "DELE 1",
        "RETR 2",
        "DELE 2",
        "QUIT",
    ),
    "rfc1939-user": bytes([0])
    + lines("USER mrose", "PASS tanstaaf", "STAT", "LIST", "LIST 2", "LIST 3", "QUIT"),
    "rfc2449-capa": bytes([0])
    + lines("CAPA", "USER mrose", "PASS wrong", "USER mrose", "PASS tanstaaf", "CAPA", "QUIT"),
    "rfc5034-auth-plain-challenge": bytes([0])
    + lines("CAPA", "AUTH PLAIN", "dGVzdAB0ZXN0AHRlc3Q=", "LIST", "QUIT"),
    "rfc5034-auth-plain-ir": bytes([1]) + lines("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", "UIDL", "QUIT"),
    "auth-empty-ir": bytes([0]) + lines("AUTH PLAIN =", "STAT", "QUIT"),
    "auth-cancel": bytes([1]) + lines("AUTH CRAM-MD5", "*", "AUTH", "AUTH X-UNKNOWN", "QUIT"),
    "auth-login": bytes([0]) + lines("AUTH LOGIN", "YWxpY2U=", "c2VjcmV0", "STAT", "QUIT"),
    "auth-bad-base64": bytes([0]) + lines("AUTH PLAIN", "not base64!", "AUTH PLAIN ===", "QUIT"),
    "stls": bytes([0]) + lines("CAPA", "STLS"),
    "stls-injection": bytes([0]) + lines("STLS", "USER evil", "PASS evil"),
    "stls-implicit-tls": bytes([TLS]) + lines("STLS", "CAPA", "QUIT"),
    "dovecot-pipelined": bytes([DOVECOT])
    + lines(
        "CAPA",
        "USER alice",
        "PASS wrong",
        "USER alice",
        "PASS secret",
        "LIST",
        "UIDL",
        "RETR 1",
        "TOP 1 0",
        "TOP 2 5",
        "QUIT",
    ),
    "transaction": bytes([0])
    + lines(
        "USER a",
        "PASS secret",
        "STAT",
        "UIDL 1",
        "UIDL",
        "DELE 1",
        "RETR 1",
        "RSET",
        "NOOP",
        "RETR 2",
        "RETR 3",
        "QUIT",
    ),
    "utf8": bytes([0]) + "UTF8\r\nUSER caf\u00e9\r\nPASS s\u00e9cret\r\nQUIT\r\n".encode(),
    "bad-commands": bytes([0])
    + b"list\r\nRETR 1\r\nUSER\r\nUSER  \r\nPASS x\r\nLIST 0\r\nRETR 99999999999999999999999\r\n"
    + b"TOP 1\r\nDELE x\r\nAPOP mrose nothex\r\nFOO bar\r\n\r\nNOOP extra\r\nUSER a\0b\r\n"
    + b"USER a\rb\r\nAUTH PLAIN a b c\r\nAUTH \xc3\xa9\r\nquit\n",
    "lf-only": bytes([0]) + b"USER a\nPASS secret\nLIST\nRETR 2\nQUIT\n",
    "long-line": bytes([0]) + b"USER " + b"x" * 300 + b"\r\nQUIT\r\n",
    "after-quit": bytes([0]) + lines("QUIT", "USER a", "PASS b"),
}


# --- PROXY headers (HAProxy's PROXY protocol, versions 1 and 2) ----------------------------

V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2 + bytes([0x20 | command, family]) + len(body).to_bytes(2, "big") + body


def ports(source: int, destination: int) -> bytes:
    return source.to_bytes(2, "big") + destination.to_bytes(2, "big")


INET = bytes([192, 0, 2, 7, 10, 0, 0, 1]) + ports(56324, 995)
INET6 = bytes(range(1, 17)) + bytes(15) + b"\x01" + ports(1, 110)
UNIX = b"/run/client".ljust(108, b"\0") + b"/run/pop3".ljust(108, b"\0")
TLVS = b"\x01\x00\x04pop3" + b"\x04\x00\x00" + b"\x20\x00\x05\x01\x00\x00\x00\x00"
CLIENT_HELLO = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03"

PROXY_SEEDS: dict[str, bytes] = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 110\r\nCAPA\r\n",
    "v1-tcp6": b"PROXY TCP6 2001:db8::7 ::1 56324 995\r\n" + CLIENT_HELLO,
    "v1-tcp6-longest": b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\nUSER alice\r\n",
    "v1-unknown-tail": b"PROXY UNKNOWN whatever follows is ignored\r\n",
    "v1-mapped": b"PROXY TCP6 ::ffff:127.0.0.1 ::1 1 2\r\n",
    "v1-bad-address": b"PROXY TCP4 256.0.0.1 10.0.0.1 1 2\r\n",
    "v1-leading-zero": b"PROXY TCP4 192.0.2.07 10.0.0.1 1 2\r\n",
    "v1-bad-port": b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 2\r\n",
    "v1-lf-only": b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
    "v1-too-long": b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",
    "v1-truncated": b"PROXY TCP4 192.0.2.7 10.0",
    "no-header": b"USER alice\r\nPASS secret\r\n",
    "v2-inet": v2(1, 0x11, INET) + b"CAPA\r\n",
    "v2-inet-tlvs": v2(1, 0x11, INET + TLVS) + CLIENT_HELLO,
    "v2-inet6": v2(1, 0x21, INET6),
    "v2-inet-dgram": v2(1, 0x12, INET),
    "v2-unix": v2(1, 0x31, UNIX + TLVS),
    "v2-unspec": v2(1, 0x00, b"ignored"),
    "v2-local": v2(0, 0x00, b"") + b"CAPA\r\n",
    "v2-local-with-body": v2(0, 0x11, INET),
    "v2-bad-version": V2 + b"\x11\x11\x00\x0c" + INET,
    "v2-bad-family": v2(1, 0x41, INET),
    "v2-short-addresses": v2(1, 0x21, INET),
    "v2-tlv-overrun": v2(1, 0x11, INET + b"\x01\x00\x09ab"),
    "v2-tlv-truncated": v2(1, 0x11, INET + b"\x01\x00"),
    "v2-too-long": V2 + b"\x21\x11\xff\xff" + INET,
    "v2-truncated": v2(1, 0x11, INET)[:20],
}


# --- SASL exchanges: options byte, then the messages joined by 0xFF ------------------------
#
# Options (harness_common): bits 0-2 the mechanism, 8 the client side; server: 16 users
# known, 32 initial response, 64 mock_key / OAuth error details, 128 token owner;
# client: 16 initial_response() first, 32 an authzid, 64 OAUTHBEARER host and port.

PLAIN, LOGIN, CRAM, XOAUTH2, OAUTHBEARER, SCRAM1, SCRAM256 = range(7)
CLIENT = 8
KNOWN, IR, EXTRA, OWNER = 16, 32, 64, 128  # server options
C_IR, C_AUTHZ, C_HOST = 16, 32, 64  # client options


def sasl(options: int, *messages: bytes | str) -> bytes:
    parts = [m.encode() if isinstance(m, str) else m for m in messages]
    return bytes([options]) + SASL_SEPARATOR.join(parts)


# RFC 5802 section 5 (SCRAM-SHA-1) and RFC 7677 section 3 (SCRAM-SHA-256).
SCRAM1_FIRST = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
SCRAM1_SERVER_FIRST = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
SCRAM1_FINAL = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
SCRAM1_SERVER_FINAL = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
SCRAM256_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SCRAM256_SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
SCRAM256_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SCRAM256_SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
# RFC 7628 section 4.1 (success) and 4.2 (failure, then the client's ^A).
OAUTHBEARER_IR = (
    "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
    "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
)
OAUTHBEARER_BAD = (
    "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
    "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCh==\x01\x01"
)
OAUTH_ERROR = (
    '{"status":"invalid_token","scope":"example_scope",'
    '"openid-configuration":"https://example.com/.well-known/openid-configuration"}'
)
XOAUTH2_IR = (
    "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
)

SASL_SEEDS: dict[str, bytes] = {
    # Server side.
    "rfc4616-plain": sasl(PLAIN | KNOWN | IR, "\0tim\0tanstaaftanstaaf"),
    "rfc4616-plain-authzid": sasl(PLAIN | KNOWN, "Ursel\0Kurt\0xipj3plmq"),
    "plain-wrong-password": sasl(PLAIN | KNOWN, "\0tim\0wrong"),
    "plain-malformed": sasl(PLAIN | KNOWN | IR, "tim\0tanstaaftanstaaf", "more"),
    "plain-not-utf8": sasl(PLAIN | KNOWN | IR, b"\0tim\0\xc3("),
    "login": sasl(LOGIN | KNOWN, "tim", "tanstaaftanstaaf"),
    "login-with-ir": sasl(LOGIN | KNOWN | IR, "tim", "tanstaaftanstaaf"),
    "login-empty": sasl(LOGIN | KNOWN, "", "x"),
    "rfc2195-cram-md5": sasl(CRAM | KNOWN, "tim b913a602c7eda7a495b4e6e7334d3890"),
    "cram-md5-upper-hex": sasl(CRAM | KNOWN, "tim B913A602C7EDA7A495B4E6E7334D3890"),
    "cram-md5-unknown": sasl(CRAM, "tim b913a602c7eda7a495b4e6e7334d3890"),
    "cram-md5-spaces": sasl(CRAM | KNOWN, "tim smith 0123456789abcdef0123456789abcdef"),
    "xoauth2": sasl(XOAUTH2 | KNOWN | IR, XOAUTH2_IR),
    "xoauth2-owner": sasl(XOAUTH2 | KNOWN | IR | OWNER, XOAUTH2_IR),
    "xoauth2-refused": sasl(XOAUTH2 | IR | EXTRA, XOAUTH2_IR, ""),
    "rfc7628-oauthbearer": sasl(OAUTHBEARER | KNOWN | IR, OAUTHBEARER_IR),
    "rfc7628-oauthbearer-failure": sasl(OAUTHBEARER | KNOWN | EXTRA, OAUTHBEARER_BAD, "\x01"),
    "oauthbearer-discovery": sasl(OAUTHBEARER | KNOWN | IR, "n,,\x01auth=\x01\x01", "\x01"),
    "oauthbearer-bad-port": sasl(
        OAUTHBEARER | KNOWN | IR, "y,a=a=2Cb,\x01port=0143\x01auth=Bearer x\x01\x01"
    ),
    "rfc5802-scram-sha-1": sasl(SCRAM1 | KNOWN | IR, SCRAM1_FIRST, SCRAM1_FINAL, ""),
    "rfc5802-scram-sha-1-no-ir": sasl(SCRAM1 | KNOWN, SCRAM1_FIRST, SCRAM1_FINAL, ""),
    "rfc7677-scram-sha-256": sasl(SCRAM256 | KNOWN | IR, SCRAM256_FIRST, SCRAM256_FINAL, ""),
    "scram-mock-unknown": sasl(SCRAM256 | IR | EXTRA, SCRAM256_FIRST, SCRAM256_FINAL, ""),
    "scram-unknown": sasl(SCRAM1 | IR, SCRAM1_FIRST, SCRAM1_FINAL),
    "scram-channel-binding": sasl(SCRAM1 | KNOWN | IR, "p=tls-unique,,n=user,r=abc"),
    "scram-authzid": sasl(
        SCRAM1 | KNOWN | IR, "n,a=ad=3Dmin,n=user,r=fyko+d2lbbFgONRv9qkxdawL", SCRAM1_FINAL
    ),
    "scram-extension": sasl(SCRAM256 | KNOWN | IR, "n,,m=ext,n=user,r=x", "c=biws,r=x,p=AA=="),
    "scram-final-not-empty": sasl(SCRAM1 | KNOWN | IR, SCRAM1_FIRST, SCRAM1_FINAL, "again"),
    # Client side.
    "client-plain-ir": sasl(CLIENT | PLAIN | C_IR, ""),
    "client-plain-authzid": sasl(CLIENT | PLAIN | C_AUTHZ, "", "unexpected"),
    "client-login": sasl(CLIENT | LOGIN, "Username:", "Password:", "extra"),
    "client-rfc2195-cram-md5": sasl(CLIENT | CRAM, "<1896.697170952@postoffice.reston.mci.net>"),
    "client-cram-md5-empty": sasl(CLIENT | CRAM, ""),
    "client-xoauth2-error": sasl(
        CLIENT | XOAUTH2 | C_IR,
        '{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}',
        "again",
    ),
    "client-rfc7628-oauthbearer-error": sasl(
        CLIENT | OAUTHBEARER | C_IR | C_AUTHZ | C_HOST, OAUTH_ERROR
    ),
    "client-oauthbearer-not-json": sasl(CLIENT | OAUTHBEARER, "", b"\xff\xfe[1,"),
    "client-rfc5802-scram-sha-1": sasl(
        CLIENT | SCRAM1 | C_IR, SCRAM1_SERVER_FIRST, SCRAM1_SERVER_FINAL, ""
    ),
    "client-rfc5802-scram-sha-1-no-ir": sasl(
        CLIENT | SCRAM1, "", SCRAM1_SERVER_FIRST, SCRAM1_SERVER_FINAL
    ),
    "client-rfc7677-scram-sha-256": sasl(
        CLIENT | SCRAM256 | C_IR, SCRAM256_SERVER_FIRST, SCRAM256_SERVER_FINAL
    ),
    "client-scram-server-error": sasl(
        CLIENT | SCRAM1 | C_IR, SCRAM1_SERVER_FIRST, "e=invalid-proof"
    ),
    "client-scram-forged-signature": sasl(
        CLIENT | SCRAM256 | C_IR, SCRAM256_SERVER_FIRST, "v=" + "A" * 43 + "="
    ),
    "client-scram-low-iterations": sasl(
        CLIENT | SCRAM1 | C_IR | C_AUTHZ, "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=1"
    ),
    "client-scram-bad-nonce": sasl(
        CLIENT | SCRAM256 | C_IR, "r=other,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1"
    ),
    "client-scram-mandatory-ext": sasl(CLIENT | SCRAM1 | C_IR, "m=x,r=a,s=b,i=1"),
}


# --- parser inputs: the parser's index (harness_common.PARSERS), then its input ---------------

CAPA, LINES, SCAN, UIDL, CODE, B64, MAILDIR = range(7)


def parser(kind: int, payload: bytes | str) -> bytes:
    return bytes([kind]) + (payload.encode("latin-1") if isinstance(payload, str) else payload)


PARSER_SEEDS: dict[str, bytes] = {
    "capa-rfc2449": parser(CAPA, lines(*RFC2449_CAPABILITIES)),
    "capa-rfc5034": parser(
        CAPA,
        lines(
            "SASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS",
            "STLS",
            "IMPLEMENTATION BlurdyBlurp POP3 server",
        ),
    ),
    "capa-dovecot": parser(
        CAPA,
        lines(
            "CAPA",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "AUTH-RESP-CODE",
            "STLS",
            "USER",
            "SASL PLAIN LOGIN CRAM-MD5",
        ),
    ),
    "capa-twisted-style": parser(
        CAPA,
        b"TOP\nUSER\nUIDL\nPIPELINE\nIMPLEMENTATION Twisted POP3\nSASL CRAM-MD5\n"
        b"EXPIRE 60 USER\nLOGIN-DELAY 120 USER\n",
    ),
    "capa-lenient": parser(
        CAPA, b"top\nSasl  plain\r\n\r\npipeline\r\nexpire NEVER user\r\nutf8 USER\r\n"
    ),
    "capa-bad-delay": parser(CAPA, lines("LOGIN-DELAY soon", "EXPIRE 99999999999")),
    "capa-long-line": parser(CAPA, b"IMPLEMENTATION " + b"x" * 495 + b"\n"),
    "capa-not-ascii": parser(CAPA, lines("TOP") + b"X-\xc3\xa9\r\n"),
    "line-stat": parser(LINES, "2 320"),
    "line-stat-extra": parser(LINES, "1 120 octets follow"),
    "line-uid": parser(LINES, "1 whqtswO00WBw418f9t5JxYwZ"),
    "line-long-number": parser(LINES, "1" * 21 + " 2"),
    "line-max-number": parser(LINES, "9" * 20 + " " + "9" * 20),
    "line-unicode-digits": parser(LINES, "\u0661 2".encode()),
    "line-double-space": parser(LINES, "1  2"),
    "scan-rfc1939": parser(SCAN, b"1 120\r\n2 200\r\n"),
    "scan-dovecot": parser(SCAN, b"1 1320\r\n2 442\r\n3 5611\r\n"),
    "scan-extra-text": parser(SCAN, b"1 120 x\r\n2 200\n"),
    "scan-repeated": parser(SCAN, b"1 120\r\n1 200\r\n"),
    "scan-no-line-end": parser(SCAN, b"1 120\r\n2 200"),
    "scan-empty": parser(SCAN, b""),
    "scan-cr-cr": parser(SCAN, b"1 2\r\r\n"),
    "uidl-rfc1939": parser(UIDL, b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n"),
    "uidl-dovecot": parser(UIDL, b"1 000000015a1b2c3d\r\n2 000000025a1b2c3d\r\n"),
    "uidl-long": parser(UIDL, b"1 " + b"u" * 512 + b"\r\n2 " + b"v" * 513 + b"\r\n"),
    "uidl-repeated": parser(UIDL, b"7 a\n7 b\n"),
    "uidl-tab": parser(UIDL, b"1 a\tb\r\n"),
    "uidl-repeat-then-malformed": parser(UIDL, b"2 a\r\n2 b\r\n2 c d\r\n"),
    "code-sys-temp": parser(CODE, "[SYS/TEMP] too busy, try later"),
    "code-in-use": parser(CODE, "[IN-USE] maildrop locked"),
    "code-auth": parser(CODE, "[AUTH] Authentication failed."),
    "code-login-delay": parser(CODE, "[LOGIN-DELAY] wait a while"),
    "code-detail": parser(CODE, "[sys/perm/DETAIL]no space"),
    "code-unclosed": parser(CODE, "[bad code"),
    "code-empty-level": parser(CODE, "[SYS//TEMP] x"),
    "code-del": parser(CODE, "[X\x7f] x"),
    "code-bare": parser(CODE, "SYS/TEMP"),
    "b64-plain": parser(B64, b"dGVzdAB0ZXN0AHRlc3Q="),
    "b64-two-pad": parser(B64, b"AGZvbwBiYXI="),
    "b64-stray-bits": parser(B64, b"QR=="),
    "b64-empty": parser(B64, b""),
    "b64-pad-only": parser(B64, b"===="),
    "b64-inner-pad": parser(B64, b"QQ==QQ=="),
    "b64-url-safe": parser(B64, b"dGVz-A=="),
    "maildir-python": parser(MAILDIR, b"1234567890.M123456P789Q1.host.example.org:2,RS"),
    "maildir-dovecot": parser(MAILDIR, b"1035478339.M619395P32445.host,S=1723,W=1754:2,S"),
    "maildir-new": parser(MAILDIR, b"1700000000.V801I1234M567.mx"),
    "maildir-long": parser(MAILDIR, b"x" * 71 + b":2,S"),
    "maildir-seventy": parser(MAILDIR, b"y" * 70),
    "maildir-non-ascii": parser(MAILDIR, "1700000000.caf\u00e9:2,".encode()),
    "maildir-bad-utf8": parser(MAILDIR, b"17\xff\xfe.host:2,T"),
    "maildir-space": parser(MAILDIR, b"a b:2,S"),
    "maildir-comma-first": parser(MAILDIR, b",S=12:2,S"),
    "maildir-colon-first": parser(MAILDIR, b":2,S"),
    "maildir-control": parser(MAILDIR, b"abc\x01\x7f\n:2,"),
}


def link(options: int) -> tuple[bytes, bytes]:
    """Run a client script against the canned server; return (server bytes, client bytes)."""
    client = _ClientDriver(options, 10_000, 1 << 20)
    server = _ServerDriver(options, 10_000, 1 << 20)
    to_client: list[bytes] = []
    to_server: list[bytes] = []
    seen_client = seen_server = 0
    while True:
        new_server = [item[1] for item in server.trace[seen_server:] if item[0] == "sent"]
        seen_server = len(server.trace)
        for chunk in new_server:
            to_client.append(chunk)
            client.feed(chunk)
        new_client = [item[1] for item in client.trace[seen_client:] if item[0] == "sent"]
        seen_client = len(client.trace)
        for chunk in new_client:
            to_server.append(chunk)
            server.feed(chunk)
        if not new_server and not new_client:
            return b"".join(to_client), b"".join(to_server)


def main() -> None:
    client_dir = HERE / "corpus" / "client"
    server_dir = HERE / "corpus" / "server"
    client_dir.mkdir(parents=True, exist_ok=True)
    server_dir.mkdir(parents=True, exist_ok=True)
    for name, data in CLIENT_SEEDS.items():
        (client_dir / f"seed-{name}").write_bytes(data)
    for name, data in SERVER_SEEDS.items():
        (server_dir / f"seed-{name}").write_bytes(data)
    proxy_dir = HERE / "corpus" / "proxy"
    proxy_dir.mkdir(parents=True, exist_ok=True)
    for name, data in PROXY_SEEDS.items():
        (proxy_dir / f"seed-{name}").write_bytes(data)
    for script in range(len(CLIENT_SCRIPTS)):
        for extra in (0, PIPELINED, TLS | PIPELINED, CANCEL | RFC_STAMP, DOVECOT | 1):
            options = script | extra
            from_server, from_client = link(options)
            (client_dir / f"link-{options:03d}").write_bytes(bytes([options]) + from_server)
            (server_dir / f"link-{options:03d}").write_bytes(bytes([options]) + from_client)
    for role, seeds in (("sasl", SASL_SEEDS), ("parsers", PARSER_SEEDS)):
        role_dir = HERE / "corpus" / role
        role_dir.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (role_dir / f"seed-{name}").write_bytes(data)
    roles = ("client", "server", "proxy", "sasl", "parsers")
    counts = [len(list((HERE / "corpus" / role).iterdir())) for role in roles]
    print(", ".join(f"{n} {role} seeds" for n, role in zip(counts, roles, strict=True)))


if __name__ == "__main__":
    main()
