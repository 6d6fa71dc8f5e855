"""Throughput of the pop3-sansio body decoder, listings and encoder vs poplib and a plain copy.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_parse.py``).
Options: ``--quick`` (tiny sizes, one repetition: a smoke test that takes a
few seconds), ``--json PATH`` (also write the results as JSON), ``--reps N``.

What is timed (``time.perf_counter``, best of N repetitions, ``gc`` disabled):

* ours: ``receive_data(chunk)`` for each chunk of the wire bytes, each followed
  by ``next_event()`` until ``NEED_DATA``, appending every ``Data.data`` to a
  list (what a binding does); for LIST/UIDL also ``b"".join`` and the parser.
* poplib: the real ``poplib.POP3._getlongresp`` reading the same chunks from an
  ``io.BufferedReader`` (default buffer size, as ``socket.makefile("rb")``
  gives poplib) over a raw reader that hands out the chunks; for LIST/UIDL
  plus the split/int() loop a poplib user writes to get the same dict.
* copy: ``bytes(memoryview(chunk))`` for each chunk -- one copy of every byte,
  chunk by chunk, with no protocol work at all.

MB/s are 10**6 wire bytes per second (for the encoder: input message bytes).
Targets are printed as PASS/FAIL lines; nothing here asserts on a timing.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import poplib
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pop3_sansio import (
    NEED_DATA,
    ClientConnection,
    Data,
    EndOfResponse,
    Greeting,
    List,
    Ok,
    Pass,
    Retr,
    ServerConnection,
    State,
    Uidl,
    User,
)
from pop3_sansio.codec import parse_scan_listing, parse_uid_listing

KIB = 1024
CHUNK_SIZES = (4 * KIB, 64 * KIB, 1024 * KIB)
ENCODE_PIECE = 64 * KIB

# --- deterministic workloads ---------------------------------------------------------

_WORD_TEXT = (
    "the of and to in is that for it with as was on be at by this had not are but from or "
    "have an they which one you were her all she there would their we him been has when who "
    "will more no if out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "meeting invoice attached please regards thanks project schedule report deadline review "
    "Monday Friday quarterly budget proposal customer server mailbox delivery update"
)
_WORDS = _WORD_TEXT.split()


def _text_line(rng: random.Random) -> str:
    target = rng.randint(60, 78)
    words: list[str] = []
    length = -1
    while length < target - 8:
        word = rng.choice(_WORDS)
        r = rng.random()
        if r < 0.08:
            word += "."  # sentences end: most dots in mail are not at a line start
        elif r < 0.14:
            word += ","
        words.append(word)
        length += len(word) + 1
    line = " ".join(words)
    return line[:target]


_POOL: list[str] = []


def _line_pool() -> list[str]:
    """4096 distinct text lines (made once) that the messages draw from."""
    if not _POOL:
        rng = random.Random(1939)
        _POOL.extend(_text_line(rng) for _ in range(4096))
    return _POOL


def email_body(size: int, seed: int = 1939) -> list[bytes]:
    """Lines (without line end) of an email-like message of about ``size`` octets.

    Text lines of 60-78 characters; about 1% of them start with a dot (a few
    are a lone "."), so the wire form needs dot-stuffing.
    """
    rng = random.Random(seed)
    pool = _line_pool()
    header = [
        "Return-Path: <alice@example.org>",
        "From: Alice <alice@example.org>",
        "To: Bob <bob@example.com>",
        "Subject: Quarterly report",
        "Date: Mon, 1 Jan 2024 10:00:00 +0000",
        "Message-ID: <bench.1939@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
    ]
    lines = [h.encode() for h in header]
    total = sum(len(x) + 2 for x in lines)
    while total < size:
        line = rng.choice(pool)
        r = rng.random()
        if r < 0.001:
            line = "."
        elif r < 0.01:
            line = rng.choice((".", "..", "...", ".signature ")) + line[:70]
        lines.append(line.encode())
        total += len(lines[-1]) + 2
    return lines


def base64_body(size: int, seed: int = 2045) -> list[bytes]:
    """Lines of a base64 attachment (76 characters each): no line starts with a dot."""
    import base64

    rng = random.Random(seed)
    raw = rng.randbytes(size * 3 // 4)
    text = base64.b64encode(raw)
    return [text[i : i + 76] for i in range(0, len(text), 76)]


def stuffed_wire(lines: Sequence[bytes]) -> bytes:
    """``+OK`` status line, the dot-stuffed CRLF body, and the ``.`` CRLF terminator."""
    body = b"\r\n".join(b"." + x if x.startswith(b".") else x for x in lines)
    return b"+OK message follows\r\n" + body + b"\r\n.\r\n"


def scan_listing(count: int, seed: int = 5) -> tuple[bytes, dict[int, int]]:
    rng = random.Random(seed)
    expected = {i: rng.randint(300, 20_000_000) for i in range(1, count + 1)}
    body = b"".join(b"%d %d\r\n" % item for item in expected.items())
    return b"+OK scan listing follows\r\n" + body + b".\r\n", expected


def uid_listing(count: int, seed: int = 7) -> tuple[bytes, dict[int, str]]:
    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    expected = {i: "".join(rng.choices(alphabet, k=24)) for i in range(1, count + 1)}
    body = b"".join(b"%d %s\r\n" % (n, u.encode()) for n, u in expected.items())
    return b"+OK unique-id listing follows\r\n" + body + b".\r\n", expected


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- the three readers -----------------------------------------------------------------


def client_in_transaction() -> ClientConnection:
    c = ClientConnection()
    c.receive_data(b"+OK ready\r\n")
    assert isinstance(c.next_event(), Greeting)
    c.send(User("u"))
    c.send(Pass("p"))
    c.receive_data(b"+OK\r\n+OK\r\n")
    assert isinstance(c.next_event(), Ok)
    assert isinstance(c.next_event(), Ok)
    assert c.our_state is State.TRANSACTION
    return c


def drive(c: ClientConnection, chunks: Iterable[bytes]) -> tuple[list[bytes], int]:
    """Feed every chunk, draining events after each; return the data and the answers ended."""
    out: list[bytes] = []
    keep = out.append
    need = NEED_DATA
    receive = c.receive_data
    nxt = c.next_event
    ends = 0
    for chunk in chunks:
        receive(chunk)
        while True:
            e = nxt()
            if e is need:
                break
            t = type(e)
            if t is Data:
                keep(e.data)  # type: ignore[union-attr]
            elif t is EndOfResponse:
                ends += 1
    return out, ends


class ChunkReader(io.RawIOBase):
    """A raw stream that returns the given chunks (at most one chunk per read)."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = chunks
        self._i = 0
        self._off = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._i >= len(self._chunks):
            return 0
        chunk = self._chunks[self._i]
        n = min(len(b), len(chunk) - self._off)
        b[:n] = memoryview(chunk)[self._off : self._off + n]
        self._off += n
        if self._off == len(chunk):
            self._i += 1
            self._off = 0
        return n


def poplib_client(chunks: Sequence[bytes]) -> poplib.POP3:
    p = poplib.POP3.__new__(poplib.POP3)
    p._debugging = 0  # type: ignore[attr-defined]
    p.file = io.BufferedReader(ChunkReader(chunks))  # type: ignore[attr-defined]
    return p


def copy_chunks(chunks: Sequence[bytes]) -> list[bytes]:
    return [bytes(memoryview(c)) for c in chunks]


# --- timing --------------------------------------------------------------------------------


def best_of(reps: int, setup: Callable[[], Any], run: Callable[[Any], Any]) -> float:
    """Best wall time of ``run(setup())`` over ``reps`` runs; setup is not timed."""
    best = float("inf")
    for _ in range(reps):
        arg = setup()
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            run(arg)
            t1 = time.perf_counter()
        finally:
            gc.enable()
        best = min(best, t1 - t0)
    return best


Case = tuple[Callable[[], Any], Callable[[Any], Any]]


def race(reps: int, *cases: Case) -> list[float]:
    """Best time of each ``(setup, run)`` case, the cases taking turns in every round.

    Taking turns means a burst of load from other processes hits ours, poplib
    and the copy alike, so the ratios stay meaningful on a shared machine.
    """
    best = [float("inf")] * len(cases)
    for _ in range(reps):
        for i, (setup, run) in enumerate(cases):
            best[i] = min(best[i], best_of(1, setup, run))
    return best


def no_setup() -> None:
    return None


# --- the workloads --------------------------------------------------------------------------


def bench_retr(name: str, lines: list[bytes], reps: int, results: list[dict[str, Any]]) -> None:
    wire = stuffed_wire(lines)
    expected = b"".join(x + b"\r\n" for x in lines)
    for size in CHUNK_SIZES:
        chunks = split(wire, size)
        # Correctness, once, outside the timing.
        data, ends = drive(_retr_client(), chunks)
        if b"".join(data) != expected or ends != 1:
            raise RuntimeError(f"{name}: pop3-sansio decoded the wrong body")
        _, plines, _ = poplib_client(chunks)._getlongresp()
        if b"".join(x + b"\r\n" for x in plines) != expected:
            raise RuntimeError(f"{name}: poplib decoded the wrong body")
        ours, pop, copy = race(
            reps,
            (_retr_client, lambda c, ch=chunks: drive(c, ch)),
            (lambda ch=chunks: poplib_client(ch), _poplib_long),
            (no_setup, lambda _, ch=chunks: copy_chunks(ch)),
        )
        results.append(_row(name, size, len(wire), ours, pop, copy))


def _retr_client() -> ClientConnection:
    c = client_in_transaction()
    c.send(Retr(1))
    return c


def _poplib_long(p: poplib.POP3) -> Any:
    return p._getlongresp()  # type: ignore[attr-defined]


def bench_pipelined(count: int, msg_size: int, reps: int, results: list[dict[str, Any]]) -> None:
    wires = []
    for i in range(count):
        lines = email_body(msg_size, seed=10_000 + i)
        wires.append(stuffed_wire(lines))
    wire = b"".join(wires)
    for size in CHUNK_SIZES:
        chunks = split(wire, size)

        def send_all(c: ClientConnection) -> ClientConnection:
            for i in range(1, count + 1):
                c.send(Retr(i))
            return c

        def parse_only_setup() -> ClientConnection:
            return send_all(client_in_transaction())

        def send_and_parse(c: ClientConnection, ch: list[bytes] = chunks) -> Any:
            return drive(send_all(c), ch)

        def parse(c: ClientConnection, ch: list[bytes] = chunks) -> Any:
            return drive(c, ch)

        _, ends = drive(parse_only_setup(), chunks)
        if ends != count:
            raise RuntimeError("pipelined: wrong number of answers")

        def pop_all(p: poplib.POP3) -> None:
            for _ in range(count):
                p._getlongresp()  # type: ignore[attr-defined]

        t_send, t_parse, t_both, pop, copy = race(
            reps,
            (client_in_transaction, send_all),
            (parse_only_setup, parse),
            (client_in_transaction, send_and_parse),
            (lambda ch=chunks: poplib_client(ch), pop_all),
            (no_setup, lambda _, ch=chunks: copy_chunks(ch)),
        )
        label = f"{count}x{msg_size // 1000}KB RETR pipelined"
        for what, t in (("parse", t_parse), ("send+parse", t_both)):
            row = _row(f"{label} ({what})", size, len(wire), t, pop, copy)
            row["us_per_msg"] = t / count * 1e6
            row["poplib_us_per_msg"] = pop / count * 1e6
            row["send_only_us_per_msg"] = t_send / count * 1e6
            results.append(row)


def bench_listing(kind: str, count: int, reps: int, results: list[dict[str, Any]]) -> None:
    if kind == "LIST":
        wire, expected = scan_listing(count)
        command: Any = List()
        parse: Callable[[bytes], Any] = parse_scan_listing

        def pop_parse(lines: list[bytes]) -> dict[int, Any]:
            d: dict[int, Any] = {}
            for line in lines:
                num, size = line.split()
                d[int(num)] = int(size)
            return d

    else:
        wire, expected = uid_listing(count)  # type: ignore[assignment]
        command = Uidl()
        parse = parse_uid_listing

        def pop_parse(lines: list[bytes]) -> dict[int, Any]:
            d: dict[int, Any] = {}
            for line in lines:
                num, uid = line.split()
                d[int(num)] = uid.decode("ascii")
            return d

    def setup() -> ClientConnection:
        c = client_in_transaction()
        c.send(command)
        return c

    for size in CHUNK_SIZES:
        chunks = split(wire, size)

        def ours(c: ClientConnection, ch: list[bytes] = chunks) -> Any:
            data, _ = drive(c, ch)
            return parse(b"".join(data))

        def pop(p: poplib.POP3) -> Any:
            _, lines, _ = p._getlongresp()  # type: ignore[attr-defined]
            return pop_parse(lines)

        if ours(setup()) != expected or pop(poplib_client(chunks)) != expected:
            raise RuntimeError(f"{kind}: wrong listing")
        t_ours, t_pop, copy = race(
            reps,
            (setup, ours),
            (lambda ch=chunks: poplib_client(ch), pop),
            (no_setup, lambda _, ch=chunks: copy_chunks(ch)),
        )
        name = f"{kind} {count // 1000}k lines -> dict"
        results.append(_row(name, size, len(wire), t_ours, t_pop, copy))


def bench_encoder(lines: list[bytes], reps: int, results: list[dict[str, Any]]) -> None:
    message = b"".join(x + b"\n" for x in lines)
    pieces = split(message, ENCODE_PIECE)
    expected = stuffed_wire(lines)

    def setup() -> ServerConnection:
        s = ServerConnection()
        s.send(Greeting("hi"))
        for line, answer in ((b"USER u\r\n", Ok()), (b"PASS p\r\n", Ok()), (b"RETR 1\r\n", None)):
            s.receive_data(line)
            s.next_event()
            if answer is not None:
                s.send(answer)
        return s

    def encode(s: ServerConnection) -> list[bytes]:
        send = s.send
        out = [send(Ok("message follows"))]
        out += [send(Data(p)) for p in pieces]
        out.append(send(EndOfResponse()))
        return out

    if b"".join(encode(setup())) != expected:
        raise RuntimeError("encoder: wrong wire bytes")
    t, copy = race(reps, (setup, encode), (no_setup, lambda _: copy_chunks(pieces)))
    row = _row("encoder LF message -> wire", ENCODE_PIECE, len(message), t, None, copy)
    results.append(row)


def _row(
    name: str, chunk: int, nbytes: int, ours: float, pop: float | None, copy: float
) -> dict[str, Any]:
    return {
        "workload": name,
        "chunk": chunk,
        "bytes": nbytes,
        "ours_s": ours,
        "poplib_s": pop,
        "copy_s": copy,
        "ours_mbps": nbytes / ours / 1e6,
        "poplib_mbps": None if pop is None else nbytes / pop / 1e6,
        "copy_mbps": nbytes / copy / 1e6,
        "x_poplib": None if pop is None else pop / ours,
        "x_copy": copy / ours,
    }


# --- reporting ----------------------------------------------------------------------------


def _chunk_label(size: int) -> str:
    return f"{size // KIB} KiB" if size < KIB * KIB else f"{size // (KIB * KIB)} MiB"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| workload | chunk | ours MB/s | poplib MB/s | copy MB/s | ours/poplib | ours/copy "
        "| ours us/msg |"
    )
    rows = [head, "|" + "---|" * 8]
    for r in results:
        cells = [
            r["workload"],
            _chunk_label(r["chunk"]),
            _fmt(r["ours_mbps"], ".0f"),
            _fmt(r["poplib_mbps"], ".1f"),
            _fmt(r["copy_mbps"], ".0f"),
            _fmt(r["x_poplib"], ".1f") + ("x" if r["x_poplib"] is not None else ""),
            _fmt(r["x_copy"], ".2f") + "x",
            _fmt(r.get("us_per_msg"), ".2f"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def pick(prefix: str, chunk: int | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in results
            if r["workload"].startswith(prefix) and (chunk is None or r["chunk"] == chunk)
        ]

    checks: list[dict[str, Any]] = []

    def check(label: str, rows: list[dict[str, Any]], key: str, bound: float, le: bool) -> None:
        for r in rows:
            value = r[key]
            ok = value <= bound if le else value >= bound
            op = "<=" if le else ">="
            checks.append(
                {
                    "target": f"{label} [{r['workload']}, {_chunk_label(r['chunk'])}]",
                    "value": value,
                    "bound": f"{op} {bound}",
                    "pass": ok,
                }
            )

    check("20 MB RETR >= 12x poplib", pick("RETR email", 64 * KIB), "x_poplib", 12, False)
    check("20 MB RETR >= 0.15x copy", pick("RETR email", 64 * KIB), "x_copy", 0.15, False)
    check("no-dot body >= 1.0x copy", pick("RETR base64"), "x_copy", 1.0, False)
    # The issue states this one as 8 us where poplib takes about 50: as a
    # same-run ratio, at least 6.25x poplib. The absolute bound is printed
    # too; it only holds on a machine as fast as the one it was set on.
    check("per 4 KB message >= 6.25x poplib", pick("2000x4KB"), "x_poplib", 6.25, False)
    check("per 4 KB message <= 8 us", pick("2000x4KB"), "us_per_msg", 8, True)
    check("LIST >= 3x poplib+parsing", pick("LIST"), "x_poplib", 3, False)
    check("UIDL >= 3x poplib+parsing", pick("UIDL"), "x_poplib", 3, False)
    check("encoder >= 0.1x copy", pick("encoder"), "x_copy", 0.1, False)
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (best of N)")
    args = parser.parse_args(argv)

    if args.quick:
        body_size, n_msgs, n_list, reps = 100_000, 20, 1_000, args.reps or 1
    else:
        body_size, n_msgs, n_list, reps = 20_000_000, 2000, 100_000, args.reps or 7
    # poplib refuses lines over _MAXLINE (2048) octets; no workload here has
    # one (the longest line is 80 octets), so it is left at its default.

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    email = email_body(body_size)
    mb = f"{body_size / 1e6:g} MB"
    bench_retr(f"RETR email {mb}, ~1% dot lines", email, reps, results)
    bench_retr(f"RETR base64 {mb}, no dot lines", base64_body(body_size), reps, results)
    bench_pipelined(n_msgs, 4000, reps, results)
    bench_listing("LIST", n_list, reps, results)
    bench_listing("UIDL", n_list, reps, results)
    bench_encoder(email, reps, results)
    elapsed = time.perf_counter() - started

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"pop3-sansio parse benchmark: Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, best of {reps}, {elapsed:.1f} s total, "
        f"load average {load:.2f} at the end (other processes skew the numbers)"
    )
    print()
    print(table(results))
    print()
    checks = targets(results)
    for c in checks:
        verdict = "PASS" if c["pass"] else "FAIL"
        print(f"{verdict}  {c['target']}: {c['value']:.2f} ({c['bound']})")
    failed = sum(not c["pass"] for c in checks)
    print(f"\n{len(checks) - failed} of {len(checks)} target checks pass")

    if args.json:
        payload = {
            "python": sys.version,
            "machine": platform.machine(),
            "quick": args.quick,
            "reps": reps,
            "loadavg_1min": load,
            "elapsed_s": elapsed,
            "results": results,
            "targets": checks,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
