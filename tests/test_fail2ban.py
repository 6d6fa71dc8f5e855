"""The fail2ban filter we ship, run by the real ``fail2ban-regex`` on a log our servers wrote.

Three ``pop3 serve`` processes (asyncio, the threaded server, trio) append to one
``--log-file``; clients connect from several loopback addresses (all of 127.0.0.0/8 is
the loopback interface) and fail to log in with every kind of method, log in rightly, are
refused a locked maildrop, and try to smuggle another address in through the user name
(into the login line and the -vv protocol trace). ``fail2ban-regex`` must count exactly
the wrong passwords, by address, and nothing else. A line as the systemd journal hands it
to fail2ban is checked too. docs/logging.md describes the lines; the jail example is
checked by ``fail2ban-client --test`` against a copy of the system's configuration.

Needs the Debian package fail2ban (``make peers``): skipped without it, failed with
``POP3_REQUIRE_PEERS=1``. Only ``fail2ban-regex`` and ``fail2ban-client --test`` run:
no fail2ban server, no firewall change.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from peers import require_peer
from served import PopServer, RawClient, deliver, write_users

pytest_plugins = ["peers"]

ROOT = Path(__file__).resolve().parents[1]
FILTER = ROOT / "docs" / "fail2ban" / "filter.d" / "pop3-sansio.conf"
JAIL = ROOT / "docs" / "fail2ban" / "jail.d" / "pop3-sansio.local"
PASSWORD = "right-Pw-5e1"
WRONG = "wrong-Pw-9c0"
SMUGGLED = "198.51.100.7"  # an address a client writes into its user name


def fail2ban_regex(
    log: str, *options: str, regex: str = str(FILTER)
) -> subprocess.CompletedProcess[str]:
    """``fail2ban-regex [OPTIONS] LOG REGEX``: LOG is a file or a single line; REGEX
    our filter file, or a failregex."""
    exe = require_peer("fail2ban-regex", "fail2ban")
    return subprocess.run(
        [exe, *options, log, regex], capture_output=True, text=True, timeout=60, check=True
    )


def matched_ips(log: Path, regex: str = str(FILTER)) -> collections.Counter[str]:
    """Each address the filter finds in ``log``, with the number of lines that name it."""
    result = fail2ban_regex(str(log), "--out", "ip", regex=regex)
    return collections.Counter(result.stdout.split())


def wrong_user_pass(port: int, source: str, user: str = "alice") -> bytes:
    with RawClient(port, source=source) as client:
        return client.login(user, WRONG)


def wrong_apop(port: int, source: str) -> bytes:
    with RawClient(port, source=source) as client:
        stamp = re.search(rb"<[^>]*>", client.greeting)
        assert stamp is not None, client.greeting
        digest = hashlib.md5(stamp.group() + WRONG.encode()).hexdigest()
        return client.command(f"APOP alice {digest}".encode())


def wrong_plain(port: int, source: str, user: str = "alice") -> bytes:
    with RawClient(port, source=source) as client:
        response = base64.b64encode(f"\0{user}\0{WRONG}".encode())
        return client.command(b"AUTH PLAIN " + response)


def right_login(port: int, source: str) -> bytes:
    with RawClient(port, source=source) as client:
        answer = client.login("alice", PASSWORD)
        assert client.command(b"QUIT").startswith(b"+OK")
        return answer


def test_the_filter_counts_exactly_the_wrong_passwords_by_address(tmp_path: Path) -> None:
    require_peer("fail2ban-regex", "fail2ban")
    users = write_users(tmp_path / "users", {"alice": PASSWORD})
    deliver(tmp_path / "mail" / "alice", "m1", b"Subject: hello\n\nbody\n")
    log = tmp_path / "pop3.log"
    options = ("--log-file", str(log))
    # PopServer passes -q: -v brings the level back to INFO, -vvv makes it -vv (a trace).
    servers = {
        "asyncio": PopServer(tmp_path, "asyncio", users, tmp_path / "mail", "-v", *options),
        "sync": PopServer(tmp_path, "sync", users, tmp_path / "mail", "-v", *options),
        "trio": PopServer(tmp_path, "trio", users, tmp_path / "mail", "-vvv", *options),
    }
    try:
        asyncio, sync, trio = (servers[name].port for name in ("asyncio", "sync", "trio"))
        # A user name that would read as a failure from another address to a careless
        # filter: in the trace as it is (it fits the trace's 64 characters), in the
        # login line as user=<...>, its ">" escaped.
        injected = f"pop3.server[1]: auth failed: rip={SMUGGLED} x"
        bracket = f"x> rip={SMUGGLED} rport=1 method=USER"
        failures = [
            # (the attempt, its port, its source): 3 from .2, 2 from .3, 3 from .4
            (wrong_user_pass, asyncio, "127.0.0.2"),
            (wrong_user_pass, asyncio, "127.0.0.2"),
            (wrong_apop, sync, "127.0.0.2"),
            (wrong_plain, sync, "127.0.0.3"),
            (wrong_user_pass, trio, "127.0.0.3", injected),  # into the trace, too
            (wrong_plain, trio, "127.0.0.4", bracket),
            (wrong_user_pass, trio, "127.0.0.4"),
            (wrong_apop, asyncio, "127.0.0.4"),
        ]
        # Each failure is answered after the server's 2 s delay: all at once.
        with ThreadPoolExecutor(len(failures)) as pool:
            futures = [pool.submit(f[0], *f[1:]) for f in failures]
            # Meanwhile: right passwords from .5 on each server, one at a time (the
            # maildrop admits one session), and from .6 while .5 holds the maildrop.
            for port in (asyncio, sync, trio):
                assert right_login(port, "127.0.0.5").startswith(b"+OK")
            with RawClient(asyncio, source="127.0.0.5") as holder:
                assert holder.login("alice", PASSWORD).startswith(b"+OK")
                with RawClient(trio, source="127.0.0.6") as other:
                    in_use = other.login("alice", PASSWORD)
                assert in_use.startswith(b"-ERR [IN-USE]"), in_use
            answers = [future.result() for future in futures]
        assert all(answer.startswith(b"-ERR [AUTH]") for answer in answers), answers
    finally:
        codes = {name: server.stop() for name, server in servers.items()}
    assert codes == {"asyncio": 0, "sync": 0, "trio": 0}
    text = log.read_text()
    lines = text.splitlines()
    # What the log holds: the failures, the logins, the refusal, the injection attempts.
    assert sum(bool(re.match(r"\S+ \S+ pop3\.server\[\d+\]: auth failed: ", x)) for x in lines) == 8
    assert sum(" login: rip=127.0.0.5 " in line for line in lines) == 4
    assert sum(" login refused: rip=127.0.0.6 " in line for line in lines) == 1
    assert any(line.endswith(f" C: USER {injected}") for line in lines), text  # the trace
    assert any(line.endswith(f" user=<{injected}>") for line in lines), text
    assert any(f" user=<x\\x3e rip={SMUGGLED} rport=1 method=USER>" in line for line in lines)
    # What fail2ban makes of it: the wrong passwords, each under its client's address.
    assert matched_ips(log) == {"127.0.0.2": 3, "127.0.0.3": 2, "127.0.0.4": 3}, text
    # The injections are real: a filter not anchored where ours is would have banned
    # the smuggled address (from the -vv trace line and the -v command line).
    assert matched_ips(log, "auth failed: rip=<HOST> ")[SMUGGLED] == 2, text
    report = fail2ban_regex(str(log)).stdout
    assert re.search(r"^Lines: \d+ lines, 0 ignored, 8 matched, \d+ missed", report, re.M), report
    # The date was recognised on every line (fail2ban drops lines it cannot date).
    hits = re.search(r"\[(\d+)\] \{\^LN-BEG\}ExYear", report)
    assert hits is not None and int(hits.group(1)) == len(lines), report


def test_a_journal_line_matches_and_a_trace_line_does_not(tmp_path: Path) -> None:
    """What fail2ban's systemd backend sees: the journal's host and identifier first."""
    line = (
        "Dec  7 06:40:25 mail pop3[4242]: 2026-12-07 06:40:25 pop3.server[4242]: auth failed: "
        "rip=2001:db8::7 rport=51234 lip=2001:db8::1 lport=110 tls=no method=USER "
        "attempts=1 user=<alice>"
    )
    trace = (
        "Dec  7 06:40:26 mail pop3[4242]: 2026-12-07 06:40:26 pop3.server.trace[4242]: "
        f"rip=192.0.2.1 rport=5 C: USER pop3.server[1]: auth failed: rip={SMUGGLED} rport=1 "
    )
    refused = line.replace("06:40:25", "06:40:27").replace("auth failed:", "login refused:")
    journal = tmp_path / "journal.txt"
    journal.write_text("\n".join([line, trace, refused]) + "\n")
    assert matched_ips(journal) == {"2001:db8::7": 1}


def test_the_jail_example_passes_fail2bans_configuration_test(tmp_path: Path) -> None:
    """``fail2ban-client --test`` on the system's configuration plus our filter and jail."""
    client = require_peer("fail2ban-client", "fail2ban")
    system = Path("/etc/fail2ban")
    if not (system / "jail.conf").is_file():
        pytest.fail(f"{system}/jail.conf is missing: is the fail2ban package whole?")
    config = tmp_path / "fail2ban"
    shutil.copytree(system, config, ignore=shutil.ignore_patterns("jail.d", "*.local"))
    (config / "jail.d").mkdir()
    shutil.copy(FILTER, config / "filter.d")
    log = tmp_path / "pop3-sansio.log"
    log.touch()
    jail = JAIL.read_text().replace("/var/log/pop3-sansio.log", str(log))
    assert jail != JAIL.read_text()
    (config / "jail.d" / JAIL.name).write_text(jail)
    result = subprocess.run(
        [client, "--conf", str(config), "--test"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK: configuration test is successful" in output, output
