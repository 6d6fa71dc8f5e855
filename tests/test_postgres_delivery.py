"""Mail into PostgreSQL: ``pop3 deliver`` (an MDA), ``pop3 lmtp`` (RFC 2033), ``pop3 import``.

Each command runs as a subprocess against a real PostgreSQL (tests/postgres.py); what it
stored is read back through ``PostgresStorage.open`` (the snapshot a POP3 session sees).
The LMTP client is the standard library's ``smtplib.LMTP``. Fault tests stop a cluster of
their own: ``pop3 deliver`` must exit 75 (EX_TEMPFAIL) and store nothing, ``pop3 lmtp``
must answer 451 for each recipient and deliver again once the database is back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import smtplib
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from delivery import MESSAGE, TIMEOUT, lmtp, run_deliver, sizes, stored
from peers import free_port
from pop3_cli._lmtp import GroupCommit
from pop3_maildrop import MaildirStorage, MaildropError, PostgresStorage
from postgres import PostgresCluster, create_database
from served import crlf, deliver, env, pop3, write_users

pytest_plugins = ["peers", "postgres"]

ENVELOPE = b"From a@example.org  Mon Dec  7 06:00:00 2026\n"


@pytest.fixture
def fresh(postgres: PostgresCluster, request: pytest.FixtureRequest) -> str:
    """A database of the test's own (an empty one per test)."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return create_database(postgres, f"d_{name}")


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return write_users(tmp_path / "users", {"alice": "pw-a", "bob": "pw-b"})


# --- pop3 deliver ---------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", [ENVELOPE, b""], ids=["from-line", "no-from-line"])
def test_deliver_stores_the_message_and_drops_an_envelope_line(
    fresh: str, users_file: Path, envelope: bytes
) -> None:
    options = ("--user", "alice", "--users", str(users_file))
    result = run_deliver(fresh, *options, stdin=envelope + MESSAGE)
    assert (result.returncode, result.stderr) == (0, "")
    assert list(stored(fresh, "alice").values()) == [MESSAGE]
    assert sizes(fresh, "alice") == [len(crlf(MESSAGE))]  # RFC 1939: CRLF octets


def test_deliver_keeps_a_from_header_and_later_from_lines(fresh: str) -> None:
    message = b"From: x@example.org\nSubject: s\n\nFrom here on, the body.\n"
    assert run_deliver(fresh, "--user", "alice", stdin=message).returncode == 0
    assert list(stored(fresh, "alice").values()) == [message]


def test_deliver_streams_a_message_of_many_chunks_byte_exact(fresh: str) -> None:
    # Over STORE_CHUNK (64 KiB) several times, and not a multiple of it.
    body = b"".join(b"line %06d\r\n" % n for n in range(40_000))
    message = b"Subject: big\r\n\r\n" + body
    result = run_deliver(fresh, "--user", "alice", stdin=ENVELOPE + message)
    assert result.returncode == 0, result.stderr
    assert list(stored(fresh, "alice").values()) == [message]


def test_deliver_unreadable_input_exits_74(fresh: str) -> None:
    # Standard input is a TCP connection that the other side resets in the middle of
    # the message: a read fails with ECONNRESET (not an end of file).
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
    with receiver:
        sender.sendall(b"Subject: cut\r\n\r\npart of a body")
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sender.close()  # RST
        result = subprocess.run(
            pop3("deliver", "--storage", fresh, "--user", "alice"),
            stdin=receiver.fileno(),
            capture_output=True,
            text=True,
            env=env(),
            timeout=TIMEOUT,
            check=False,
        )
    assert result.returncode == 74, result.stderr
    assert result.stderr.startswith("pop3 deliver: cannot read the message"), result.stderr
    assert stored(fresh, "alice") == {}


def test_deliver_unknown_user_exits_67_and_stores_nothing(fresh: str, users_file: Path) -> None:
    result = run_deliver(fresh, "--user", "carol", "--users", str(users_file))
    assert result.returncode == 67, result.stderr
    assert result.stderr.startswith("pop3 deliver: no such user: 'carol'")
    assert stored(fresh, "carol") == {}


@pytest.mark.parametrize("stdin", [b"", ENVELOPE], ids=["empty", "envelope-only"])
def test_deliver_no_message_exits_65(fresh: str, stdin: bytes) -> None:
    result = run_deliver(fresh, "--user", "alice", stdin=stdin)
    assert result.returncode == 65, result.stderr
    assert stored(fresh, "alice") == {}


def test_deliver_bad_arguments_exit_64(fresh: str) -> None:
    assert run_deliver(fresh).returncode == 64  # no --user
    result = run_deliver("/not/a/url", "--user", "alice")
    assert result.returncode == 64
    assert "postgresql://" in result.stderr


def test_deliver_unreadable_users_file_exits_78(fresh: str, tmp_path: Path) -> None:
    result = run_deliver(fresh, "--user", "alice", "--users", str(tmp_path / "missing"))
    assert result.returncode == 78, result.stderr


def test_deliver_database_unreachable_exits_75(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/mail?connect_timeout=2"
    started = time.monotonic()
    result = subprocess.run(
        pop3("deliver", "--storage", url, "--user", "alice", "--storage-timeout", "2"),
        input=MESSAGE,
        capture_output=True,
        env=env(),
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 75, result.stderr
    assert b"try again later" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert time.monotonic() - started < 15


def test_deliver_database_stopped_mid_message_exits_75_and_stores_nothing(
    pg_faults: PostgresCluster,
) -> None:
    cluster = pg_faults
    url = create_database(cluster, "mid_message")
    part = b"Subject: big\n\n" + b"x" * 1000 + b"\n"
    proc = subprocess.Popen(
        pop3("deliver", "--storage", url, "--user", "alice"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(),
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        for _ in range(300):  # 300 KB: several chunk rows are written in the transaction
            proc.stdin.write(part)
        proc.stdin.flush()
        time.sleep(1.0)  # connected, and inside the transaction
        cluster.stop()
        with contextlib.suppress(BrokenPipeError):
            for _ in range(300):
                proc.stdin.write(part)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        assert proc.wait(TIMEOUT) == 75, proc.stderr.read()
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        if not cluster.running():
            cluster.start()
    assert stored(url, "alice") == {}


# --- pop3 lmtp ------------------------------------------------------------------------------


def data_replies(client: smtplib.LMTP, message: bytes, recipients: int) -> list[tuple[int, bytes]]:
    """DATA, then one reply per accepted recipient (RFC 2033 section 4.2)."""
    first = client.data(message)
    return [first] + [client.getreply() for _ in range(recipients - 1)]


def test_lmtp_replies_per_recipient_and_refuses_unknown_users(
    fresh: str, users_file: Path, tmp_path: Path
) -> None:
    with lmtp(tmp_path, fresh, users_file, "--listen", "127.0.0.1:0") as server:
        client = server.client()
        try:
            assert client.mail("<a@example.org>")[0] == 250
            assert client.rcpt("<alice@example.org>")[0] == 250
            code, text = client.rcpt("<carol@example.org>")
            assert (code, text[:5]) == (550, b"5.1.1")
            assert client.rcpt("<Bob+lists@example.org>")[0] == 250  # bob: +extension, case
            replies = data_replies(client, crlf(MESSAGE), 2)  # SMTP's line ends (RFC 5321)
            client.quit()
        finally:
            client.close()
    assert [code for code, _ in replies] == [250, 250], replies
    assert b"<alice@example.org>" in replies[0][1] and b"<Bob+lists" in replies[1][1]
    # As sent over LMTP: CRLF line ends, the dot-stuffing undone.
    assert list(stored(fresh, "alice").values()) == [crlf(MESSAGE)]
    assert list(stored(fresh, "bob").values()) == [crlf(MESSAGE)]
    assert stored(fresh, "carol") == {}


def test_lmtp_on_a_unix_socket_and_several_messages_per_connection(
    fresh: str, users_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "lmtp.sock"
    with lmtp(tmp_path, fresh, users_file, "--socket", str(path)) as server:
        client = server.client()
        try:
            for n in range(3):
                body = b"Subject: %d\r\n\r\nmessage %d\r\n" % (n, n)
                assert client.sendmail("a@example.org", ["alice"], body) == {}
            client.quit()
        finally:
            client.close()
    assert list(stored(fresh, "alice").values()) == [
        b"Subject: %d\r\n\r\nmessage %d\r\n" % (n, n) for n in range(3)
    ]
    assert not path.exists()  # removed when the server stops


def test_lmtp_replaces_a_stale_socket_but_not_a_live_one(
    fresh: str, users_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "lmtp.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # left behind as by a server that died: nobody listens
    with lmtp(tmp_path, fresh, users_file, "--socket", str(path)) as server:
        client = server.client()
        client.close()
        second = subprocess.run(
            pop3("lmtp", "--storage", fresh, "--users", str(users_file), "--socket", str(path)),
            capture_output=True,
            text=True,
            env=env(),
            timeout=TIMEOUT,
            check=False,
        )
        assert second.returncode == 1
        assert second.stderr.strip() == f"pop3 lmtp: {path} is in use by another server"
        client = server.client()  # the first one still serves
        try:
            assert client.noop()[0] == 250
            client.quit()
        finally:
            client.close()


def test_lmtp_database_down_answers_451_then_delivers_once_it_is_back(
    pg_faults: PostgresCluster, users_file: Path, tmp_path: Path
) -> None:
    cluster = pg_faults
    url = create_database(cluster, "lmtp_down")
    where = ("--listen", "127.0.0.1:0", "--storage-timeout", "2")
    with lmtp(tmp_path, url, users_file, *where) as server:
        cluster.stop()
        client = server.client()
        try:
            client.mail("<a@example.org>")
            client.rcpt("<alice>")
            client.rcpt("<bob>")
            replies = data_replies(client, crlf(MESSAGE), 2)
            assert [(code, text[:5]) for code, text in replies] == [(451, b"4.3.0")] * 2
            cluster.start()
            # As an MTA does: try again later, until the pool has reconnected.
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    assert client.sendmail("a@example.org", ["alice"], crlf(MESSAGE)) == {}
                    break
                except smtplib.SMTPDataError as exc:
                    assert exc.smtp_code == 451
                    assert time.monotonic() < deadline, "the pool did not reconnect"
                    time.sleep(0.5)
            client.quit()
        finally:
            client.close()
            if not cluster.running():
                cluster.start()
        assert "database unavailable" in server.stderr
    assert list(stored(url, "alice").values()) == [crlf(MESSAGE)]
    assert stored(url, "bob") == {}


def test_lmtp_refuses_a_message_over_the_size_limit(
    fresh: str, users_file: Path, tmp_path: Path
) -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 30
    where = ("--listen", "127.0.0.1:0", "--max-message-size", "1000")
    with lmtp(tmp_path, fresh, users_file, *where) as server:
        client = server.client()
        try:
            # Declared with SIZE (RFC 1870), as smtplib and Postfix do: refused at MAIL.
            with pytest.raises(smtplib.SMTPSenderRefused) as error:
                client.sendmail("a@example.org", ["alice"], big)
            assert error.value.smtp_code == 552
            # Undeclared: refused after the data, once per accepted recipient.
            client.rset()
            assert client.mail("<a@example.org>")[0] == 250
            assert client.rcpt("<alice>")[0] == 250
            assert client.rcpt("<bob>")[0] == 250
            replies = data_replies(client, big, 2)
            assert [code for code, _ in replies] == [552, 552], replies
            assert client.noop()[0] == 250  # still in step
            client.quit()
        finally:
            client.close()
    assert stored(fresh, "alice") == {}


def test_lmtp_group_commit_stores_a_batch_and_isolates_a_failing_message(fresh: str) -> None:
    """Three messages queued at once go in one batch; one that cannot be stored (an
    empty user name) fails alone, the others are stored."""

    async def main() -> list[str | BaseException]:
        with (
            PostgresStorage(fresh, pool_min=0, pool_max=1) as storage,
            concurrent.futures.ThreadPoolExecutor(1) as executor,
        ):
            store = GroupCommit(storage, executor, workers=1)
            tasks = [
                asyncio.create_task(store.deliver(user, b"Subject: %d\r\n\r\n" % n))
                for n, user in enumerate(["alice", "", "bob"])
            ]
            await asyncio.sleep(0)  # all three queued before a worker takes any
            store.start()
            try:
                return await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                await store.stop(timeout=5)

    alice, nobody, bob = asyncio.run(main())
    assert isinstance(nobody, MaildropError)
    assert stored(fresh, "alice") == {alice: b"Subject: 0\r\n\r\n"}
    assert stored(fresh, "bob") == {bob: b"Subject: 2\r\n\r\n"}


# --- pop3 import ----------------------------------------------------------------------------


def run_import(url: str, maildir: Path, user: str = "alice") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pop3("import", "--maildir", str(maildir), "--user", user, "--storage", url),
        capture_output=True,
        text=True,
        env=env(),
        timeout=TIMEOUT,
        check=False,
    )


def test_import_copies_a_maildir_keeps_its_unique_ids_and_is_idempotent(
    fresh: str, tmp_path: Path
) -> None:
    maildir = tmp_path / "Maildir"
    deliver(maildir, "1600000001.M1P1.host", b"Subject: one\n\nfirst\n")
    seen = deliver(maildir, "1600000002.M2P1.host", b"Subject: two\r\n\r\nsecond\r\n")
    seen.rename(maildir / "cur" / (seen.name + ":2,S"))  # read by an IMAP client: in cur/
    expected = MaildirStorage(maildir).open("alice")
    uids = [info.uid for info in expected.messages]
    expected.close()

    first = run_import(fresh, maildir)
    assert first.returncode == 0, first.stderr
    assert stored(fresh, "alice") == {
        uids[0]: b"Subject: one\n\nfirst\n",
        uids[1]: b"Subject: two\r\n\r\nsecond\r\n",
    }
    assert sizes(fresh, "alice") == [len(b"Subject: one\r\n\r\nfirst\r\n"), 24]

    deliver(maildir, "1600000003.M3P1.host", b"Subject: three\n\nthird\n")
    again = run_import(fresh, maildir)
    assert again.returncode == 0, again.stderr
    assert [m.split(b"\n")[0] for m in stored(fresh, "alice").values()] == [
        b"Subject: one",
        b"Subject: two\r",
        b"Subject: three",
    ]
    assert run_import(fresh, maildir).returncode == 0
    assert len(stored(fresh, "alice")) == 3  # nothing stored twice
    assert sorted(p.name for p in (maildir / "new").iterdir())[0] == "1600000001.M1P1.host"


def test_import_of_more_than_one_batch_keeps_the_order(fresh: str, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for n in range(250):  # 100 a transaction: three of them
        deliver(maildir, f"{1_600_000_000 + n}.M{n}P1.host", b"Subject: %d\n\nbody\n" % n)
    result = run_import(fresh, maildir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("250 of 250 message(s)")
    messages = list(stored(fresh, "alice").values())
    assert messages == [b"Subject: %d\n\nbody\n" % n for n in range(250)]


def test_import_of_a_directory_that_is_not_a_maildir_fails(fresh: str, tmp_path: Path) -> None:
    result = run_import(fresh, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"pop3 import: {tmp_path} is not a Maildir (no new/ or cur/)"
