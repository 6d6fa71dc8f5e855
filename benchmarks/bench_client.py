"""Client benchmark over loopback: pop3_asyncio vs the standard library's poplib.

Both clients fetch the same messages from the same server (``pop3 serve`` on a
Maildir, in its own process), one after the other, in one run. Each client runs
in a fresh subprocess so that its peak memory (ru_maxrss) is its own. Prints
wall times, throughput, the ratio to poplib, and peak RSS.

    .venv/bin/python benchmarks/bench_client.py [--big-mb 50] [--small 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

USER, PASSWORD = "bench", "bench-password"

# VmHWM: this process's peak resident memory in KiB. (ru_maxrss would include the
# memory of the benchmark process that forked it: Linux keeps it across exec.)
PEAK = """
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

CLIENT_CODE = {
    "poplib": """
import poplib, sys, time
host, port, user, password, which = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
poplib._MAXLINE = 1 << 20  # its 2048-octet default rejects long lines
c = poplib.POP3(host, port)
c.user(user); c.pass_(password)
count, _ = c.stat()
msgs = [1] if which == "big" else range(2, count + 1)
t = time.perf_counter(); total = 0
for n in msgs:
    total += sum(len(line) + 2 for line in c.retr(n)[1])
elapsed = time.perf_counter() - t
c.quit()
print(elapsed, total, peak())
""",
    "pop3_asyncio": """
import asyncio, sys, time
import pop3_asyncio
host, port, user, password, which = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
async def main():
    async with pop3_asyncio.connect(host, port, tls=None) as c:
        await c.login(user, password, mechanism="USER")
        count, _ = await c.stat()
        t = time.perf_counter(); total = 0
        if which == "big":
            async for chunk in c.iter_retr(1):
                total += len(chunk)
        else:
            async for _, message in c.retr_many(range(2, count + 1)):
                total += len(message)
        return time.perf_counter() - t, total
elapsed, total = asyncio.run(main())
print(elapsed, total, peak())
""",
}


def make_maildir(root: Path, big_mb: int, small: int) -> int:
    """Write one big message and ``small`` 4 KB messages; return the big one's size."""
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True)
    rng = random.Random(42)
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(2, 9))) for _ in range(500)]

    def text(size: int) -> bytes:
        lines, total = [], 0
        while total < size:
            line = b" ".join(rng.choices(words, k=12))[:76]
            if rng.random() < 0.01:
                line = b"." + line
            lines.append(line)
            total += len(line) + 1
        return b"\n".join(lines) + b"\n"

    big = b"Subject: big\n\n" + text(big_mb << 20)
    (root / "new" / "1000000000.big.bench").write_bytes(big)
    for i in range(small):
        body = b"Subject: small %d\n\n" % i + text(4000)
        (root / "new" / f"{1000000001 + i}.s{i}.bench").write_bytes(body)
    return len(big)


def listing_answer(kind: str, n: int) -> bytes:
    """The whole answer to LIST or UIDL for ``n`` made-up messages."""
    lines = range(1, n + 1)
    if kind == "LIST":
        body = b"".join(b"%d %d\r\n" % (i, 4000 + i % 997) for i in lines)
        return b"+OK %d messages\r\n" % n + body + b".\r\n"
    body = b"".join(b"%d %024x\r\n" % (i, i * 2654435761) for i in lines)
    return b"+OK\r\n" + body + b".\r\n"


# A server that only replays prepared wire bytes: it costs the client nothing to
# wait for, so the client's own speed is what gets measured.
WIRE_SERVER = (
    inspect.getsource(listing_answer)
    + r"""
import socket, sys
from pathlib import Path
from pop3_sansio.codec import message_size
from pop3_sansio._multiline import BodyEncoder
root = Path(sys.argv[1])
wire = {}
sizes = []
for n, path in enumerate(sorted((root / "new").iterdir()), 1):
    data = path.read_bytes()
    enc = BodyEncoder()
    body = enc.encode(data) + enc.finish()
    sizes.append(message_size(data))
    wire[b"RETR %d" % n] = b"+OK %d octets\r\n" % sizes[-1] + body
    # The clients hold a body to its listed size, and ask for it unless listed.
    wire[b"LIST %d" % n] = b"+OK %d %d\r\n" % (n, sizes[-1])
wire[b"STAT"] = b"+OK %d %d\r\n" % (len(sizes), sum(sizes))
scan = b"".join(b"%d %d\r\n" % (n, size) for n, size in enumerate(sizes, 1))
wire[b"LIST"] = b"+OK\r\n" + scan + b".\r\n"
wire[b"CAPA"] = b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"
if len(sys.argv) > 2:
    # A maildrop listing of that many (made-up) messages for LIST and UIDL.
    for kind in ("LIST", "UIDL"):
        wire[kind.encode()] = listing_answer(kind, int(sys.argv[2]))
listener = socket.create_server(("127.0.0.1", 0))
print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(b"+OK ready\r\n")
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\r\n")
        conn.sendall(b"".join(wire.get(line, b"+OK\r\n") for line in lines))
        if b"QUIT" in lines:
            break
    conn.close()
"""
)


def start_server(maildir: Path, kind: str, listing: int = 0) -> tuple[subprocess.Popen[str], int]:
    """Start ``kind`` ("wire" or "pop3 serve") on a free port; return it and the port.

    ``listing``: the wire server also answers LIST and UIDL for that many messages.
    """
    if kind == "wire":
        command = [sys.executable, "-c", WIRE_SERVER, str(maildir)]
        command += [str(listing)] if listing else []
    else:
        command = [sys.executable, "-m", "pop3_cli", "serve", "--maildir", str(maildir)]
        command += ["--port", "0", "--user", f"{USER}:{PASSWORD}", "-q"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("listening on "):
            return proc, int(line.rsplit(":", 1)[1])
    raise RuntimeError("the server did not start")


def run_client(name: str, port: int, which: str) -> tuple[float, int, int]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK + CLIENT_CODE[name],
            "127.0.0.1",
            str(port),
            USER,
            PASSWORD,
            which,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big-mb", type=int, default=50)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        maildir = Path(tmp) / "Maildir"
        make_maildir(maildir, args.big_mb, args.small)
        for kind in ("wire", "pop3 serve"):
            server, port = start_server(maildir, kind)
            try:
                run_client("pop3_asyncio", port, "big")  # warm caches
                for which in ("big", "small"):
                    for name in CLIENT_CODE:
                        runs = [run_client(name, port, which) for _ in range(args.repeat)]
                        results.setdefault(kind, {}).setdefault(which, {})[name] = {
                            "seconds": min(r[0] for r in runs),
                            "octets": runs[0][1],
                            "peak_rss": max(r[2] for r in runs),
                        }
            finally:
                server.send_signal(signal.SIGINT)
                server.kill()
                server.wait(timeout=30)
    header = f"{'server':<12}{'workload':<14}{'client':<14}{'seconds':>9}{'MB/s':>8}"
    print(header + f"{'x poplib':>10}{'peak RSS':>12}")
    for kind, per_kind in results.items():
        for which, label in (("big", f"1 x {args.big_mb} MB"), ("small", f"{args.small} x 4 KB")):
            base = per_kind[which]["poplib"]["seconds"]
            for name, r in per_kind[which].items():
                print(
                    f"{kind:<12}{label:<14}{name:<14}{r['seconds']:9.3f}"
                    f"{r['octets'] / r['seconds'] / 1e6:8.1f}{base / r['seconds']:10.2f}"
                    f"{r['peak_rss'] / 2**20:9.1f} MB"
                )
    for kind, per_kind in results.items():
        big = per_kind["big"]
        ratio = big["poplib"]["seconds"] / big["pop3_asyncio"]["seconds"]
        peak = big["pop3_asyncio"]["peak_rss"] / 2**20
        print(
            f"[{kind}] 3x poplib on the big message: {'PASS' if ratio >= 3 else 'FAIL'}"
            f" ({ratio:.2f}x); peak RSS < 64 MB: {'PASS' if peak < 64 else 'FAIL'}"
            f" ({peak:.1f} MB, poplib {big['poplib']['peak_rss'] / 2**20:.1f} MB)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
