"""Server scale: whole POP3 sessions per second against the number of concurrent clients.

Servers: ``pop3 serve --backend asyncio|trio|sync`` (defaults, but no limit per address and
the 10-minute pre-login time: every client is 127.0.0.1; ``--users FILE``) and a
throwaway Dovecot (``bench_bindings.start_dovecot``) twice: in its default configuration
("dovecot": one pop3-login process per connection) and with ``service pop3-login {
service_count = 0 }`` ("dovecot sc0": its high-performance mode, long-lived login processes).

Sessions: for each concurrency N, N clients each loop for ``--seconds``, one session after
another: connect, greeting, USER/PASS, STAT, UIDL, RETR 1 (a 4 KB message, read to the
terminating ".", its length checked), QUIT, close. Client i logs in as user i (``--users``
users, each with their own Maildir of a few 4 KB messages), so no two sessions want the same
maildrop. The clients are asyncio streams in one process of their own (the load client), so
the server's CPU accounting is its own. A session fails on any -ERR, a wrong length, a
connection error or the per-session ``--timeout`` (10 s; those are also counted as "timed
out"); after a failure that client waits 10 ms before its next session. "sessions/s" counts
the sessions that succeeded within the ``--seconds`` window, one that ends after it by the
part of its duration inside (clients served in turn move in step: whole sessions would
count in steps of N); sessions still running at its end are awaited and counted in failures
and latencies. Latencies are of whole successful sessions (connect to close). "srv CPU" is
the server's process tree's CPU over the cell in percent of one core (2 cores: up to 200%);
"cli CPU" the load client's. All the servers run
at once (idle when it is not their turn) and take turns at each N, so that a change in the
machine's load falls on all of them rather than on one server's row. The kernel's
listen-queue overflow and SYN retransmission counters are read around each cell.

Memory per idle session (our servers only): on a freshly started server, the load client opens
``--idle`` connections and reads their greetings, then logs each one in (USER/PASS) and
leaves it idle; the server's VmRSS (``/proc/PID/status``) is read before, after the greetings
and after the logins, and the growth divided by the number of connections.

Message size: the pop3_asyncio client (its own process) RETRs a message of 4 KB, 64 KB, 1 MB,
10 MB and 50 MB from each server (Dovecot: the default configuration), streamed with
``iter_retr``, repeatedly for about ``--size-seconds`` each; MB/s of message bytes received.

Nothing here asserts on a timing. Needs root and Debian's ``mail`` user for Dovecot.

    .venv/bin/python benchmarks/bench_sessions.py [--quick] [--seconds 10]
        [--concurrency 1,50,200,1000] [--servers asyncio,trio,sync,dovecot,dovecot-sc0]
        [--parts sessions,idle,sizes] [--users 1000] [--idle 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_bindings  # Server, CPU accounting and the throwaway Dovecot, shared

HOST = bench_bindings.HOST
SERVERS = {
    "asyncio": "pop3 asyncio",
    "trio": "pop3 trio",
    "sync": "pop3 sync",
    "dovecot": "dovecot",
    "dovecot-sc0": "dovecot sc0",
}
OURS = ("pop3 asyncio", "pop3 trio", "pop3 sync")
DOVECOTS = ("dovecot", "dovecot sc0")
SC0_CONFIG = """service pop3-login {
  service_count = 0
}
"""
MESSAGES = 3  # per user, 4 KB each
SIZES = {"4 KB": 4 << 10, "64 KB": 64 << 10, "1 MB": 1 << 20, "10 MB": 10 << 20, "50 MB": 50 << 20}
SWEEP_USER, SWEEP_PASSWORD = "sweep", "sweep-password"
FAIL_PAUSE = 0.01


def user_name(i: int) -> str:
    return f"u{i:04d}"


def user_password(i: int) -> str:
    return f"pw-{i:04d}"


# --- the Maildirs ---------------------------------------------------------------------------


def message_text(rng: random.Random, subject: str, size: int) -> bytes:
    """A message of exactly ``size`` octets on disk (LF line ends, ~1% lines with a dot)."""
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(2, 9))) for _ in range(300)]
    pool = [b" ".join(rng.choices(words, k=12))[:76] + b"\n" for _ in range(500)]
    pool[::100] = [b"." + line for line in pool[::100]]
    head = b"From: bench@example.org\nSubject: " + subject.encode() + b"\n\n"
    lines, total = [head], len(head)
    while total < size:
        line = rng.choice(pool)
        lines.append(line)
        total += len(line)
    data = b"".join(lines)[:size]
    return data[:-1] + b"\n"


def wire_length(message: bytes) -> int:
    """Octets of the RETR body on the wire, through the terminating ".\\r\\n"."""
    lines = message.split(b"\n")[:-1]
    return sum(len(line) + 2 + line.startswith(b".") for line in lines) + 3


def make_maildir(path: Path, messages: list[bytes]) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True)
    for n, data in enumerate(messages):
        (path / "new" / f"{1700000000 + n}.M{n}P1.bench").write_bytes(data)


def make_users(root: Path, users: int, sizes: list[str]) -> tuple[dict[str, str], int]:
    """``root/NAME`` Maildirs and ``root/users``; the users and RETR 1's wire length.

    With ``sizes``, also the sweep user's Maildir: one message of each size, in that order.
    """
    rng = random.Random(6)
    messages = [message_text(rng, f"message {n}", 4096) for n in range(MESSAGES)]
    table = {user_name(i): user_password(i) for i in range(users)}
    for name in table:
        make_maildir(root / name, messages)
    if sizes:
        make_maildir(root / SWEEP_USER, [message_text(rng, k, SIZES[k]) for k in sizes])
        table[SWEEP_USER] = SWEEP_PASSWORD
    (root / "users").write_text("".join(f"{n}:{p}\n" for n, p in table.items()))
    (root / "users").chmod(0o600)
    return table, wire_length(messages[0])


# --- servers --------------------------------------------------------------------------------


def start_ours(kind: str, maildirs: Path, log: Path) -> bench_bindings.Server:
    backend = kind.split()[1]
    command = [sys.executable, "-m", "pop3_cli", "serve", "--backend", backend, "-q"]
    command += ["--maildir", str(maildirs), "--users", str(maildirs / "users"), "--port", "0"]
    # Every client comes from 127.0.0.1, up to 1000 at once, and the idle part
    # keeps its sessions before login while the others connect.
    command += ["--max-sessions-per-address", "0", "--login-timeout", "600"]
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("listening on "):
            return bench_bindings.Server(process, int(line.rsplit(":", 1)[1]))
    raise RuntimeError(f"pop3 serve --backend {backend} did not start: {log.read_text()}")


def start_server(kind: str, maildirs: Path, users: dict[str, str], log: Path) -> Any:
    if kind in OURS:
        return start_ours(kind, maildirs, log)
    if kind == "dovecot sc0":  # the size sweep runs on the default configuration only
        users = {name: password for name, password in users.items() if name != SWEEP_USER}
    extra = SC0_CONFIG if kind == "dovecot sc0" else ""
    return bench_bindings.start_dovecot(maildirs, users=users, extra_config=extra)


def server_log(kind: str, server: Any, log: Path, tmp: Path) -> list[str]:
    """The server's warnings and errors, each kind once with a count (temporary paths elided)."""
    path = server.root / "dovecot.log" if kind in DOVECOTS else log
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if kind in DOVECOTS:
            if not any(word in line for word in ("Warning:", "Error:", "Fatal:", "Panic:")):
                continue
            line = line.split(" ", 2)[-1]  # drop the timestamp
        line = line.replace(str(server.root or tmp), "<tmp>").replace(str(tmp), "<tmp>")
        counts[line[:160]] += 1
    return [f"{count} x {line}" for line, count in counts.most_common(8)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def tcp_counters() -> dict[str, int]:
    """The kernel's listen-queue overflows and SYN retransmissions (the whole network namespace:
    another process's connections count too)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    table = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    return {"listen_overflows": table["ListenOverflows"], "syn_retrans": table["TCPSynRetrans"]}


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --- the load client (runs in a process of its own: ``--client JSON``) ----------------------


class SessionError(Exception):
    pass


async def _line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readuntil(b"\r\n")
    if not line.startswith(b"+OK"):
        raise SessionError(line[:60].decode("ascii", "replace").strip() or "empty line")
    return line


async def _body(reader: asyncio.StreamReader) -> int:
    """Read a multi-line body through its terminator; its length on the wire."""
    total = 0
    while True:
        chunk = await reader.readuntil(b".\r\n")
        total += len(chunk)
        if chunk.endswith(b"\r\n.\r\n") or chunk == b".\r\n":
            return total


async def _session(host: str, port: int, user: bytes, password: bytes, expect: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await _line(reader)
        writer.write(b"USER " + user + b"\r\n")
        await _line(reader)
        writer.write(b"PASS " + password + b"\r\n")
        await _line(reader)
        writer.write(b"STAT\r\n")
        await _line(reader)
        writer.write(b"UIDL\r\n")
        await _line(reader)
        await _body(reader)
        writer.write(b"RETR 1\r\n")
        await _line(reader)
        got = await _body(reader)
        if got != expect:
            raise SessionError(f"RETR 1: {got} octets on the wire, expected {expect}")
        writer.write(b"QUIT\r\n")
        await _line(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SessionError):
        return str(exc)
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed by the server"
    return type(exc).__name__ + (f" [errno {exc.errno}]" if isinstance(exc, OSError) else "")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


async def _load(cfg: dict[str, Any]) -> dict[str, Any]:
    host, port, expect = cfg["host"], cfg["port"], cfg["expect"]
    users, timeout = cfg["users"], cfg["timeout"]
    once = cfg["mode"] == "once"  # one session per user (a warm-up), ``concurrency`` at a time
    latencies: list[float] = []
    reasons: Counter[str] = Counter()
    counts: dict[str, float] = {"in_window": 0.0, "ok": 0, "failed": 0, "timed_out": 0}
    start = time.perf_counter()
    deadline = start + cfg["seconds"]
    todo = iter(range(users))

    async def worker(i: int) -> None:
        while True:
            if once:
                i = next(todo, -1)
                if i < 0:
                    return
            elif time.perf_counter() >= deadline:
                return
            user, password = user_name(i % users).encode(), user_password(i % users).encode()
            t = time.perf_counter()
            try:
                await asyncio.wait_for(_session(host, port, user, password, expect), timeout)
            except TimeoutError:
                counts["failed"] += 1
                counts["timed_out"] += 1
                reasons[f"timed out (over {timeout:g} s)"] += 1
            except (
                SessionError,
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ) as e:
                counts["failed"] += 1
                reasons[_reason(e)] += 1
                await asyncio.sleep(FAIL_PAUSE)
            else:
                done = time.perf_counter()
                latencies.append(done - t)
                counts["ok"] += 1
                # A session that ends after the window counts by the part of it inside:
                # clients served in turn move in step, and whole sessions would count
                # in steps of N (at N = 1000 and 10 s, 100 sessions/s).
                counts["in_window"] += (min(done, deadline) - t) / (done - t)

    cpu = time.process_time()
    await asyncio.gather(*(worker(i) for i in range(cfg["concurrency"])))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return counts | {
        "elapsed": elapsed,
        "client_cpu": time.process_time() - cpu,
        "p50": _percentile(latencies, 0.50),
        "p99": _percentile(latencies, 0.99),
        "max": latencies[-1] if latencies else float("nan"),
        "reasons": dict(reasons.most_common(6)),
    }


async def _idle(cfg: dict[str, Any]) -> dict[str, Any]:
    """Open ``count`` connections, greet, log in; the server's VmRSS at each step."""
    host, port, pid, count = cfg["host"], cfg["port"], cfg["pid"], cfg["count"]
    gate = asyncio.Semaphore(50)  # not all at once: this is about memory, not the backlog
    reasons: Counter[str] = Counter()
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = []

    async def greet(i: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                await asyncio.wait_for(_line(reader), 10)
            except (TimeoutError, SessionError, OSError, asyncio.IncompleteReadError) as e:
                reasons["greeting: " + _reason(e)] += 1
                return None
            return reader, writer

    async def login(i: int, pair: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> bool:
        reader, writer = pair
        async with gate:
            try:
                writer.write(b"USER " + user_name(i).encode() + b"\r\n")
                await asyncio.wait_for(_line(reader), 10)
                writer.write(b"PASS " + user_password(i).encode() + b"\r\n")
                await asyncio.wait_for(_line(reader), 10)
            except (TimeoutError, SessionError, OSError, asyncio.IncompleteReadError) as e:
                reasons["login: " + _reason(e)] += 1
                return False
            return True

    await asyncio.sleep(0.3)
    before = rss_kib(pid)
    streams = list(await asyncio.gather(*(greet(i) for i in range(count))))
    greeted = sum(s is not None for s in streams)
    await asyncio.sleep(0.5)
    after_greeting = rss_kib(pid)
    logins = await asyncio.gather(*(login(i, s) for i, s in enumerate(streams) if s is not None))
    await asyncio.sleep(0.5)
    after_login = rss_kib(pid)
    for pair in streams:
        if pair is not None:
            pair[1].close()
    await asyncio.sleep(0.2)
    return {
        "connections": count,
        "greeted": greeted,
        "logged_in": sum(logins),
        "rss_before_kib": before,
        "rss_greeted_kib": after_greeting,
        "rss_logged_in_kib": after_login,
        "reasons": dict(reasons.most_common(6)),
    }


def client_main(cfg: dict[str, Any]) -> None:
    raise_fd_limit()
    run = _idle if cfg["mode"] == "idle" else _load
    print(json.dumps(asyncio.run(run(cfg))))


def run_client(cfg: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# The message-size sweep's client: pop3_asyncio, each message RETRed for about `seconds`.
SWEEP_CODE = """
import asyncio, json, sys, time
import pop3_asyncio
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
seconds, numbers = float(sys.argv[5]), [int(n) for n in sys.argv[6].split(",")]
async def main():
    results = []
    async with pop3_asyncio.connect(host, port, tls=None) as c:
        await c.login(user, password, mechanism="USER")
        for n in numbers:
            async for chunk in c.iter_retr(n):  # warm the page cache and the server
                pass
            reps, octets, t = 0, 0, time.perf_counter()
            while reps < 2 or (time.perf_counter() - t < seconds and reps < 5000):
                async for chunk in c.iter_retr(n):
                    octets += len(chunk)
                reps += 1
            results.append([reps, octets, time.perf_counter() - t])
    return results
print(json.dumps(asyncio.run(main())))
"""


def run_sweep(server: Any, sizes: list[str], seconds: float) -> dict[str, dict[str, float]]:
    numbers = ",".join(str(n) for n in range(1, len(sizes) + 1))
    command = [sys.executable, "-c", SWEEP_CODE, HOST, str(server.port)]
    out = subprocess.run(
        [*command, SWEEP_USER, SWEEP_PASSWORD, str(seconds), numbers],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the size sweep client failed:\n{out.stderr}")
    rows = json.loads(out.stdout)
    for label, (reps, octets, _) in zip(sizes, rows, strict=True):
        if not SIZES[label] <= octets / reps <= 1.05 * SIZES[label]:  # CRLF adds about 1.3%
            raise RuntimeError(f"the {label} message came as {octets / reps:.0f} octets")
    return {
        label: {
            "reps": reps,
            "octets": octets,
            "seconds": elapsed,
            "mb_per_s": octets / elapsed / 1e6,
        }
        for label, (reps, octets, elapsed) in zip(sizes, rows, strict=True)
    }


# --- orchestration --------------------------------------------------------------------------


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    maildirs = tmp / "maildirs"
    sweep = "sizes" in args.parts
    users, expect = make_users(maildirs, args.users, args.sizes if sweep else [])
    base = {"host": HOST, "expect": expect, "users": args.users, "timeout": args.timeout}
    results: dict[str, Any] = {"sessions": {}, "idle": {}, "sizes": {}, "server_log": {}}
    servers: dict[str, Any] = {}
    logs = {kind: tmp / f"{kind.replace(' ', '-')}.log" for kind in args.servers}
    try:
        for kind in args.servers:
            servers[kind] = server = start_server(kind, maildirs, users, logs[kind])
            if "idle" in args.parts and kind in OURS:  # on the fresh server
                cfg = base | {"mode": "idle", "port": server.port, "count": args.idle}
                idle = run_client(cfg | {"pid": server.process.pid})
                results["idle"][kind] = idle
                progress(kind, "idle", idle_line(idle))
            if sweep and kind != "dovecot sc0":
                results["sizes"][kind] = run_sweep(server, args.sizes, args.size_seconds)
                progress(kind, "sizes", sizes_line(results["sizes"][kind]))
            if "sessions" in args.parts:
                warm = base | {"mode": "once", "port": server.port, "seconds": 0}
                warm_result = run_client(warm | {"concurrency": min(50, args.users)})
                progress(kind, "warm-up", f"{warm_result['ok']} ok, {warm_result['failed']} failed")
        # All servers stay up (idle) and take turns at each N, so that a change in the
        # machine's load hits all of them alike rather than one server's whole row.
        for n in args.concurrency if "sessions" in args.parts else []:
            for kind, server in servers.items():
                time.sleep(0.5)  # let the previous cell's connections wind down
                cfg = base | {"mode": "load", "port": server.port, "concurrency": n}
                cpu, tcp = server.cpu(), tcp_counters()
                cell = run_client(cfg | {"seconds": args.seconds})
                cell["server_cpu"] = bench_bindings.settled_cpu(server) - cpu
                cell |= {k: v - tcp[k] for k, v in tcp_counters().items()}
                cell["sessions_per_s"] = cell["in_window"] / args.seconds
                cell["load_average"] = os.getloadavg()[0]
                results["sessions"].setdefault(kind, {})[str(n)] = cell
                progress(kind, f"N={n}", cell_line(cell))
    finally:
        for kind, server in servers.items():
            results["server_log"][kind] = server_log(kind, server, logs[kind], tmp)
            server.stop()
    return results


def progress(kind: str, what: str, text: str) -> None:
    print(f"  {kind:<13}{what:<9}{text}", file=sys.stderr, flush=True)


def cell_line(c: dict[str, Any]) -> str:
    line = f"{c['sessions_per_s']:8.1f}/s  {c['failed']} failed ({c['timed_out']} timed out)"
    line += f", {c['listen_overflows']} listen overflows, {c['syn_retrans']} SYN retransmits"
    return line + (f"  {c['reasons']}" if c["reasons"] else "")


def idle_line(r: dict[str, Any]) -> str:
    greeted, logged = per_session(r)
    return f"{greeted:.1f} KiB greeted, {logged:.1f} KiB logged in  {r['reasons'] or ''}"


def sizes_line(r: dict[str, dict[str, float]]) -> str:
    return "  ".join(f"{label}: {v['mb_per_s']:.1f} MB/s" for label, v in r.items())


def per_session(r: dict[str, Any]) -> tuple[float, float]:
    before = r["rss_before_kib"]
    greeted = (r["rss_greeted_kib"] - before) / max(1, r["greeted"])
    logged = (r["rss_logged_in_kib"] - before) / max(1, r["logged_in"])
    return greeted, logged


def print_tables(results: dict[str, Any], args: argparse.Namespace) -> None:
    sessions = results["sessions"]
    if sessions:
        print(
            f"Sessions per second ({args.seconds:g} s per cell, per-session timeout "
            f"{args.timeout:g} s)"
        )
        print(
            f"{'server':<14}{'N':>5}{'sessions/s':>12}{'failed':>8}{'timed out':>11}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'srv CPU':>9}{'cli CPU':>9}"
            f"{'x dovecot':>11}{'x dc sc0':>10}"
        )
        for kind, cells in sessions.items():
            for n, c in cells.items():
                ratios = ""
                for other in DOVECOTS:
                    theirs = sessions.get(other, {}).get(n)
                    if kind in OURS and theirs and theirs["sessions_per_s"]:
                        ratios += f"{c['sessions_per_s'] / theirs['sessions_per_s']:.2f}x"
                    else:
                        ratios += "-"
                    ratios = f"{ratios:>11}" if other == "dovecot" else ratios
                print(
                    f"{kind:<14}{n:>5}{c['sessions_per_s']:12.1f}{c['failed']:8d}"
                    f"{c['timed_out']:11d}{c['p50'] * 1e3:9.1f}{c['p99'] * 1e3:9.1f}"
                    f"{100 * c['server_cpu'] / args.seconds:8.0f}%"
                    f"{100 * c['client_cpu'] / c['elapsed']:8.0f}%{ratios[:11]:>11}"
                    f"{ratios[11:]:>10}"
                )
        reasons = {
            f"{kind} N={n}": c["reasons"]
            for kind, cells in sessions.items()
            for n, c in cells.items()
            if c["reasons"]
        }
        if reasons:
            print("\nFailures:")
            for where, why in reasons.items():
                print(f"  {where}: {why}")
        drops = [
            f"  {kind} N={n}: {c['listen_overflows']} listen-queue overflows, "
            f"{c['syn_retrans']} SYN retransmits"
            for kind, cells in sessions.items()
            for n, c in cells.items()
            if c["listen_overflows"] or c["syn_retrans"]
        ]
        if drops:
            print("\nKernel TCP counters during the cell (the whole network namespace):")
            print("\n".join(drops))
    if results["idle"]:
        print("\nMemory per idle session (server VmRSS growth / connections)")
        print(
            f"{'server':<14}{'connections':>12}{'greeted':>12}{'logged in':>12}{'RSS before':>13}"
        )
        for kind, r in results["idle"].items():
            greeted, logged = per_session(r)
            print(
                f"{kind:<14}{r['connections']:>12}{greeted:8.1f} KiB{logged:8.1f} KiB"
                f"{r['rss_before_kib'] / 1024:9.1f} MiB"
                + (f"   failures: {r['reasons']}" if r["reasons"] else "")
            )
    if results["sizes"]:
        print("\nThroughput by message size (pop3_asyncio client, iter_retr, MB/s)")
        labels = list(next(iter(results["sizes"].values())))
        print(f"{'server':<14}" + "".join(f"{label:>10}" for label in labels))
        for kind, row in results["sizes"].items():
            print(f"{kind:<14}" + "".join(f"{row[label]['mb_per_s']:10.1f}" for label in labels))
    logs = {kind: lines for kind, lines in results["server_log"].items() if lines}
    if logs:
        print("\nServer warnings and errors:")
        for kind, lines in logs.items():
            for line in lines:
                print(f"  {kind}: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N = 1, 20; 2 s; a smoke run")
    parser.add_argument("--seconds", type=float, help="per cell (default 10)")
    parser.add_argument("--concurrency", help="comma-separated (default 1,50,200,1000)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--parts", default="sessions,idle,sizes", help="comma-separated")
    parser.add_argument("--users", type=int, help="users (default: the largest N)")
    parser.add_argument("--idle", type=int, help="idle connections (default 1000)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per session (s)")
    parser.add_argument("--size-seconds", type=float, help="per message size (default 1)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(json.loads(args.client))
        return
    quick = args.quick
    args.seconds = args.seconds or (2.0 if quick else 10.0)
    args.concurrency = [
        int(n) for n in (args.concurrency or ("1,20" if quick else "1,50,200,1000")).split(",")
    ]
    args.idle = args.idle or (50 if quick else 1000)
    args.users = args.users or max([*args.concurrency, args.idle])
    args.size_seconds = args.size_seconds or (0.2 if quick else 1.0)
    args.sizes = ["4 KB", "1 MB"] if quick else list(SIZES)
    args.parts = args.parts.split(",")
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown or set(args.parts) - {"sessions", "idle", "sizes"}:
        parser.error(f"unknown --servers or --parts: {unknown or args.parts}")
    args.servers = [SERVERS[s] for s in args.servers.split(",")]
    raise_fd_limit()  # the servers inherit it
    os.environ.setdefault("PYTHONHASHSEED", "0")
    started = time.monotonic()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="pop3-bench-sessions-") as tmp:
        results = measure(args, Path(tmp))
    load.append(os.getloadavg()[0])
    print_tables(results, args)
    load += [c["load_average"] for row in results["sessions"].values() for c in row.values()]
    print(
        f"\n({time.monotonic() - started:.0f} s, nproc {os.cpu_count()}, load average "
        f"{min(load):.2f}-{max(load):.2f})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "servers": args.servers,
            "users": args.users,
            "idle": args.idle,
            "timeout": args.timeout,
            "sizes": args.sizes,
            "nproc": os.cpu_count(),
            "load_average": [min(load), max(load)],
        }
        args.json.write_text(json.dumps({"meta": meta, **results}, indent=2))


if __name__ == "__main__":
    main()
