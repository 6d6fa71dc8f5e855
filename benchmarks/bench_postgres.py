"""PostgreSQL storage: sessions/s against Maildir, delivery rates, and a big message.

A private PostgreSQL cluster (tests/postgres.py: initdb in a temporary directory, fsync on,
``nobody`` when run as root) is the database throughout.

Part ``sessions``: whole POP3 sessions per second at each concurrency N (default 1, 50,
200): connect, USER/PASS, STAT, UIDL, RETR 1 (4 KB, read to the terminating "." and its
length checked), DELE 1, QUIT (which commits the deletion); with ``--keep``, no DELE (the
mix of bench_sessions.py, where QUIT commits nothing). Servers, all started at once
and taking turns at each N: ``pop3 serve`` (asyncio) on Maildirs ("maildir"), the same on
PostgreSQL ("postgresql"), two such ``pop3 serve --storage --proxy-protocol`` processes
behind HAProxy with ``send-proxy-v2`` ("pg x2 haproxy"), one ``pop3 serve --storage
--workers 2`` (two processes on one port, "pg --workers 2"), and optionally a throwaway Dovecot
on the same Maildirs ("dovecot": its default configuration; needs root and Debian's mail
user). Each server has its own copy of ``--users`` users with ``--messages`` 4 KB messages
each; a session takes the next user in turn, so a user is rarely wanted by two sessions at
once and never runs out. The load client (asyncio streams) runs in a process of its own.

Part ``lmtp``: ``pop3 lmtp`` (``--pool-max 10``) receives 4 KB messages from C concurrent
LMTP connections (a raw asyncio client in its own process: MAIL, RCPT to a random user,
DATA, the message, "."; one message per transaction) for ``--seconds``; messages/s counted
by their 250 replies and checked against the rows in the database.

Part ``deliver``: ``pop3 deliver`` run as an MTA runs it, one process per 4 KB message,
``--runs`` times in a row; against the baseline ``python -c pass`` (the same interpreter)
plus one database round trip (connect, ``SELECT 1``, close, timed in this process, psycopg
already imported). Also ``python -c "import psycopg"``, which explains most of the gap.

Part ``big``: a 50 MB message (``--big-mb``) RETRieved by the ``pop3_asyncio`` client
(``iter_retr``) from a fresh ``pop3 serve`` on a Maildir and on PostgreSQL: seconds, MB/s
and the server's peak RSS (VmHWM) before and after.

Nothing here asserts on a timing. The machine's load matters: see the load averages printed.

    .venv/bin/python benchmarks/bench_postgres.py [--quick] [--seconds 10]
        [--concurrency 1,50,200] [--parts sessions,lmtp,deliver,big] [--dovecot]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The private PostgreSQL cluster and HAProxy of the tests (tests/postgres.py, tests/haproxy.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import bench_bindings  # Server, CPU accounting, the throwaway Dovecot
import bench_sessions  # the 4 KB messages, Maildirs, the session client's pieces

HOST = "127.0.0.1"
PASSWORD = "bench-pw"


def user_name(i: int) -> str:
    return f"u{i:04d}"


# --- servers ---------------------------------------------------------------------------------


def start_serve(args: list[str], log: Path, *, lines: int = 1) -> bench_bindings.Server:
    """``pop3 serve ARGS --port 0``; the Server once it listens."""
    command = [sys.executable, "-m", "pop3_cli", "serve", "-q", "--port", "0", *args]
    command += ["--max-sessions-per-address", "0", "--login-timeout", "600"]
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("listening on "):
            return bench_bindings.Server(process, int(line.rsplit(":", 1)[1]))
    raise RuntimeError(f"pop3 serve did not start: {log.read_text()}")


class Pair:
    """Two ``pop3 serve --storage`` behind HAProxy, stopped together."""

    def __init__(self, servers: list[bench_bindings.Server], front: int, stack: Any) -> None:
        self.servers, self.port, self.stack = servers, front, stack
        self.process = servers[0].process  # for the idle-free parts that read a pid

    def cpu(self) -> float:
        return sum(server.cpu() for server in self.servers)

    def stop(self) -> None:
        self.stack.close()
        for server in self.servers:
            server.stop()


def fill_postgres(url: str, users: int, messages: int, data: bytes) -> None:
    from pop3_maildrop import PostgresStorage

    with PostgresStorage(url, pool_min=0, pool_max=1) as storage:
        for i in range(users):
            storage.deliver_many([(user_name(i), data)] * messages)


def users_file(path: Path, users: int) -> Path:
    path.write_text("".join(f"{user_name(i)}:{PASSWORD}\n" for i in range(users)))
    path.chmod(0o600)
    return path


# --- the session client (``--client JSON``, a process of its own) ---------------------------


async def _session(port: int, user: bytes, expect: int, dele: bool) -> None:
    line, body = bench_sessions._line, bench_sessions._body
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        await line(reader)
        for command in (b"USER " + user, b"PASS " + PASSWORD.encode(), b"STAT"):
            writer.write(command + b"\r\n")
            await line(reader)
        writer.write(b"UIDL\r\n")
        await line(reader)
        await body(reader)
        writer.write(b"RETR 1\r\n")
        await line(reader)
        got = await body(reader)
        if got != expect:
            raise bench_sessions.SessionError(f"RETR 1: {got} octets, expected {expect}")
        if dele:
            writer.write(b"DELE 1\r\n")
            await line(reader)
        writer.write(b"QUIT\r\n")
        await line(reader)  # the +OK to QUIT: the deletion is committed
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _sessions(cfg: dict[str, Any]) -> dict[str, Any]:
    port, expect, users, timeout = cfg["port"], cfg["expect"], cfg["users"], cfg["timeout"]
    next_user = cfg["first_user"]
    latencies: list[float] = []
    reasons: Counter[str] = Counter()
    counts: dict[str, float] = {"in_window": 0.0, "ok": 0, "failed": 0}
    start = time.perf_counter()
    deadline = start + cfg["seconds"]

    async def worker() -> None:
        nonlocal next_user
        while time.perf_counter() < deadline:
            user = user_name(next_user % users).encode()
            next_user += 1
            t = time.perf_counter()
            try:
                await asyncio.wait_for(_session(port, user, expect, cfg["dele"]), timeout)
            except (TimeoutError, OSError, bench_sessions.SessionError) as e:
                counts["failed"] += 1
                reasons[bench_sessions._reason(e)] += 1
                await asyncio.sleep(bench_sessions.FAIL_PAUSE)
            except asyncio.IncompleteReadError as e:
                counts["failed"] += 1
                reasons[bench_sessions._reason(e)] += 1
            else:
                done = time.perf_counter()
                latencies.append(done - t)
                counts["ok"] += 1
                counts["in_window"] += (min(done, deadline) - t) / (done - t)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(cfg["concurrency"])))
    latencies.sort()
    return counts | {
        "next_user": next_user,
        "client_cpu": time.process_time() - cpu,
        "elapsed": time.perf_counter() - start,
        "p50": bench_sessions._percentile(latencies, 0.5),
        "p99": bench_sessions._percentile(latencies, 0.99),
        "reasons": dict(reasons.most_common(4)),
    }


async def _lmtp(cfg: dict[str, Any]) -> dict[str, Any]:
    """C connections, one message per transaction, for ``seconds``; 250s counted."""
    message = cfg["message"].encode("latin-1")
    users, rng = cfg["users"], random.Random(25)
    counts: Counter[str] = Counter()
    deadline = time.perf_counter() + cfg["seconds"]

    async def reply(reader: asyncio.StreamReader) -> bytes:
        while True:
            line = await reader.readuntil(b"\r\n")
            if line[3:4] != b"-":
                return line

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, cfg["port"])
        await reply(reader)
        writer.write(b"LHLO bench.example.org\r\n")
        await reply(reader)
        while time.perf_counter() < deadline:
            rcpt = user_name(rng.randrange(users)).encode()
            writer.write(b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n")
            codes = [await reply(reader) for _ in range(3)]
            if [c[:3] for c in codes] != [b"250", b"250", b"354"]:
                counts["refused"] += 1
                writer.write(b"RSET\r\n")
                await reply(reader)
                continue
            writer.write(message + b".\r\n")
            final = await reply(reader)
            counts["delivered" if final.startswith(b"250") else final[:3].decode()] += 1
        writer.write(b"QUIT\r\n")
        await reply(reader)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(cfg["connections"])))
    return dict(counts) | {"elapsed": time.perf_counter() - start}


SWEEP_CODE = """
import asyncio, json, sys, time
import pop3_asyncio
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
async def main():
    async with pop3_asyncio.connect("127.0.0.1", port, tls=None) as c:
        await c.login(user, password, mechanism="USER")
        t, octets = time.perf_counter(), 0
        async for chunk in c.iter_retr(1):
            octets += len(chunk)
        return [time.perf_counter() - t, octets]
print(json.dumps(asyncio.run(main())))
"""


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


def client_main(cfg: dict[str, Any]) -> None:
    bench_sessions.raise_fd_limit()
    run = _lmtp if cfg["mode"] == "lmtp" else _sessions
    print(json.dumps(asyncio.run(run(cfg))))


# --- parts -----------------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def part_sessions(args: argparse.Namespace, tmp: Path, cluster: Any) -> dict[str, Any]:
    from haproxy import haproxy
    from postgres import create_database

    rng = random.Random(6)
    data = bench_sessions.message_text(rng, "bench", 4096)
    expect = bench_sessions.wire_length(data)
    users = users_file(tmp / "users", args.users)
    kinds = ["maildir", "postgresql", "pg x2 haproxy", "pg --workers 2"]
    kinds += ["dovecot"] if args.dovecot else []
    servers: dict[str, Any] = {}
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            progress(f"{kind}: filling {args.users} x {args.messages} messages")
            if kind in ("maildir", "dovecot"):
                root = tmp / kind.replace(" ", "-")
                for i in range(args.users):
                    bench_sessions.make_maildir(root / user_name(i), [data] * args.messages)
                if kind == "dovecot":
                    table = {user_name(i): PASSWORD for i in range(args.users)}
                    servers[kind] = bench_bindings.start_dovecot(root, users=table)
                else:
                    command = ["--maildir", str(root), "--users", str(users)]
                    servers[kind] = start_serve(command, tmp / "maildir.log")
            else:
                url = create_database(cluster, kind.replace(" ", "_"))
                fill_postgres(url, args.users, args.messages, data)
                options = ["--storage", url, "--users", str(users), "--pool-max", "10"]
                if kind == "postgresql":
                    servers[kind] = start_serve(options, tmp / "pg.log")
                elif kind == "pg --workers 2":
                    servers[kind] = start_serve([*options, "--workers", "2"], tmp / "pgw.log")
                else:
                    pair = [
                        start_serve([*options, "--proxy-protocol"], tmp / f"pg{n}.log")
                        for n in range(2)
                    ]
                    inner = contextlib.ExitStack()
                    front = inner.enter_context(
                        haproxy(tmp, [s.port for s in pair], "send-proxy-v2", maxconn=2000)
                    )
                    servers[kind] = Pair(pair, front, inner)
        stack.callback(lambda: [server.stop() for server in servers.values()])
        first_user = dict.fromkeys(kinds, 0)
        for n in args.concurrency:
            for kind in kinds:
                time.sleep(0.5)
                server = servers[kind]
                cfg = {
                    "mode": "sessions",
                    "port": server.port,
                    "expect": expect,
                    "users": args.users,
                    "first_user": first_user[kind],
                    "timeout": 10.0,
                    "concurrency": n,
                    "seconds": args.seconds,
                    "dele": not args.keep,
                }
                cpu = server.cpu()
                cell = run_client(cfg)
                first_user[kind] = cell["next_user"]
                cell["server_cpu"] = server.cpu() - cpu
                cell["sessions_per_s"] = cell["in_window"] / args.seconds
                cell["load_average"] = os.getloadavg()[0]
                results.setdefault(kind, {})[str(n)] = cell
                progress(
                    f"{kind:<14} N={n:<4} {cell['sessions_per_s']:7.1f}/s "
                    f"{cell['failed']} failed {cell['reasons'] or ''}"
                )
    return results


@contextlib.contextmanager
def lmtp_server(url: str, users: Path, tmp: Path) -> Iterator[int]:
    command = [sys.executable, "-m", "pop3_cli", "lmtp", "-q", "--storage", url]
    command += ["--users", str(users), "--listen", f"{HOST}:0", "--pool-max", "10"]
    with (tmp / "lmtp.log").open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"pop3 lmtp did not start: {(tmp / 'lmtp.log').read_text()}")
        yield int(line.rsplit(":", 1)[1])
    finally:
        process.terminate()
        process.wait(15)


def count_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pop3_messages").fetchone()
    assert row is not None
    return int(row[0])


def part_lmtp(args: argparse.Namespace, tmp: Path, cluster: Any) -> dict[str, Any]:
    from pop3_maildrop import PostgresStorage
    from postgres import create_database

    url = create_database(cluster, "lmtp")
    with PostgresStorage(url, pool_min=0, pool_max=1) as storage:
        storage.create_schema()
    users = users_file(tmp / "lmtp-users", args.users)
    rng = random.Random(7)
    text = bench_sessions.message_text(rng, "lmtp", 4096).replace(b"\n", b"\r\n")
    stuffed = b"".join(
        (b"." + line if line.startswith(b".") else line) for line in text.splitlines(keepends=True)
    )
    results: dict[str, Any] = {}
    with lmtp_server(url, users, tmp) as port:
        for connections in args.lmtp_connections:
            before = count_rows(url)
            cfg = {
                "mode": "lmtp",
                "port": port,
                "users": args.users,
                "connections": connections,
                "seconds": args.seconds,
                "message": stuffed.decode("latin-1"),
            }
            cell = run_client(cfg)
            cell["rows"] = count_rows(url) - before
            cell["per_s"] = cell.get("delivered", 0) / cell["elapsed"]
            cell["load_average"] = os.getloadavg()[0]
            results[str(connections)] = cell
            progress(
                f"lmtp C={connections}: {cell['per_s']:.0f} messages/s "
                f"({cell.get('delivered', 0)} replies 250, {cell['rows']} rows)"
            )
    return results


def _time_runs(command: list[str], runs: int, stdin: bytes = b"") -> list[float]:
    # Bytecode written and used, as for an installed package (pip compiles it), even
    # where the environment says not to write it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(command, input=stdin, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t)
    return times


def part_deliver(args: argparse.Namespace, tmp: Path, cluster: Any) -> dict[str, Any]:
    import psycopg

    from postgres import create_database

    url = create_database(cluster, "mda")
    data = bench_sessions.message_text(random.Random(8), "mda", 4096)
    deliver = [sys.executable, "-m", "pop3_cli", "deliver", "--storage", url, "--user", "u0000"]
    _time_runs(deliver, 2, data)  # the schema is made, the bytecode cached
    rounds: dict[str, list[float]] = {"deliver": [], "pass": [], "psycopg": [], "roundtrip": []}
    for _ in range(args.runs):  # turns, so that a change in load falls on all alike
        rounds["pass"] += _time_runs([sys.executable, "-c", "pass"], 1)
        rounds["deliver"] += _time_runs(deliver, 1, data)
        rounds["psycopg"] += _time_runs([sys.executable, "-c", "import psycopg"], 1)
        t = time.perf_counter()
        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1").fetchone()
        rounds["roundtrip"].append(time.perf_counter() - t)
    medians = {k: statistics.median(v) for k, v in rounds.items()}
    medians["baseline"] = medians["pass"] + medians["roundtrip"]
    medians["ratio"] = medians["deliver"] / medians["baseline"]
    medians["stored"] = count_rows(url)
    progress(
        "deliver: "
        + ", ".join(
            f"{k} {v * 1e3:.1f} ms" for k, v in medians.items() if k not in ("ratio", "stored")
        )
        + f", ratio {medians['ratio']:.2f}x"
    )
    return medians


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def part_big(args: argparse.Namespace, tmp: Path, cluster: Any) -> dict[str, Any]:
    from pop3_maildrop import PostgresStorage
    from postgres import create_database

    size = args.big_mb << 20
    path = tmp / "big.eml"
    with path.open("wb") as f:
        f.write(b"Subject: big\n\n")
        line = b"y" * 75 + b"\n"
        for _ in range(size // len(line)):
            f.write(line)
    users = tmp / "big-users"
    users.write_text(f"big:{PASSWORD}\n")
    users.chmod(0o600)
    maildir = tmp / "big-maildir" / "big"
    bench_sessions.make_maildir(maildir, [])
    shutil.copy(path, maildir / "new" / "1700000000.M1P1.big")
    url = create_database(cluster, "big")
    with PostgresStorage(url, pool_min=0, pool_max=1) as storage, path.open("rb") as f:
        t = time.perf_counter()
        storage.deliver("big", f)
        deliver_seconds = time.perf_counter() - t
    results: dict[str, Any] = {"deliver_seconds": deliver_seconds}
    for kind, options in (
        ("maildir", ["--maildir", str(maildir.parent)]),
        ("postgresql", ["--storage", url]),
    ):
        server = start_serve([*options, "--users", str(users)], tmp / f"big-{kind}.log")
        try:
            time.sleep(0.3)
            before = vm_hwm_kib(server.process.pid)
            out = subprocess.run(
                [sys.executable, "-c", SWEEP_CODE, str(server.port), "big", PASSWORD],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds, octets = json.loads(out.stdout)
            after = vm_hwm_kib(server.process.pid)
        finally:
            server.stop()
        results[kind] = {
            "seconds": seconds,
            "octets": octets,
            "mb_per_s": octets / seconds / 1e6,
            "peak_rss_before_kib": before,
            "peak_rss_after_kib": after,
        }
        progress(
            f"big {kind}: {seconds:.2f} s, {octets / seconds / 1e6:.0f} MB/s, "
            f"peak RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB"
        )
    return results


# --- tables ----------------------------------------------------------------------------------


def print_tables(results: dict[str, Any], args: argparse.Namespace) -> None:
    if "sessions" in results:
        rows = results["sessions"]
        mix = "RETR 4 KB..QUIT, no DELE" if args.keep else "RETR 4 KB..DELE..QUIT"
        print(f"Sessions per second, login..{mix} ({args.seconds:g} s per cell)")
        print(
            f"{'server':<15}{'N':>5}{'sessions/s':>12}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'srv CPU':>9}{'x maildir':>11}{'x dovecot':>11}"
        )
        for kind, cells in rows.items():
            for n, c in cells.items():
                ratios = []
                for other in ("maildir", "dovecot"):
                    theirs = rows.get(other, {}).get(n)
                    ok = theirs and theirs["sessions_per_s"] and other != kind
                    ratios.append(
                        f"{c['sessions_per_s'] / theirs['sessions_per_s']:.2f}x" if ok else "-"
                    )
                print(
                    f"{kind:<15}{n:>5}{c['sessions_per_s']:12.1f}{c['failed']:8.0f}"
                    f"{c['p50'] * 1e3:9.1f}{c['p99'] * 1e3:9.1f}"
                    f"{100 * c['server_cpu'] / args.seconds:8.0f}%{ratios[0]:>11}{ratios[1]:>11}"
                )
        failures = {
            f"{k} N={n}": c["reasons"]
            for k, v in rows.items()
            for n, c in v.items()
            if c["reasons"]
        }
        if failures:
            print(f"Failures: {failures}")
    if "lmtp" in results:
        print("\nLMTP delivery of 4 KB messages (pop3 lmtp --pool-max 10)")
        print(f"{'connections':>12}{'messages/s':>12}{'250 replies':>13}{'rows':>7}{'other':>8}")
        for n, c in results["lmtp"].items():
            other = {
                k: v
                for k, v in c.items()
                if k not in ("delivered", "elapsed", "rows", "per_s", "load_average")
            }
            delivered = c.get("delivered", 0)
            print(f"{n:>12}{c['per_s']:12.0f}{delivered:13d}{c['rows']:7d}  {other or '-'}")
    if "deliver" in results:
        d = results["deliver"]
        print(f"\npop3 deliver, one process per 4 KB message (median of {args.runs})")
        for key in ("deliver", "pass", "roundtrip", "baseline", "psycopg"):
            label = {
                "deliver": "pop3 deliver",
                "pass": "python -c pass",
                "roundtrip": "DB round trip (connect, SELECT 1)",
                "baseline": "baseline: pass + round trip",
                "psycopg": "python -c 'import psycopg'",
            }[key]
            print(f"  {label:<36}{d[key] * 1e3:8.1f} ms")
        print(f"  {'pop3 deliver / baseline':<36}{d['ratio']:8.2f}x  (goal <= 2x)")
    if "big" in results:
        b = results["big"]
        print(
            f"\nA {args.big_mb} MB message (stored with PostgresStorage.deliver in "
            f"{b['deliver_seconds']:.2f} s)"
        )
        print(f"{'server':<12}{'RETR s':>8}{'MB/s':>7}{'peak RSS before':>17}{'after':>8}")
        for kind in ("maildir", "postgresql"):
            r = b[kind]
            print(
                f"{kind:<12}{r['seconds']:8.2f}{r['mb_per_s']:7.0f}"
                f"{r['peak_rss_before_kib'] / 1024:13.0f} MiB"
                f"{r['peak_rss_after_kib'] / 1024:5.0f} MiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short cells, fewer runs")
    parser.add_argument("--seconds", type=float, help="per cell (default 10; quick 3)")
    parser.add_argument("--concurrency", default="1,50,200", help="comma-separated")
    parser.add_argument("--parts", default="sessions,lmtp,deliver,big", help="comma-separated")
    parser.add_argument("--dovecot", action="store_true", help="add Dovecot to the sessions part")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="sessions without DELE (bench_sessions.py's mix): QUIT commits nothing",
    )
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--messages", type=int, help="per user (default 30; quick 12)")
    parser.add_argument("--lmtp-connections", default="1,4,8", help="comma-separated")
    parser.add_argument("--runs", type=int, help="pop3 deliver runs (default 30; quick 10)")
    parser.add_argument("--big-mb", type=int, default=50)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(json.loads(args.client))
        return
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.messages = args.messages or (12 if args.quick else 30)
    args.runs = args.runs or (10 if args.quick else 30)
    args.concurrency = [int(n) for n in args.concurrency.split(",")]
    args.lmtp_connections = [int(n) for n in args.lmtp_connections.split(",")]
    parts = args.parts.split(",")
    bench_sessions.raise_fd_limit()
    from postgres import PostgresCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (Debian package postgresql)")
    started, load = time.monotonic(), [os.getloadavg()[0]]
    results: dict[str, Any] = {}
    cluster = PostgresCluster(bindir, max_connections=200)
    try:
        with tempfile.TemporaryDirectory(prefix="pop3-bench-pg-") as tmp_name:
            tmp = Path(tmp_name)
            for part, run in (
                ("sessions", part_sessions),
                ("lmtp", part_lmtp),
                ("deliver", part_deliver),
                ("big", part_big),
            ):
                if part in parts:
                    results[part] = run(args, tmp, cluster)
                    load.append(os.getloadavg()[0])
    finally:
        cluster.close()
    print_tables(results, args)
    print(
        f"\n({time.monotonic() - started:.0f} s, nproc {os.cpu_count()}, load average "
        f"{min(load):.2f}-{max(load):.2f})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, **results}, indent=2, default=str
            )
        )


if __name__ == "__main__":
    main()
