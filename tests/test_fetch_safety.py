"""``pop3 fetch`` deletes on the server only mail whose bytes it stored, whatever the server.

A unique id does not name one message for ever: servers reuse ids in later
sessions (ids that are message numbers), a Maildir can hold two files of one
unique part, and a broken server may even list one id twice. Each test runs
``pop3 fetch`` in a subprocess against a real server on 127.0.0.1: a small
scripted one (``ScriptedServer``) that plays the broken server and records
every command, or ``pop3 serve``. Where the server deleted anything, the test
checks the invariant itself: every message the server deleted is, byte for
byte, in the destination Maildir.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest

from pop3_cli._state import JOURNAL_FILE, STATE_FILE
from served import TIMEOUT, PopServer, crlf, start_fetch, stored, write_users

USER = "alice"
PASSWORD = "fetch-safety-pw"
BACKENDS = ["asyncio", "trio", "sync"]


@dataclass
class Session:
    """What one connection to the scripted server lists, and what happened in it."""

    messages: list[tuple[str, bytes]]
    """``(unique id, message)`` for message numbers 1, 2, ...; the message with CRLF ends."""
    answer_quit: bool = True
    """False: on QUIT, delete what is marked but hang up without answering."""
    commands: list[str] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    """The message numbers deleted at QUIT."""


class ScriptedServer:
    """A POP3 server on 127.0.0.1 serving ``sessions`` in turn, one per connection.

    It answers USER/PASS, CAPA, STAT, UIDL, LIST, RETR, DELE, RSET, NOOP and
    QUIT from the session's script, however inconsistent the script is.
    """

    def __init__(self, sessions: list[Session]) -> None:
        self.sessions = sessions
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._listener.close()
        self._thread.join(TIMEOUT)
        if exc_type is None and self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            for session in self.sessions:
                conn, _ = self._listener.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    self._serve(conn, session)
        except OSError:
            pass  # the listener closed: fewer connections came than scripted
        except BaseException as exc:  # pragma: no cover - reported by __exit__
            self._error = exc

    def _serve(self, conn: socket.socket, session: Session) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"+OK scripted\r\n")
        marked: set[int] = set()
        messages = dict(enumerate(session.messages, 1))
        while line := reader.readline():
            command, _, arg = line.decode("ascii").rstrip("\r\n").partition(" ")
            command = command.upper()
            session.commands.append(f"{command} {arg}".strip() if command != "PASS" else "PASS")
            number = int(arg) if arg.isdigit() else 0
            if command == "CAPA":
                answer = b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"
            elif command in ("USER", "PASS", "NOOP"):
                answer = b"+OK\r\n"
            elif command == "STAT":
                answer = b"+OK %d %d\r\n" % (
                    len(messages),
                    sum(len(m) for _, m in messages.values()),
                )
            elif command == "UIDL" and not arg:
                lines = b"".join(b"%d %s\r\n" % (n, u.encode()) for n, (u, _) in messages.items())
                answer = b"+OK\r\n" + lines + b".\r\n"
            elif command == "LIST" and not arg:
                lines = b"".join(b"%d %d\r\n" % (n, len(m)) for n, (_, m) in messages.items())
                answer = b"+OK\r\n" + lines + b".\r\n"
            elif command == "RETR" and number in messages:
                body = messages[number][1].replace(b"\r\n.", b"\r\n..")
                answer = b"+OK\r\n" + (b"." if body.startswith(b".") else b"") + body + b".\r\n"
            elif command == "DELE" and number in messages:
                marked.add(number)
                answer = b"+OK\r\n"
            elif command == "RSET":
                marked.clear()
                answer = b"+OK\r\n"
            elif command == "QUIT":
                session.deleted = sorted(marked)
                if session.answer_quit:
                    conn.sendall(b"+OK bye\r\n")
                return
            else:
                answer = b"-ERR not here\r\n"
            conn.sendall(answer)


def fetch(tmp_path: Path, port: int, dest: Path, *options: str) -> tuple[int, str]:
    """Run ``pop3 fetch`` to completion: its exit status and its stderr."""
    err = tmp_path / "fetch.err"
    proc = start_fetch(port, USER, PASSWORD, dest, err, *options)
    code = proc.wait(timeout=60)
    return code, err.read_text()


def message(n: int, size: int = 200) -> bytes:
    """Exactly ``size`` octets, CRLF line ends, a dot line; ``n`` tells messages apart."""
    head = b"Subject: message %d\r\n\r\n.dot line\r\n" % n
    return head + b"x" * (size - len(head) - 2) + b"\r\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_deleted_only_what_is_stored(server: ScriptedServer, dest: Path) -> None:
    """The invariant: every message a session deleted is in ``dest``, byte for byte."""
    held = set(stored(dest).values())
    for session in server.sessions:
        for number in session.deleted:
            assert session.messages[number - 1][1] in held, (number, session.commands)


def account_records(dest: Path) -> dict[str, list[object]]:
    """This user's records in the state file (the only account in these tests)."""
    data = json.loads((dest / STATE_FILE).read_text())
    assert data["version"] == 3
    assert len(data["accounts"]) <= 1
    return next(iter(data["accounts"].values()), {})


# --- (a) one id listed twice ------------------------------------------------------------------


def test_a_listing_with_a_repeated_id_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    first, second = message(1), message(2)
    session = Session([("same", first), ("same", second), ("other", message(3))])
    with ScriptedServer([session]) as server:
        code, err = fetch(tmp_path, server.port, dest)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "the unique id 'same' for messages 1 and 2" in err
    assert "nothing was fetched or deleted" in err
    assert not [c for c in session.commands if c.startswith(("RETR", "DELE", "QUIT"))]
    assert session.deleted == []
    assert stored(dest) == {}


# --- (b) an id reused in a later session ------------------------------------------------------


def test_an_id_reused_in_a_later_session_is_fetched_before_it_is_deleted(tmp_path: Path) -> None:
    """Message-number ids: "1" names another message, of the same size, the next time."""
    dest = tmp_path / "dest"
    old, new = message(1), message(2)
    assert len(old) == len(new)
    sessions = [Session([("1", old)]), Session([("1", new)])]
    with ScriptedServer(sessions) as server:
        assert fetch(tmp_path, server.port, dest) == (0, "")
        assert fetch(tmp_path, server.port, dest) == (0, "")
    assert sessions[1].commands.index("RETR 1") < sessions[1].commands.index("DELE 1")
    assert sessions[0].deleted == sessions[1].deleted == [1]
    assert sorted(stored(dest).values()) == sorted([old, new])
    assert_deleted_only_what_is_stored(server, dest)
    assert account_records(dest) == {}  # QUIT +OK each time: the id was forgotten


def test_an_id_reused_after_an_unanswered_quit_is_fetched_before_it_is_deleted(
    tmp_path: Path,
) -> None:
    """The server deletes at QUIT but hangs up before its +OK: fetch cannot forget the id.

    Then the id comes back with the same size for another message: the id
    and the size match the record, only the bytes tell them apart.
    """
    dest = tmp_path / "dest"
    old, new = message(1), message(2)
    sessions = [Session([("1", old)], answer_quit=False), Session([("1", new)])]
    with ScriptedServer(sessions) as server:
        code, err = fetch(tmp_path, server.port, dest)
        assert code == 1 and "Traceback" not in err, err
        assert sessions[0].deleted == [1]
        # The failed run left its record in the journal, to be folded in by the next run.
        journal = [json.loads(line) for line in (dest / JOURNAL_FILE).read_text().splitlines()]
        assert [entry[1:] for entry in journal] == [["1", len(old), sha256(old)]]
        assert fetch(tmp_path, server.port, dest) == (0, "")
    assert sessions[1].commands.index("RETR 1") < sessions[1].commands.index("DELE 1")
    assert sorted(stored(dest).values()) == sorted([old, new])
    assert_deleted_only_what_is_stored(server, dest)


def test_the_same_message_after_an_unanswered_quit_is_deleted_and_not_stored_twice(
    tmp_path: Path,
) -> None:
    """Whether the first QUIT deleted it is unknown; it is still there, with the same bytes."""
    dest = tmp_path / "dest"
    mail = message(1)
    sessions = [Session([("a", mail)], answer_quit=False), Session([("a", mail)])]
    with ScriptedServer(sessions) as server:
        assert fetch(tmp_path, server.port, dest)[0] == 1
        assert fetch(tmp_path, server.port, dest) == (0, "")
    assert sessions[1].deleted == [1]
    assert list(stored(dest).values()) == [mail]
    assert list((dest / "tmp").iterdir()) == []
    assert account_records(dest) == {}


# --- (c) our own server: one unique part in new/ and in cur/ ----------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_files_of_one_unique_part_on_our_server_are_both_stored(
    tmp_path: Path, backend: str
) -> None:
    """``new/X`` and ``cur/X:2,S``, different bytes: two runs store both, delete none unread."""
    root = tmp_path / "root"
    source = root / USER
    for sub in ("tmp", "new", "cur"):
        (source / sub).mkdir(parents=True)
    unique = "1700000000.M1P1.test"
    (source / "new" / unique).write_bytes(b"Subject: in new\n\nfirst\n")
    (source / "cur" / f"{unique}:2,S").write_bytes(b"Subject: in cur\n\nsecond, longer\n")
    originals = [crlf(raw) for raw in stored(source).values()]
    users = write_users(tmp_path / "users", {USER: PASSWORD})
    dest = tmp_path / "dest"
    with PopServer(tmp_path, backend, users, root) as server:
        for _ in range(2):
            assert fetch(tmp_path, server.port, dest) == (0, "")
    assert Counter(stored(dest).values()) == Counter(originals)
    assert stored(source) == {}  # both deleted, each after it was stored


# --- the state file --------------------------------------------------------------------------


def test_keep_records_id_size_and_digest_and_skips_only_on_a_matching_size(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    first, grown = message(1, 200), message(2, 300)
    sessions = [
        Session([("a", first)]),
        Session([("a", first)]),
        Session([("a", grown)]),  # the id again, with another size: another message
    ]
    with ScriptedServer(sessions) as server:
        for _ in sessions:
            assert fetch(tmp_path, server.port, dest, "--keep") == (0, "")
    assert [c for c in sessions[0].commands if c.startswith(("RETR", "DELE"))] == ["RETR 1"]
    assert [c for c in sessions[1].commands if c.startswith(("RETR", "DELE"))] == []
    assert [c for c in sessions[2].commands if c.startswith(("RETR", "DELE"))] == ["RETR 1"]
    assert sorted(stored(dest).values()) == sorted([first, grown])
    assert account_records(dest) == {"a": [300, sha256(grown)]}


def test_after_keep_a_run_without_keep_retrieves_again_and_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    """Stored earlier is not enough to delete: the bytes listed now must be the ones stored."""
    dest = tmp_path / "dest"
    mails = [("a", message(1)), ("b", message(2))]
    sessions = [Session(list(mails)), Session(list(mails))]
    with ScriptedServer(sessions) as server:
        assert fetch(tmp_path, server.port, dest, "--keep") == (0, "")
        assert fetch(tmp_path, server.port, dest) == (0, "")
    commands = sessions[1].commands
    for n in (1, 2):
        assert commands.index(f"RETR {n}") < commands.index(f"DELE {n}")
    assert sessions[1].deleted == [1, 2]
    assert Counter(stored(dest).values()) == Counter(m for _, m in mails)
    assert list((dest / "tmp").iterdir()) == []
    assert account_records(dest) == {}


def write_version_1_state(dest: Path, port: int, uids: list[str], journal: list[str]) -> None:
    """A state file and journal as the version that kept unique ids only wrote them."""
    for sub in ("tmp", "new", "cur"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    account = f"127.0.0.1:{port}:{USER}"
    state = {"version": 1, "accounts": {account: uids}}
    (dest / STATE_FILE).write_text(json.dumps(state))
    (dest / JOURNAL_FILE).write_text("".join(json.dumps([account, u]) + "\n" for u in journal))


def test_version_1_state_skips_with_keep_but_never_deletes_on_an_id_alone(
    tmp_path: Path,
) -> None:
    """An upgraded ``--keep`` user downloads nothing again; without ``--keep`` RETR comes first."""
    dest = tmp_path / "dest"
    mails = [("a", message(1)), ("b", message(2)), ("c", message(3))]
    sessions = [Session(list(mails)), Session(list(mails))]
    with ScriptedServer(sessions) as server:
        # "a" in the file, "b" in the journal; "c" is new. The messages were
        # read and deleted locally since: only the ids are left.
        write_version_1_state(dest, server.port, ["a"], ["b"])
        assert fetch(tmp_path, server.port, dest, "--keep") == (0, "")
        assert [c for c in sessions[0].commands if c.startswith("RETR")] == ["RETR 3"]
        records = account_records(dest)
        assert records == {"a": [None, None], "b": [None, None], "c": [200, sha256(mails[2][1])]}
        assert (dest / JOURNAL_FILE).read_bytes() == b""

        assert fetch(tmp_path, server.port, dest) == (0, "")
    commands = sessions[1].commands
    for n in (1, 2, 3):
        assert commands.index(f"RETR {n}") < commands.index(f"DELE {n}")
    assert sessions[1].deleted == [1, 2, 3]
    # "a" and "b" were stored again: no bytes were left to compare them with.
    assert Counter(stored(dest).values()) == Counter(m for _, m in mails)
    assert_deleted_only_what_is_stored(server, dest)
    assert account_records(dest) == {}


def test_a_state_file_of_an_unknown_version_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / STATE_FILE).write_text('{"version": 4, "accounts": {}}')
    with ScriptedServer([]) as server:
        code, err = fetch(tmp_path, server.port, dest)
    assert code == 1
    assert "damaged or from another version" in err


def test_only_regular_files_vouch_for_a_stored_message(tmp_path: Path) -> None:
    """A link or a FIFO named like one of fetch's files is not read as a stored message.

    A link's target could hold anything (so a message would count as stored when it is
    not), and opening a FIFO would hang the run.
    """
    import os

    from pop3_cli._deliver import MaildirWriter, message_token

    writer = MaildirWriter(str(tmp_path / "dest"))
    token = message_token("127.0.0.1:110:alice", "uid-1")
    stored_bytes = b"Subject: stored\r\n\r\nhi\r\n"
    outside = tmp_path / "outside"
    outside.write_bytes(b"Subject: not ours\r\n\r\nx\r\n")
    new = tmp_path / "dest" / "new"
    (new / f"1.M1P1Q1X{token}.host").write_bytes(stored_bytes)
    os.symlink(outside, new / f"2.M2P2Q2X{token}.host")
    os.mkfifo(new / f"3.M3P3Q3X{token}.host")
    # Nor does a link whose name carries a digest (the name is trusted, the kind of file is not).
    os.symlink(outside, new / f"4.M4P4Q4X{token}H{'1' * 32}.host")
    (new / f"5.M5P5Q5X{token}H{'2' * 32}.host").write_bytes(b"Subject: stored as LF\n\nhi\n")
    assert writer.stored_digests(token) == {hashlib.sha256(stored_bytes).hexdigest(), "2" * 32}
