"""Run every atheris harness for a bounded time and print how many inputs each ran.

    python fuzz/run_all.py --seconds 60 [--parallel] [--harness client]

Each harness runs in its own subprocess with ``-max_total_time=N``. New inputs
that the fuzzer finds go to ``fuzz/.work/<role>/`` (not committed); the seeds
in ``fuzz/corpus/<role>/`` are read, never written. A crash is written to
``fuzz/artifacts/`` and makes the exit status non-zero.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = ("client", "server", "proxy", "sasl", "parsers")
_EXECS = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(rb"Done (\d+) runs in (\d+) second")
_COVERAGE = re.compile(rb"#\d+\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def command(role: str, seconds: int, extra: list[str]) -> list[str]:
    work = HERE / ".work" / role
    work.mkdir(parents=True, exist_ok=True)
    artifacts = HERE / "artifacts"
    artifacts.mkdir(exist_ok=True)
    return [
        sys.executable,
        str(HERE / f"fuzz_{role}.py"),
        str(work),
        str(HERE / "corpus" / role),
        f"-max_total_time={seconds}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-dict={HERE / 'pop3.dict'}",
        f"-artifact_prefix={artifacts}/{role}-",
        *extra,
    ]


def summarise(role: str, returncode: int, log: bytes, elapsed: float) -> bool:
    execs = _EXECS.search(log) or _DONE.search(log)
    count = int(execs.group(1)) if execs else 0
    coverage = _COVERAGE.findall(log)
    cov = f"cov {coverage[-1][0].decode()} ft {coverage[-1][1].decode()}" if coverage else "cov ?"
    rate = count / elapsed if elapsed else 0.0
    status = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
    print(f"{role}: {count} executions in {elapsed:.0f} s ({rate:.0f}/s), {cov}: {status}")
    if returncode != 0:
        tail = log.decode("utf-8", "replace").splitlines()[-40:]
        print("\n".join("    " + line for line in tail))
    return returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="time per harness")
    parser.add_argument("--parallel", action="store_true", help="run the harnesses at once")
    parser.add_argument("--harness", choices=HARNESSES, action="append", help="only these")
    parser.add_argument("libfuzzer_args", nargs="*", help="passed on, e.g. -max_len=8192")
    args = parser.parse_args()
    roles = args.harness or list(HARNESSES)
    logs = HERE / ".work"
    logs.mkdir(exist_ok=True)
    ok = True
    running: list[tuple[str, subprocess.Popen[bytes], Path, float]] = []
    for role in roles:
        log_path = logs / f"{role}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command(role, args.seconds, args.libfuzzer_args),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        running.append((role, proc, log_path, time.monotonic()))
        if not args.parallel:
            ok &= finish(*running.pop())
    for item in running:
        ok &= finish(*item)
    return 0 if ok else 1


def finish(role: str, proc: subprocess.Popen[bytes], log_path: Path, started: float) -> bool:
    try:
        # Generous: start-up and the final stats come on top of the fuzzing time.
        returncode = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        raise
    return summarise(role, returncode, log_path.read_bytes(), time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
