"""The three bindings over loopback: their clients against one server, their servers to one client.

Table 1, clients: ``pop3_asyncio``, ``pop3_trio``, ``pop3_sync`` and the standard library's
``poplib`` fetch from the replaying "wire" server of ``bench_client.py`` (it sends prepared
bytes, so it costs the client nothing to wait for): one big message (``iter_retr``; poplib's
``retr``) and many 4 KB messages (``retr_many``, pipelined; poplib one by one). Each client
runs in a fresh subprocess; peak RSS is its VmHWM.

Table 2, servers: ``pop3 serve --backend asyncio|trio|sync`` and a throwaway Dovecot (its
default configuration apart from loopback, passwd-file, Maildir and ``ssl = no``; needs root
and Debian's ``mail`` user) serve copies of the same Maildir to ``curl``: the big message, then
the small ones in one curl run that reuses its connection (one RETR at a time: curl does not
pipeline). Then the ``pop3_asyncio`` client fetches the big message (and, pipelined, the
small ones) from each server.

Best of ``--repeat`` runs (a server run over 10 s is not repeated); the clients of table 1
take turns, one run each per round. "srv CPU" is the
server's CPU seconds during the run (its process tree: Dovecot's master, its reaped children
and live ones; 10 ms ticks); "cli CPU" is the client's CPU seconds (the Python clients: only
the timed part; curl: the whole process).

    .venv/bin/python benchmarks/bench_bindings.py [--quick] [--big-mb 50] [--small 1000]
        [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_client  # the wire server and the Maildir maker, shared

USER, PASSWORD = bench_client.USER, bench_client.PASSWORD
HOST = "127.0.0.1"
MAIL_UID = MAIL_GID = 8  # Debian's mail user: Dovecot's mail processes run as it
CLIENTS = ("pop3_asyncio", "pop3_trio", "pop3_sync", "poplib")
SERVERS = ("pop3 asyncio", "pop3 trio", "pop3 sync", "dovecot")
SLOW = 10.0

# Every client prints: timed seconds, octets received, peak RSS (KiB), CPU seconds (timed part).
_ARGS = "host, port, user, password, which = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]\n"
CLIENT_CODE = {
    "poplib": """
import poplib, sys, time
"""
    + _ARGS
    + """
poplib._MAXLINE = 1 << 20  # its 2048-octet default rejects long lines
c = poplib.POP3(host, port)
c.user(user); c.pass_(password)
count, _ = c.stat()
msgs = [1] if which == "big" else range(2, count + 1)
cpu = time.process_time(); t = time.perf_counter(); total = 0
if which == "list":
    # What a poplib user writes to get the same dicts.
    sizes = {int(a): int(b) for a, b in (line.split() for line in c.list()[1])}
    uids = {int(a): b.decode("ascii") for a, b in (line.split() for line in c.uidl()[1])}
    total = len(sizes) + len(uids)
else:
    for n in msgs:
        total += sum(len(line) + 2 for line in c.retr(n)[1])
elapsed = time.perf_counter() - t; cpu = time.process_time() - cpu
c.quit()
print(elapsed, total, peak(), cpu)
""",
    "pop3_asyncio": """
import asyncio, sys, time
import pop3_asyncio
"""
    + _ARGS
    + """
async def main():
    async with pop3_asyncio.connect(host, port, tls=None) as c:
        await c.login(user, password, mechanism="USER")
        count, _ = await c.stat()
        cpu = time.process_time(); t = time.perf_counter(); total = 0
        if which == "big":
            async for chunk in c.iter_retr(1):
                total += len(chunk)
        elif which == "list":
            total = len(await c.list()) + len(await c.uidl())
        elif which == "serial":
            for n in range(2, count + 1):
                total += len(await c.retr(n))
        else:
            async for _, message in c.retr_many(range(2, count + 1)):
                total += len(message)
        return time.perf_counter() - t, total, time.process_time() - cpu
elapsed, total, cpu = asyncio.run(main())
print(elapsed, total, peak(), cpu)
""",
    "pop3_trio": """
import sys, time
import trio
import pop3_trio
"""
    + _ARGS
    + """
async def main():
    async with pop3_trio.connect(host, port, tls=None) as c:
        await c.login(user, password, mechanism="USER")
        count, _ = await c.stat()
        cpu = time.process_time(); t = time.perf_counter(); total = 0
        if which == "big":
            async for chunk in c.iter_retr(1):
                total += len(chunk)
        elif which == "list":
            total = len(await c.list()) + len(await c.uidl())
        elif which == "serial":
            for n in range(2, count + 1):
                total += len(await c.retr(n))
        else:
            async for _, message in c.retr_many(range(2, count + 1)):
                total += len(message)
        return time.perf_counter() - t, total, time.process_time() - cpu
elapsed, total, cpu = trio.run(main)
print(elapsed, total, peak(), cpu)
""",
    "pop3_sync": """
import sys, time
import pop3_sync
"""
    + _ARGS
    + """
with pop3_sync.connect(host, port, tls=None) as c:
    c.login(user, password, mechanism="USER")
    count, _ = c.stat()
    cpu = time.process_time(); t = time.perf_counter(); total = 0
    if which == "big":
        for chunk in c.iter_retr(1):
            total += len(chunk)
    elif which == "list":
        total = len(c.list()) + len(c.uidl())
    elif which == "serial":
        for n in range(2, count + 1):
            total += len(c.retr(n))
    else:
        for _, message in c.retr_many(range(2, count + 1)):
            total += len(message)
    elapsed = time.perf_counter() - t; cpu = time.process_time() - cpu
print(elapsed, total, peak(), cpu)
""",
}

Result = dict[str, float]


# --- CPU accounting -------------------------------------------------------------------------


def _stat_times(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) of ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by ``pid``, its live descendants and its reaped children."""
    try:
        own, reaped = _stat_times(pid)
    except FileNotFoundError:
        return 0.0
    return own + reaped + sum(tree_cpu(child) for child in _children(pid))


# --- servers --------------------------------------------------------------------------------


class Server:
    def __init__(self, process: subprocess.Popen[str], port: int, root: Path | None = None):
        self.process, self.port, self.root = process, port, root

    def cpu(self) -> float:
        return tree_cpu(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if self.root else signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def start_wire(maildir: Path) -> Server:
    process, port = bench_client.start_server(maildir, "wire")
    return Server(process, port)


def start_pop3(maildir: Path, backend: str) -> Server:
    command = [sys.executable, "-m", "pop3_cli", "serve", "--backend", backend, "-q"]
    command += ["--maildir", str(maildir), "--port", "0", "--user", f"{USER}:{PASSWORD}"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("listening on "):
            return Server(process, int(line.rsplit(":", 1)[1]))
    raise RuntimeError(f"pop3 serve --backend {backend} did not start")


def _dovecot_config(root: Path, port: int, extra: str = "") -> str:
    return f"""# A throwaway Dovecot for the benchmarks: defaults, apart from these.
protocols = pop3
listen = {HOST}
base_dir = {root}/run
state_dir = {root}/state
instance_name = pop3-bench-{port}
log_path = {root}/dovecot.log
ssl = no
mail_location = maildir:~/Maildir
first_valid_uid = {MAIL_UID}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
{extra}"""


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=5) as s:
            ok = s.recv(100).startswith(b"+OK")
            s.sendall(b"QUIT\r\n")
            s.recv(100)
            return ok
    except OSError:
        return False


def start_dovecot(
    source: Path, *, users: Mapping[str, str] | None = None, extra_config: str = ""
) -> Server:
    """A Dovecot of its own on a free port, serving a copy of the Maildir ``source``.

    With ``users`` (name: password), ``source`` holds one Maildir per user, ``source/NAME``.
    ``extra_config`` is appended to the configuration.
    """
    binary = shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if binary is None or os.geteuid() != 0:
        raise RuntimeError("Dovecot needs to be installed, and this benchmark to run as root")
    root = Path(tempfile.mkdtemp(prefix="pop3-bench-dovecot-"))
    root.chmod(0o711)  # the login and mail processes (other users) pass through
    for sub in ("run", "state"):
        (root / sub).mkdir()
    lines = []
    for user, password in (users or {USER: PASSWORD}).items():
        home = root / "home" / user
        shutil.copytree(source / user if users else source, home / "Maildir")
        for directory, _, files in os.walk(home):
            os.chown(directory, MAIL_UID, MAIL_GID)
            for name in files:
                os.chown(os.path.join(directory, name), MAIL_UID, MAIL_GID)
        home.chmod(0o700)
        lines.append(f"{user}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_GID}::{home}::\n")
    (root / "home").chmod(0o711)
    (root / "users").write_text("".join(lines))
    (root / "users").chmod(0o644)  # read by the auth process (user dovecot)
    for _attempt in range(3):  # a free port can be taken by someone else meanwhile
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        (root / "dovecot.conf").write_text(_dovecot_config(root, port, extra_config))
        process = subprocess.Popen(
            [binary, "-F", "-c", str(root / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        server = Server(process, port, root)
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(port):
                return server
            time.sleep(0.05)
        log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
        server.root = None  # keep the directory for the next attempt
        server.stop()
        if "Address already in use" not in log:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"Dovecot did not start:\n{log}")
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError("Dovecot found no free port")


# --- clients --------------------------------------------------------------------------------


def run_python(name: str, server: Server, which: str) -> Result:
    """One run of client ``name`` in a fresh subprocess."""
    code = bench_client.PEAK + CLIENT_CODE[name]
    before = server.cpu()
    out = subprocess.run(
        [sys.executable, "-c", code, HOST, str(server.port), USER, PASSWORD, which],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    server_cpu = settled_cpu(server) - before
    return {
        "seconds": float(out[0]),
        "octets": int(out[1]),
        "peak_rss": int(out[2]) * 1024,
        "client_cpu": float(out[3]),
        "server_cpu": server_cpu,
    }


def run_curl(server: Server, which: str, sizes: list[int], tmp: Path) -> Result:
    """One curl run: message 1, or messages 2.. over one connection, each to /dev/null.

    (curl's ``%{size_download}`` does not count POP3 bodies, so the octets are the
    messages' sizes; ``check_curl`` makes sure that curl really gets them.)
    """
    base = f"pop3://{USER}:{PASSWORD}@{HOST}:{server.port}"
    config = tmp / "curl.conf"
    numbers = [1] if which == "big" else range(2, len(sizes) + 1)
    config.write_text("".join(f'url = "{base}/{n}"\noutput = "/dev/null"\n' for n in numbers))
    command = ["curl", "-sS", "--config", str(config)]
    if which == "list":  # LIST, then UIDL on the same connection
        command = ["curl", "-sS", "-o", "/dev/null", f"{base}/", "--next"]
        command += ["-sS", "-o", "/dev/null", "-X", "UIDL", f"{base}/"]
    before = server.cpu()
    t = time.perf_counter()
    process = subprocess.Popen(command)
    # wait4: this curl's own CPU time and peak RSS (KiB on Linux), not all children's.
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - t
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"curl exited with {process.returncode}")
    return {
        "seconds": elapsed,
        "octets": sizes[0] if which == "big" else sum(sizes[1:]),  # "list": set by the caller
        "client_cpu": usage.ru_utime + usage.ru_stime,
        "server_cpu": settled_cpu(server) - before,
        "peak_rss": usage.ru_maxrss * 1024,
    }


def check_curl(server: Server, sizes: list[int], tmp: Path) -> None:
    """Fetch messages 1 and 2 with curl into files and check their sizes."""
    base = f"pop3://{USER}:{PASSWORD}@{HOST}:{server.port}"
    for n in (1, 2):
        out = tmp / "curl.out"
        subprocess.run(["curl", "-sS", "-o", str(out), f"{base}/{n}"], check=True)
        if out.stat().st_size != sizes[n - 1]:
            raise RuntimeError(f"curl got {out.stat().st_size} octets of message {n}")
        out.unlink()


def settled_cpu(server: Server) -> float:
    """The server's CPU once its per-session processes (Dovecot's pop3) have been reaped."""
    if server.root is None:
        return server.cpu()
    deadline = time.monotonic() + 2
    while True:
        live = [p for child in _children(server.process.pid) for p in _children(child)]
        if not live or time.monotonic() > deadline:
            return server.cpu()
        time.sleep(0.02)


def best(runs: list[Result]) -> Result:
    return min(runs, key=lambda r: r["seconds"])


# --- main -----------------------------------------------------------------------------------


def measure(
    args: argparse.Namespace, maildir: Path, tmp: Path, sizes: list[int]
) -> dict[str, dict[str, dict[str, Result]]]:
    clients: dict[str, dict[str, Result]] = {}
    servers: dict[str, dict[str, Result]] = {}
    process, port = bench_client.start_server(maildir, "wire", listing=args.listing)
    server = Server(process, port)
    # The octets of the LIST and UIDL answers the wire server sends.
    listing_octets = sum(
        len(bench_client.listing_answer(kind, args.listing)) for kind in ("LIST", "UIDL")
    )
    try:
        run_python("pop3_asyncio", server, "big")  # warm the page cache
        check_curl(server, sizes, tmp)
        for which in ("big", "small", "serial", "list"):
            # The clients take turns, one run each per round: a slow spell of
            # the machine falls on all of them, not on one client's runs.
            by_client: dict[str, list[Result]] = {name: [] for name in (*CLIENTS, "curl")}
            for _ in range(args.repeat):
                for name in CLIENTS:
                    by_client[name].append(run_python(name, server, which))
                by_client["curl"].append(run_curl(server, which, sizes, tmp))
            for name, runs in by_client.items():
                if which == "list":
                    if name != "curl" and any(r["octets"] != 2 * args.listing for r in runs):
                        raise RuntimeError(f"{name}: wrong LIST/UIDL entry count")
                    for r in runs:
                        r["octets"] = listing_octets
                clients.setdefault(which, {})[name] = best(runs)
    finally:
        server.stop()
    starters: dict[str, Callable[[Path], Server]] = {
        "pop3 asyncio": lambda d: start_pop3(d, "asyncio"),
        "pop3 trio": lambda d: start_pop3(d, "trio"),
        "pop3 sync": lambda d: start_pop3(d, "sync"),
        "dovecot": start_dovecot,
    }
    for kind in SERVERS:
        copy = tmp / f"Maildir-{kind.replace(' ', '-')}"
        shutil.copytree(maildir, copy)
        server = starters[kind](copy)
        try:
            run_python("pop3_asyncio", server, "big")  # warm up (Dovecot builds its index)
            check_curl(server, sizes, tmp)
            for row in ("curl big", "curl small", "pop3_asyncio big", "pop3_asyncio small"):
                client, which = row.split()
                runs: list[Result] = []
                # A run that takes over SLOW seconds is not repeated (it is not noise).
                while len(runs) < args.repeat and not any(r["seconds"] > SLOW for r in runs):
                    if client == "curl":
                        runs.append(run_curl(server, which, sizes, tmp))
                    else:
                        runs.append(run_python(client, server, which))
                servers.setdefault(row, {})[kind] = best(runs) | {"runs": len(runs)}
        finally:
            server.stop()
            shutil.rmtree(copy, ignore_errors=True)
    return {"clients": clients, "servers": servers}


def print_tables(
    results: dict[str, dict[str, dict[str, Result]]], args: argparse.Namespace
) -> None:
    repeat = args.repeat
    labels = {
        "big": f"1 x {args.big_mb} MB",
        "small": f"{args.small} x 4 KB",
        "serial": f"{args.small} x 4 KB 1by1",
        "list": f"LIST+UIDL {args.listing // 1000}k",
    }
    print("Clients, from the wire server (x curl: curl's wall time over the client's)")
    print(
        f"{'workload':<16}{'client':<14}{'seconds':>9}{'MB/s':>8}{'x poplib':>10}"
        f"{'x curl':>8}{'cli CPU':>9}{'srv CPU':>9}{'peak RSS':>12}"
    )
    for which, per_client in results["clients"].items():
        base = per_client["poplib"]["seconds"]
        curl = per_client["curl"]["seconds"]
        for name, r in per_client.items():
            print(
                f"{labels[which]:<16}{name:<14}{r['seconds']:9.3f}"
                f"{r['octets'] / r['seconds'] / 1e6:8.1f}{base / r['seconds']:10.2f}"
                f"{curl / r['seconds']:8.2f}"
                f"{r['client_cpu']:9.3f}{r['server_cpu']:9.3f}{r['peak_rss'] / 2**20:9.1f} MB"
            )
    print()
    print("Servers, to one client")
    print(
        f"{'workload':<16}{'client':<14}{'server':<14}{'seconds':>9}{'MB/s':>8}"
        f"{'x dovecot':>11}{'srv CPU':>9}{'cli CPU':>9}"
    )
    for row, per_server in results["servers"].items():
        client, which = row.split()
        base = per_server["dovecot"]["seconds"]
        for kind, r in per_server.items():
            once = "  (1 run)" if r["runs"] == 1 < repeat else ""
            print(
                f"{labels[which]:<16}{client:<14}{kind:<14}{r['seconds']:9.3f}"
                f"{r['octets'] / r['seconds'] / 1e6:8.1f}{base / r['seconds']:11.2f}"
                f"{r['server_cpu']:9.3f}{r['client_cpu']:9.3f}{once}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 MB, 100 x 4 KB, one run each")
    parser.add_argument("--big-mb", type=int)
    parser.add_argument("--small", type=int)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--listing", type=int, help="messages in the LIST/UIDL workload")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    defaults = (5, 100, 1, 1000) if args.quick else (50, 1000, 3, 100_000)
    for name, default in zip(("big_mb", "small", "repeat", "listing"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        maildir = tmp / "Maildir"
        bench_client.make_maildir(maildir, args.big_mb, args.small)
        # What a client receives: CRLF line ends (the files have LF), in the servers' order.
        files = sorted((maildir / "new").iterdir())
        sizes = [len(path.read_bytes().replace(b"\n", b"\r\n")) for path in files]
        results = measure(args, maildir, tmp, sizes)
    print_tables(results, args)
    print(f"\n({time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "big_mb": args.big_mb,
            "small": args.small,
            "repeat": args.repeat,
            "listing": args.listing,
        }
        args.json.write_text(json.dumps({"meta": meta, **results}, indent=2))


if __name__ == "__main__":
    main()
