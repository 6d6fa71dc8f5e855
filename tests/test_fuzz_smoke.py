"""The fuzz harnesses' invariants over the seed corpus and a fixed set of mutations.

No atheris needed: every ``fuzz/fuzz_<role>.py`` exposes ``check(data)``, which
raises when the core lets something other than a ``ProtocolError`` escape, gives a
different trace for a different chunking, buffers more than its limit allows, lets
a SASL exchange succeed against its RFC, or when two parsers of the same grammar
disagree (see fuzz/README.md). The mutations are seeded, so a failure here
is reproducible: the assertion message holds the input.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzz_client  # noqa: E402
import fuzz_parsers  # noqa: E402
import fuzz_proxy  # noqa: E402
import fuzz_sasl  # noqa: E402
import fuzz_server  # noqa: E402
import harness_common  # noqa: E402
import make_corpus  # noqa: E402
import pop3_sansio as p  # noqa: E402

CHECKS: dict[str, Callable[[bytes], None]] = {
    "client": fuzz_client.check,
    "server": fuzz_server.check,
    "proxy": fuzz_proxy.check,
    "sasl": fuzz_sasl.check,
    "parsers": fuzz_parsers.check,
}
ROLES = list(CHECKS)
MUTATIONS_PER_ROLE = 2000
MAX_MUTANT = 1024  # keeps the byte-at-a-time passes fast


def corpus(role: str) -> list[Path]:
    return sorted((FUZZ / "corpus" / role).iterdir())


@pytest.mark.parametrize("role", ROLES)
def test_corpus_is_there(role: str) -> None:
    files = corpus(role)
    assert len(files) >= 20
    assert all(0 < f.stat().st_size <= 4096 for f in files)


@pytest.mark.parametrize(
    ("role", "path"),
    [(role, path) for role in ROLES for path in corpus(role)],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_seed(role: str, path: Path) -> None:
    CHECKS[role](path.read_bytes())


@pytest.mark.parametrize(
    ("role", "seeds"),
    [
        ("client", make_corpus.CLIENT_SEEDS),
        ("server", make_corpus.SERVER_SEEDS),
        ("proxy", make_corpus.PROXY_SEEDS),
        ("sasl", make_corpus.SASL_SEEDS),
        ("parsers", make_corpus.PARSER_SEEDS),
    ],
)
def test_hand_written_seeds_are_current(role: str, seeds: dict[str, bytes]) -> None:
    # The committed files are what make_corpus.py writes: rerun it after edits.
    for name, data in seeds.items():
        assert (FUZZ / "corpus" / role / f"seed-{name}").read_bytes() == data, name


_INTERESTING = [b"\r", b"\n", b".", b"+", b"-", b" ", b"\0", b"\xff", b"=", b"*", b"<", b"@"]
_TOKENS = [
    b"\r\n",
    b"\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"..",
    b"+OK ",
    b"-ERR ",
    b"+ ",
    b"[AUTH] ",
    b"[SYS/TEMP] ",
    b"USER a\r\n",
    b"PASS secret\r\n",
    b"AUTH PLAIN\r\n",
    b"STLS\r\n",
    b"QUIT\r\n",
    b"LIST\r\n",
    b"RETR 1\r\n",
    b"dGVzdAB0ZXN0AHRlc3Q=\r\n",
    b"*\r\n",
    b"PROXY TCP4 ",
    b"PROXY UNKNOWN",
    b"127.0.0.1 ",
    b"\r\n\r\n\x00\r\nQUIT\n",
    b"\x21\x11\x00\x0c",
    b"\xff",  # the SASL harness's message separator
    b"n,,n=user,r=",
    b",p=",
    b"\x01auth=Bearer ",
    b"SASL PLAIN ",
    b"LOGIN-DELAY 9",
    b" 4294967296\r\n",
    b":2,S",
]


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """One to four random edits of ``data``: flips, inserts, cuts, splices, truncations."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        pos = rng.randint(0, len(buf))
        if kind == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:  # overwrite a byte with a delimiter
            buf[rng.randrange(len(buf))] = rng.choice(_INTERESTING)[0]
        elif kind == 2:  # insert a protocol token
            buf[pos:pos] = rng.choice(_TOKENS)
        elif kind == 3:  # delete a range
            buf[pos : pos + rng.randint(1, 16)] = b""
        elif kind == 4:  # truncate
            del buf[pos:]
        elif kind == 5:  # splice with another seed
            cut = rng.randint(0, len(other))
            buf[pos:] = other[cut:]
        elif kind == 6 and buf:  # duplicate a slice
            end = min(len(buf), pos + rng.randint(1, 64))
            buf[pos:pos] = buf[pos:end]
        elif kind == 7:  # a long run: line limits
            buf[pos:pos] = rng.choice([*_INTERESTING, b"x", b"A"]) * rng.choice([255, 256, 513])
        elif buf:  # another options byte
            buf[0] = rng.randrange(256)
    return bytes(buf[:MAX_MUTANT])


@pytest.mark.parametrize("role", ROLES)
def test_mutations(role: str) -> None:
    seeds = [path.read_bytes() for path in corpus(role)]
    rng = random.Random(f"pop3-sansio {role} 1939")
    check = CHECKS[role]
    for n in range(MUTATIONS_PER_ROLE):
        data = mutate(rng, rng.choice(seeds), rng.choice(seeds))
        try:
            check(data)
        except BaseException as exc:
            raise AssertionError(f"mutation {n} of {role}: {data!r}") from exc


def test_harness_goes_deep() -> None:
    # Guard against a harness that silently stops early: the RFC 1939 session
    # must reach QUIT and the close, with both bodies read.
    data = (FUZZ / "corpus" / "client" / "seed-rfc1939-apop").read_bytes()
    trace = harness_common.client_trace(data, [data[1:]])
    sent = [item[1] for item in trace if item[0] == "sent"]
    assert sent[0].startswith(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb")
    assert sent[-1] == b"QUIT\r\n"
    assert sum(1 for item in trace if item == ("event", p.EndOfResponse())) == 3
    assert trace[-1] == ("event", p.ConnectionClosed())

    data = (FUZZ / "corpus" / "server" / "seed-dovecot-pipelined").read_bytes()
    trace = harness_common.server_trace(data, [data[1:]])
    events = [item[1] for item in trace if item[0] == "event"]
    assert p.Top(2, 5) in events
    assert events[-1] == p.Quit()  # answered +OK: the server is CLOSED, the rest waits
    assert trace[-1] == ("sent", b"+OK\r\n")


def test_harness_catches_chunking_differences() -> None:
    assert harness_common.merge_data([("data", b"a"), ("data", b"b"), ("tls",)]) == [
        ("data", b"ab"),
        ("tls",),
    ]
    # STLS injection is one point in the session whichever way the bytes came.
    data = (FUZZ / "corpus" / "server" / "seed-stls-injection").read_bytes()
    whole = harness_common.server_trace(data, [data[1:]])
    bytewise = harness_common.server_trace(data, [bytes([b]) for b in data[1:]])
    assert whole == bytewise
    assert whole[-1] == ("tls",)


def test_proxy_harness_reaches_a_header_and_catches_overreads() -> None:
    data = (FUZZ / "corpus" / "proxy" / "seed-v2-inet-tlvs").read_bytes()
    kind, header, rest = harness_common.proxy_trace([data])
    assert kind == "header"
    assert header == p.ProxyHeader(2, "PROXY", ("192.0.2.7", 56324), ("10.0.0.1", 995))
    assert rest.startswith(b"\x16\x03\x01")  # the ClientHello is left for TLS
    assert harness_common.proxy_trace([b"USER alice\r\n"]) == ("error", "proxy-signature")


def test_sasl_harness_reaches_success_on_both_sides() -> None:
    # The RFC example exchanges must get through the harness's own checks to the end.
    for name in (
        "rfc4616-plain",
        "login",
        "rfc2195-cram-md5",
        "xoauth2",
        "rfc7628-oauthbearer",
        "rfc5802-scram-sha-1",
        "rfc5802-scram-sha-1-no-ir",
        "rfc7677-scram-sha-256",
    ):
        trace = harness_common.sasl_server_trace(make_corpus.SASL_SEEDS[name])
        assert isinstance(trace[-1][1], p.Succeeded), name
    for name in ("client-rfc5802-scram-sha-1-no-ir", "client-rfc7677-scram-sha-256"):
        trace = harness_common.sasl_client_trace(make_corpus.SASL_SEEDS[name])
        assert trace[-1] == ("response", b"", True), name


def test_sasl_harness_catches_forged_successes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that takes any CRAM-MD5 digest, a client that takes any server signature.
    wrong = make_corpus.sasl(
        make_corpus.CRAM | make_corpus.KNOWN, "tim 0123456789abcdef0123456789abcdef"
    )
    fuzz_sasl.check(wrong)
    monkeypatch.setattr(
        p.CramMD5Server, "_secret_found", lambda self, secret: p.Succeeded(self._username, "")
    )
    with pytest.raises(AssertionError, match="CRAM-MD5 forged"):
        fuzz_sasl.check(wrong)
    forged = make_corpus.SASL_SEEDS["client-scram-forged-signature"]
    fuzz_sasl.check(forged)
    monkeypatch.setattr(p.ScramClient, "_verify_server_final", lambda self, challenge: None)
    with pytest.raises(AssertionError, match="forged server-final"):
        fuzz_sasl.check(forged)


def test_parsers_harness_catches_disagreements(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    import pop3_sansio._listing as listing

    # A fast path looser than the line parser: "1 2\r\r\n" is not a listing line.
    data = make_corpus.PARSER_SEEDS["scan-cr-cr"]
    fuzz_parsers.check(data)
    monkeypatch.setattr(listing, "_SCAN_LISTING", re.compile(rb"(?:[0-9]+ [0-9]+\s*\n)*"))
    with pytest.raises(AssertionError, match="line by line"):
        fuzz_parsers.check(data)
    # A Maildir unique part taken as the uid even with a space in it.
    data = make_corpus.PARSER_SEEDS["maildir-space"]
    fuzz_parsers.check(data)
    monkeypatch.setattr(harness_common, "_base_uid", lambda unique: unique)
    with pytest.raises(AssertionError, match="gives uid"):
        fuzz_parsers.check(data)
