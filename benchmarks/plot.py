"""Draw bench_sessions.py's results as two PNGs (``make bench`` runs it after the benchmarks).

    .venv/bin/python benchmarks/plot.py [DIR]

Reads ``DIR/sessions.json`` (default ``benchmarks/results``) and writes, next to it,
``sessions_vs_concurrency.png`` (sessions per second against concurrent clients, one line per
server; failed sessions marked) and ``throughput_vs_size.png`` (MB/s against message size).
Needs matplotlib (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # after choosing the backend

UNITS = {"KB": 1 << 10, "MB": 1 << 20}


def size_octets(label: str) -> int:
    number, unit = label.split()
    return int(number) * UNITS[unit]


def plot_sessions(results: dict[str, Any], out: Path) -> None:
    meta = results["meta"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, cells in results["sessions"].items():
        ns = [int(n) for n in cells]
        rates = [cells[n]["sessions_per_s"] for n in cells]
        (line,) = ax.plot(ns, rates, marker="o", label=kind)
        failed = [(int(n), c["sessions_per_s"]) for n, c in cells.items() if c["failed"]]
        if failed:
            ax.scatter(
                *zip(*failed, strict=True), s=120, facecolors="none", edgecolors=line.get_color()
            )
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(meta["concurrency"], [str(n) for n in meta["concurrency"]])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("sessions per second")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"POP3 sessions/s ({meta['seconds']:g} s per point; circled: some sessions failed)"
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_sizes(results: dict[str, Any], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, row in results["sizes"].items():
        sizes = [size_octets(label) for label in row]
        ax.plot(sizes, [v["mb_per_s"] for v in row.values()], marker="o", label=kind)
    labels = list(next(iter(results["sizes"].values())))
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks([size_octets(label) for label in labels], labels)
    ax.set_xlabel("message size")
    ax.set_ylabel("MB/s (one client, RETR)")
    ax.set_ylim(bottom=0)
    ax.set_title("Server throughput by message size (pop3_asyncio client)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", nargs="?", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = json.loads((args.dir / "sessions.json").read_text())
    if results.get("sessions"):
        plot_sessions(results, args.dir / "sessions_vs_concurrency.png")
        print(f"wrote {args.dir / 'sessions_vs_concurrency.png'}")
    if results.get("sizes"):
        plot_sizes(results, args.dir / "throughput_vs_size.png")
        print(f"wrote {args.dir / 'throughput_vs_size.png'}")


if __name__ == "__main__":
    main()
