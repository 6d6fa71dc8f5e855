"""Startup time: whole processes that import the bindings or run ``pop3 --help``, vs baselines.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_startup.py``).
Options: ``--runs N`` (timed runs of each command, default 30), ``--quick`` (5 runs: a
smoke test), ``--json PATH`` (also write the results as JSON), ``--no-modules`` (skip
the module-set report), ``--importtime N`` (also print the N slowest modules, by their
own time under ``python -X importtime``, of each subject).

What is timed: the wall time (``time.perf_counter``) of a whole ``subprocess.run`` of
this interpreter (``sys.executable``, so the subjects and the baselines run under the
same Python, ``site`` and ``.pth`` files), output discarded. Each command is run once
before timing so that its bytecode is cached. Then the commands take turns, one run
each per round (baseline, subject, baseline, subject, ...), so a burst of load from
another process hits both sides of a ratio; the ratios are of the medians.

    subject                    baseline
    import pop3_sansio         -c pass
    import pop3_sync           import poplib
    import pop3_asyncio        import asyncio, ssl
    import pop3_trio           import trio                (if trio is installed)
    pop3 --help                import argparse, asyncio, ssl

``pop3 --help`` is timed as ``python -m pop3_cli --help`` (the same interpreter as the
baselines; ``-m`` adds ``runpy``, about what the console script's own start costs).
The console script ``pop3`` next to the interpreter, if there is one, is timed too,
for information.

The module-set report imports each subject (and ``pop3_cli``: what ``pop3 --help``
loads) in a fresh process and lists the modules that the import added to
``sys.modules``, and which of the heavy ones (the ``HEAVY`` list below: dataclasses,
inspect, ast, logging, threading, selectors, json, hashlib, the server, SASL, SCRAM and
PROXY modules...) are among them.

Targets are printed as ``target ... <= 1.5x: PASS/MISS`` lines; nothing here asserts on
a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PY = sys.executable

# label -> argv after the interpreter
COMMANDS: dict[str, list[str]] = {
    "-c pass": ["-c", "pass"],
    "import pop3_sansio": ["-c", "import pop3_sansio"],
    "import poplib": ["-c", "import poplib"],
    "import pop3_sync": ["-c", "import pop3_sync"],
    "import asyncio, ssl": ["-c", "import asyncio, ssl"],
    "import pop3_asyncio": ["-c", "import pop3_asyncio"],
    "import trio": ["-c", "import trio"],
    "import pop3_trio": ["-c", "import pop3_trio"],
    "import argparse, asyncio, ssl": ["-c", "import argparse, asyncio, ssl"],
    "pop3 --help": ["-m", "pop3_cli", "--help"],
}
# (subject, baseline, target bound on the ratio of medians or None)
PAIRS: list[tuple[str, str, float | None]] = [
    ("import pop3_sansio", "-c pass", None),
    ("import pop3_sync", "import poplib", 1.5),
    ("import pop3_asyncio", "import asyncio, ssl", 1.5),
    ("import pop3_trio", "import trio", None),
    ("pop3 --help", "import argparse, asyncio, ssl", 1.5),
    ("pop3 --help (console script)", "import argparse, asyncio, ssl", None),
]
# Modules whose presence after a client-only import the reshaping is meant to remove.
HEAVY = (
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "typing",
    "enum",
    "re",
    "logging",
    "threading",
    "selectors",
    "socketserver",
    "json",
    "hashlib",
    "hmac",
    "secrets",
    "base64",
    "unicodedata",
    "stringprep",
    "ipaddress",
    "email",
    "ssl",
    "asyncio",
    "argparse",
    "pop3_sansio._session",
    "pop3_sansio._server_driver",
    "pop3_sansio._sasl",
    "pop3_sansio._saslprep",
    "pop3_sansio._scram",
    "pop3_sansio._proxy",
    "pop3_sansio._apop",
    "pop3_sync._server",
    "pop3_asyncio._server",
    "pop3_trio._server",
    "pop3_maildrop",
    "tempfile",
    "multiprocessing",
)
# pop3_cli: what ``pop3 --help`` imports before argparse prints the help.
MODULE_SUBJECTS = ("pop3_sansio", "poplib", "pop3_sync", "pop3_asyncio", "pop3_trio", "pop3_cli")


def have(module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([PY, "-c", code], check=False).returncode == 0


def commands() -> dict[str, list[str]]:
    """The commands to time on this machine, as full argv lists."""
    chosen = {label: [PY, *argv] for label, argv in COMMANDS.items()}
    if not have("trio"):
        del chosen["import trio"], chosen["import pop3_trio"]
    script = Path(PY).parent / "pop3"
    if script.is_file() and os.access(script, os.X_OK):
        chosen["pop3 --help (console script)"] = [str(script), "--help"]
    return chosen


def run_once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - started


def measure(cmds: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Times each command ``runs`` times, the commands taking turns, after one warm-up run."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the bytecode must be cached
    env.pop("PYTHONPYCACHEPREFIX", None)
    for argv in cmds.values():  # warm-up: writes the bytecode, fills the page cache
        run_once(argv, env)
    # Baselines and subjects alternate: each pair's baseline runs just before its subject.
    order: list[str] = []
    for subject, baseline, _ in PAIRS:
        for label in (baseline, subject):
            if label in cmds and label not in order:
                order.append(label)
    order += [label for label in cmds if label not in order]
    times: dict[str, list[float]] = {label: [] for label in order}
    for _ in range(runs):
        for label in order:
            times[label].append(run_once(cmds[label], env))
    return times


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "min_ms": min(samples) * 1e3,
        "median_ms": statistics.median(samples) * 1e3,
        "max_ms": max(samples) * 1e3,
    }


def ratios(times: dict[str, list[float]]) -> list[dict[str, Any]]:
    rows = []
    for subject, baseline, bound in PAIRS:
        if subject not in times or baseline not in times:
            continue
        a, b = times[subject], times[baseline]
        ratio = statistics.median(a) / statistics.median(b)
        rows.append(
            {
                "subject": subject,
                "baseline": baseline,
                "ratio": ratio,
                "ratio_min": min(a) / min(b),
                # Per round, the subject over the baseline it ran next to.
                "ratio_paired": statistics.median(x / y for x, y in zip(a, b, strict=True)),
                "extra_ms": (statistics.median(a) - statistics.median(b)) * 1e3,
                "bound": bound,
                "pass": None if bound is None else ratio <= bound,
            }
        )
    return rows


MODULES_CODE = """
import sys
before = set(sys.modules)
import {name}
added = sorted(set(sys.modules) - before)
print(len(before), len(sys.modules))
print(" ".join(added))
"""


def module_sets(subjects: list[str]) -> dict[str, dict[str, Any]]:
    """For each subject: the modules its import adds to a fresh interpreter's ``sys.modules``."""
    sets: dict[str, dict[str, Any]] = {}
    for name in subjects:
        out = subprocess.run(
            [PY, "-c", MODULES_CODE.format(name=name)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        before, total = map(int, out[0].split())
        added = out[1].split() if len(out) > 1 else []
        ours = [m for m in added if m.split(".")[0].startswith("pop3_")]
        heavy = [m for m in HEAVY if m in added]
        sets[name] = {
            "at_start": before,
            "total": total,
            "added": len(added),
            "added_ours": len(ours),
            "heavy": heavy,
            "modules": added,
        }
    return sets


def slowest_imports(name: str, count: int, repeat: int = 5) -> list[tuple[int, int, str]]:
    """The ``count`` modules with the largest own import time (us) under ``-X importtime``.

    Each module's best (smallest) self and cumulative times of ``repeat`` runs.
    """
    best: dict[str, tuple[int, int]] = {}
    for _ in range(repeat):
        err = subprocess.run(
            [PY, "-X", "importtime", "-c", f"import {name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own_text, cumulative_text, module = line.removeprefix("import time:").split("|")
            own, cumulative, module = int(own_text), int(cumulative_text), module.strip()
            old = best.get(module, (own, cumulative))
            best[module] = (min(own, old[0]), min(cumulative, old[1]))
    rows = [(own, cumulative, module) for module, (own, cumulative) in best.items()]
    return sorted(rows, reverse=True)[:count]


def print_report(times: dict[str, list[float]], checks: list[dict[str, Any]]) -> None:
    width = max(map(len, times))
    print(f"{'command':<{width}}  {'min ms':>7}  {'median':>7}  {'max ms':>7}")
    for label, samples in times.items():
        s = summary(samples)
        print(f"{label:<{width}}  {s['min_ms']:7.1f}  {s['median_ms']:7.1f}  {s['max_ms']:7.1f}")
    print()
    print("ratios of medians (min/min and median of per-round ratios in brackets):")
    for r in checks:
        print(
            f"  {r['subject']} / {r['baseline']}: {r['ratio']:.2f}x "
            f"(min {r['ratio_min']:.2f}x, paired {r['ratio_paired']:.2f}x), "
            f"+{r['extra_ms']:.1f} ms"
        )
    print()
    for r in checks:
        if r["bound"] is not None:
            verdict = "PASS" if r["pass"] else "MISS"
            print(
                f"target {r['subject']} / {r['baseline']} = {r['ratio']:.2f}x "
                f"<= {r['bound']}x: {verdict}"
            )


def print_modules(sets: dict[str, dict[str, Any]]) -> None:
    print()
    print("modules each import adds to a fresh interpreter (ours: pop3_* modules):")
    for name, s in sets.items():
        print(
            f"  import {name}: +{s['added']} modules ({s['added_ours']} ours), "
            f"{s['total']} in sys.modules (from {s['at_start']})"
        )
        print(f"    heavy: {', '.join(s['heavy']) or '-'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=None, help="timed runs per command")
    parser.add_argument("--quick", action="store_true", help="5 runs: a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-modules", action="store_true", help="skip the module sets")
    parser.add_argument("--importtime", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 30)

    started = time.perf_counter()
    cmds = commands()
    times = measure(cmds, runs)
    elapsed = time.perf_counter() - started
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"pop3-sansio startup benchmark: Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {runs} runs of each command, "
        f"interleaved, bytecode cached, {elapsed:.1f} s total, load average {load:.2f} at "
        f"the end (other processes skew the numbers)"
    )
    print(f"interpreter: {PY}; pop3 --help run as: python -m pop3_cli --help")
    print()
    checks = ratios(times)
    print_report(times, checks)

    subjects = [m for m in MODULE_SUBJECTS if m != "pop3_trio" or "import trio" in cmds]
    sets = {} if args.no_modules else module_sets(subjects)
    if sets:
        print_modules(sets)
    slowest: dict[str, list[tuple[int, int, str]]] = {}
    if args.importtime:
        for name in subjects:
            slowest[name] = slowest_imports(name, args.importtime)
            print(f"\nslowest imports under import {name} (us, self / cumulative, best of 5):")
            for own, cumulative, module in slowest[name]:
                print(f"  {own:7d} {cumulative:8d}  {module}")

    if args.json:
        payload = {
            "python": sys.version,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "runs": runs,
            "loadavg_1min": load,
            "elapsed_s": elapsed,
            "help_command": "python -m pop3_cli --help",
            "commands": {
                label: {
                    "argv": [Path(a).name if os.sep in a else a for a in cmds[label]],
                    **summary(samples),
                    "samples_ms": [t * 1e3 for t in samples],
                }
                for label, samples in times.items()
            },
            "targets": checks,
            "modules": sets,
            "slowest_imports": slowest,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
