"""``pop3 fetch`` with a config file, password commands and ``--status``, against a real Dovecot.

A throwaway Dovecot (peers.py) on 127.0.0.1 holds mail for alice and bob; ``pop3 fetch``
runs as a subprocess with a config file of two accounts, one over STLS and one over
implicit TLS, each taking its password from a command. Needs the Debian packages
dovecot-core and dovecot-pop3d (``make peers``); without them the test skips, or fails
when ``POP3_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import trustme

from fetched import lf, unwrap
from peers import USERS, DovecotFactory, as_received
from pop3_cli._state import STATE_FILE
from served import env, pop3, stored

pytest_plugins = ["peers"]

ALICE = [b"Subject: one\n\nfirst\n", b"Subject: two\n\n.dot\nsecond\n"]
BOB = [b"Subject: for bob\n\nhi bob\n"]


def fetch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pop3("fetch", *args),
        env=env(XDG_CONFIG_HOME=str(tmp_path / "xdg")),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_config_password_commands_and_status_against_dovecot(
    tmp_path: Path, dovecot: DovecotFactory, peer_ca: trustme.CA
) -> None:
    server = dovecot({"alice": ALICE, "bob": BOB})
    ca_file = tmp_path / "ca.pem"
    peer_ca.cert_pem.write_to_path(str(ca_file))
    config = tmp_path / "fetch.toml"
    config.write_text(
        f"""
[defaults]
host = "localhost"
ca_file = "{ca_file}"

[accounts.alice]
port = {server.port}
starttls = true
user = "alice"
password_command = "echo {USERS["alice"]}"
maildir = "alice"
keep = true

[accounts.bob]
port = {server.pop3s_port}
implicit_tls = true
user = "bob"
password_command = "printf '%s\\\\n' '{USERS["bob"]}'"
maildir = "bob"
"""
    )
    config.chmod(0o600)
    alice_size = sum(len(as_received(m)) for m in ALICE)
    bob_size = sum(len(as_received(m)) for m in BOB)

    status = fetch(tmp_path, "--config", str(config), "--status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        f"alice: 2 messages ({alice_size} B, {alice_size} octets), 2 new",
        f"bob: 1 message ({bob_size} B, {bob_size} octets), 1 new",
    ]

    result = fetch(tmp_path, "--config", str(config), "-vv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"alice: fetched 2 messages ({alice_size} octets)",
        f"bob: fetched 1 message ({bob_size} octets), 1 deleted on the server",
    ]
    assert "C: STLS" in result.stderr
    for user, password in USERS.items():
        for form in (password, base64.b64encode(password.encode()).decode()):
            assert form not in result.stderr, user
    # Stored in the default form: LF line ends, Delivered-To: and Received: in front.
    alice = [unwrap(m, "alice@localhost") for m in stored(tmp_path / "alice").values()]
    assert sorted(alice) == sorted(lf(as_received(m)) for m in ALICE)
    bob = [unwrap(m, "bob@localhost") for m in stored(tmp_path / "bob").values()]
    assert bob == [lf(as_received(BOB[0]))]
    assert len(server.stored("alice")) == 2 and server.stored("bob") == {}
    state = json.loads((tmp_path / "alice" / STATE_FILE).read_text())
    assert list(state["accounts"]) == ["alice@localhost"]

    # New mail for alice; the status sees it, and a fetch over implicit TLS (a flag
    # overriding the file's starttls and port) fetches only it.
    server.deliver("alice", b"Subject: three\n\nthird\n")
    status = fetch(tmp_path, "--config", str(config), "--status", "--account", "alice")
    assert status.stdout.endswith(", 1 new\n"), status.stderr
    moved = fetch(
        tmp_path,
        *("--config", str(config), "--account", "alice"),
        *("--implicit-tls", "--port", str(server.pop3s_port)),
    )
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == "fetched 1 message (25 octets), 2 already stored\n"
    assert len(server.stored("alice")) == 3
