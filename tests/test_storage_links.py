"""Storage never follows a symbolic link planted in a maildrop, and lists every message file.

A user who may write to her own Maildir (or mbox directory) could plant links so that the
server, with its own rights, reads, truncates or creates files elsewhere. Here such links
are planted in real files in tmp dirs, and the files they point to are checked afterwards.
Files that share a Maildir unique part are all listed, each under an id of its own.
The wire tests run each binding's server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mailbox
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bindings import NAMES, serving
from helpers import crlf
from pop3_maildrop import (
    Backend,
    MaildirStorage,
    Maildrop,
    MaildropError,
    MaildropLocked,
    MboxStorage,
    Storage,
    UserDB,
    _maildir,
)
from served import RawClient

USER = "alice"
PASSWORD = "pw-for-alice"
SECRET = b"root:$6$not-for-users:19000:0:99999:7:::\n"


def make_maildir(root: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def put(root: Path, sub: str, name: str, raw: bytes, mtime: int | None = None) -> Path:
    path = root / sub / name
    path.write_bytes(raw)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def outside(tmp_path: Path, name: str = "secret", raw: bytes = SECRET) -> Path:
    """A file outside the maildrop that the server can read and the user cannot."""
    path = tmp_path / "elsewhere" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return path


def untouched(path: Path, raw: bytes = SECRET) -> bool:
    info = path.stat()
    return path.read_bytes() == raw and info.st_mtime_ns == 1_000_000_000 * 10**9


def read_all(drop: Maildrop, msg: int) -> bytes:
    return b"".join(drop.read(msg))


def uids_of(storage: Storage) -> list[str]:
    with storage.open(USER) as drop:
        return [m.uid for m in drop.messages]


def links_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pop3.maildrop" and "symbolic link" in r.getMessage()
    ]


def twin_uid(base: str, raw: bytes) -> str:
    return f"{base}-{hashlib.sha256(raw).hexdigest()[:16]}"


# --- Maildir: links ---------------------------------------------------------------------


def test_a_planted_message_link_is_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_maildir(tmp_path / "md")
    secret = outside(tmp_path)
    put(root, "new", "1.real.h", b"mine\n")
    (root / "new" / "2.x.h").symlink_to(secret)
    (root / "cur" / "3.y.h:2,S").symlink_to(secret)
    (root / "new" / "4.dangling.h").symlink_to(tmp_path / "nowhere")
    (root / "cur" / "5.dir.h").symlink_to(tmp_path / "elsewhere")
    caplog.set_level(logging.WARNING, "pop3.maildrop")
    with MaildirStorage(root).open(USER) as drop:
        assert [m.uid for m in drop.messages] == ["1.real.h"]
        assert read_all(drop, 1) == b"mine\n"
        assert drop.commit([1]) == []
    logged = links_logged(caplog)
    assert len(logged) == 4
    for name in ("2.x.h", "3.y.h:2,S", "4.dangling.h", "5.dir.h"):
        assert sum(repr(name) in line and str(root) in line for line in logged) == 1
    assert untouched(secret)
    assert not (tmp_path / "nowhere").exists()


def test_a_message_swapped_for_a_link_during_the_session_is_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_maildir(tmp_path / "md")
    secret = outside(tmp_path)
    put(root, "new", "1.a.h", b"one\n")
    put(root, "new", "2.b.h", b"two\n")
    with MaildirStorage(root).open(USER) as drop:
        (root / "new" / "1.a.h").unlink()
        (root / "new" / "1.a.h").symlink_to(secret)
        # Moved to cur/ under its info part and replaced by a link there too.
        os.rename(root / "new" / "2.b.h", root / "cur" / "2.b.h:2,S")
        (root / "cur" / "2.b.h:2,S").unlink()
        (root / "cur" / "2.b.h:2,S").symlink_to(secret)
        with pytest.raises(MaildropError):
            drop.read(1)
        with pytest.raises(MaildropError):
            drop.read(2)
        # QUIT removes the links themselves, never what they point to.
        assert drop.commit([1, 2]) == []
    assert "new/'1.a.h' is no longer a regular file" in caplog.text
    # Message 2 is not found again at all: the link has an inode of its own.
    assert "2.b.h" not in caplog.text
    assert untouched(secret)
    assert os.listdir(root / "new") == [] and os.listdir(root / "cur") == ["2.b.h:2,S"]


def test_a_fifo_is_not_a_message(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    os.mkfifo(root / "new" / "1.fifo.h")
    put(root, "new", "2.real.h", b"mine\n")
    assert uids_of(MaildirStorage(root)) == ["2.real.h"]


@pytest.mark.parametrize("cache", [_maildir.SIZE_CACHE + ".tmp", _maildir.SIZE_CACHE])
def test_a_size_cache_link_never_writes_through(tmp_path: Path, cache: str) -> None:
    root = make_maildir(tmp_path / "md")
    victim = outside(tmp_path, "victim")
    (root / cache).symlink_to(victim)
    put(root, "new", "1.a.h", b"one\n")
    with MaildirStorage(root).open(USER) as drop:
        assert drop.messages[0].size == 5
    assert untouched(victim)
    # The cache is written as a regular file of the Maildir's own, in place of the link.
    written = root / _maildir.SIZE_CACHE
    assert not written.is_symlink()
    assert written.read_text().startswith("pop3-sansio sizes 1\n1.a.h ")
    assert not os.path.lexists(root / (_maildir.SIZE_CACHE + ".tmp"))


def test_a_size_cache_link_is_not_read(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    put(root, "new", "1.a.h", b"one\n", mtime=1_700_000_000)
    info = (root / "new" / "1.a.h").stat()
    # A lying cache elsewhere: read through the link it would set the size.
    forged = outside(
        tmp_path, "forged", f"pop3-sansio sizes 1\n1.a.h 4 {info.st_mtime_ns} 99\n".encode()
    )
    (root / _maildir.SIZE_CACHE).symlink_to(forged)
    with MaildirStorage(root).open(USER) as drop:
        assert drop.messages[0].size == 5


@pytest.mark.parametrize("existing", [False, True])
def test_a_lock_file_link_is_refused_and_creates_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, existing: bool
) -> None:
    root = make_maildir(tmp_path / "md")
    put(root, "new", "1.a.h", b"one\n")
    target = outside(tmp_path, "victim") if existing else tmp_path / "created"
    (root / _maildir.LOCK_FILE).symlink_to(target)
    storage = MaildirStorage(root)
    with pytest.raises(MaildropError) as info:
        storage.open(USER)
    assert not isinstance(info.value, MaildropLocked)
    assert "lock file is a symbolic link" in str(info.value)
    assert repr(_maildir.LOCK_FILE) in "".join(links_logged(caplog))
    if existing:
        assert untouched(target)
    else:
        assert not os.path.lexists(target)
    # The refusal released everything: once the link is gone, the Maildir opens.
    (root / _maildir.LOCK_FILE).unlink()
    assert uids_of(storage) == ["1.a.h"]


@pytest.mark.parametrize("sub", ["new", "cur"])
def test_a_subdirectory_link_refuses_the_maildir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sub: str
) -> None:
    root = make_maildir(tmp_path / "md")
    elsewhere = make_maildir(tmp_path / "other")
    secret = put(elsewhere, sub, "1.theirs.h", SECRET)
    (root / sub).rmdir()
    (root / sub).symlink_to(elsewhere / sub)
    storage = MaildirStorage(root)
    with pytest.raises(MaildropError) as info:
        storage.open(USER)
    assert "subdirectory is a symbolic link" in str(info.value)
    assert repr(sub) in "".join(links_logged(caplog))
    assert secret.read_bytes() == SECRET
    (root / sub).unlink()
    (root / sub).mkdir()
    assert uids_of(storage) == []


def test_a_tmp_link_is_left_alone(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    (root / "tmp").rmdir()
    (root / "tmp").symlink_to(tmp_path / "nowhere")
    put(root, "new", "1.a.h", b"one\n")
    assert uids_of(MaildirStorage(root)) == ["1.a.h"]
    assert not os.path.lexists(tmp_path / "nowhere")


def test_a_per_user_maildir_follows_only_the_operators_path(tmp_path: Path) -> None:
    # root/<user> is the operator's entry (the user cannot write root/): a link
    # there is followed, as the configured root itself may be.
    real = make_maildir(tmp_path / "disk2" / USER)
    put(real, "new", "1.a.h", b"one\n")
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / USER).symlink_to(real)
    assert uids_of(MaildirStorage(tmp_path / "users", per_user=True)) == ["1.a.h"]


# --- Maildir: files sharing a unique part -----------------------------------------------


def twins(root: Path) -> tuple[bytes, bytes]:
    """new/X (the older file) and cur/X:2,S, the same unique part and different content."""
    older, newer = b"Subject: older\n\nfirst\n", b"Subject: newer\n\nsecond\n"
    put(root, "new", "1700000000.X.h", older, mtime=1_700_000_000)
    put(root, "cur", "1700000000.X.h:2,S", newer, mtime=1_700_000_100)
    return older, newer


def test_files_sharing_a_unique_part_are_all_listed_under_distinct_stable_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_maildir(tmp_path / "md")
    older, newer = twins(root)
    put(root, "new", "1700000001.Y.h", b"other\n")
    storage = MaildirStorage(root)
    expected = ["1700000000.X.h", twin_uid("1700000000.X.h", newer), "1700000001.Y.h"]
    with storage.open(USER) as drop:
        assert [m.uid for m in drop.messages] == expected
        assert [read_all(drop, 1), read_all(drop, 2)] == [older, newer]
        assert [m.size for m in drop.messages[:2]] == [len(crlf(older)), len(crlf(newer))]
    assert "listed as " + expected[1] in caplog.text
    # The same ids in the next session, and after a reader moves and flags both.
    assert uids_of(storage) == expected
    os.rename(root / "new" / "1700000000.X.h", root / "cur" / "1700000000.X.h:2,")
    os.rename(root / "cur" / "1700000000.X.h:2,S", root / "cur" / "1700000000.X.h:2,RS")
    assert uids_of(storage) == expected
    assert all(len(uid) <= 70 for uid in expected)


def test_files_sharing_a_unique_part_are_deleted_independently(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    older, _ = twins(root)
    storage = MaildirStorage(root)
    with storage.open(USER) as drop:
        assert drop.commit([2]) == []
    assert os.listdir(root / "cur") == [] and os.listdir(root / "new") == ["1700000000.X.h"]
    with storage.open(USER) as drop:
        assert [m.uid for m in drop.messages] == ["1700000000.X.h"]
        assert read_all(drop, 1) == older
    twins(root)
    with storage.open(USER) as drop:
        assert drop.commit([1]) == []
    assert os.listdir(root / "new") == [] and os.listdir(root / "cur") == ["1700000000.X.h:2,S"]


def test_a_long_unique_part_shared_by_two_files_keeps_ids_within_70(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    unique = "1700000000." + "L" * 59  # 70 characters: a valid id by itself
    put(root, "new", unique, b"a\n", mtime=1)
    put(root, "cur", unique + ":2,S", b"b\n", mtime=2)
    uids = uids_of(MaildirStorage(root))
    assert uids == [unique, twin_uid(unique[:53], b"b\n")]
    assert len(uids[1]) == 70


def test_identical_twins_still_get_distinct_ids(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    put(root, "new", "5.T.h", b"same\n", mtime=1)
    put(root, "cur", "5.T.h:2,S", b"same\n", mtime=2)
    put(root, "cur", "5.T.h:2,RS", b"same\n", mtime=3)
    uids = uids_of(MaildirStorage(root))
    twin = twin_uid("5.T.h", b"same\n")
    assert uids == ["5.T.h", twin, twin + ".2"]


def test_a_moved_twin_is_found_by_its_inode_not_its_unique_part(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    older, newer = twins(root)
    with MaildirStorage(root).open(USER) as drop:
        # Another reader moves new/X next to its twin in cur/ and flags both:
        # both must be found again, and the unique part alone would find the
        # same file for the two.
        os.rename(root / "new" / "1700000000.X.h", root / "cur" / "1700000000.X.h:2,T")
        os.rename(root / "cur" / "1700000000.X.h:2,S", root / "cur" / "1700000000.X.h:2,RS")
        assert read_all(drop, 1) == older
        assert read_all(drop, 2) == newer
        assert drop.commit([1]) == []
    assert os.listdir(root / "cur") == ["1700000000.X.h:2,RS"]


def test_one_file_seen_in_new_and_cur_is_one_message(tmp_path: Path) -> None:
    # What a listing sees when a message moves from new/ to cur/ between the
    # two directories: the same file (one inode) twice.
    root = make_maildir(tmp_path / "md")
    put(root, "new", "7.M.h", b"moving\n")
    os.link(root / "new" / "7.M.h", root / "cur" / "7.M.h:2,S")
    with MaildirStorage(root).open(USER) as drop:
        assert [m.uid for m in drop.messages] == ["7.M.h"]
        assert read_all(drop, 1) == b"moving\n"


# --- mbox --------------------------------------------------------------------------------


MBOX = b"From a@example.org Thu Jan  1 00:00:00 2026\nSubject: a\n\nbody\n\n"


@pytest.mark.parametrize("target_exists", [True, False])
def test_an_mbox_link_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, target_exists: bool
) -> None:
    victim = outside(tmp_path, "victim", MBOX) if target_exists else tmp_path / "created"
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / USER).symlink_to(victim)
    storage = MboxStorage(tmp_path / "mail", per_user=True)
    with pytest.raises(MaildropError) as info:
        storage.open(USER)
    assert not isinstance(info.value, MaildropLocked)
    assert "file is a symbolic link" in str(info.value)
    assert "symbolic link" in caplog.text
    if target_exists:
        assert untouched(victim, MBOX)
    else:
        assert not os.path.lexists(victim)
    assert not os.path.lexists(str(victim) + ".lock")


def test_an_mbox_dot_lock_link_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(MBOX)
    victim = outside(tmp_path, "victim")
    Path(str(path) + ".lock").symlink_to(victim)
    storage = MboxStorage(path)
    with pytest.raises(MaildropError) as info:
        storage.open(USER)
    assert not isinstance(info.value, MaildropLocked)
    assert "dot-lock is a symbolic link" in str(info.value)
    assert "dot-lock" in caplog.text
    assert untouched(victim)
    assert path.read_bytes() == MBOX
    Path(str(path) + ".lock").unlink()
    assert len(uids_of(storage)) == 1


def test_an_mbox_swapped_for_a_link_while_opened_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(MBOX)
    victim = outside(tmp_path, "victim", MBOX)
    real_mbox = mailbox.mbox

    def swapped_first(name: str, create: bool = True) -> mailbox.mbox:
        # The user's move, between the check and mailbox's own open by name.
        path.unlink()
        path.symlink_to(victim)
        return real_mbox(name, create=create)

    monkeypatch.setattr(mailbox, "mbox", swapped_first)
    with pytest.raises(MaildropError) as info:
        MboxStorage(path).open(USER)
    assert "replaced while it was opened" in str(info.value)
    assert untouched(victim, MBOX)
    assert not os.path.lexists(str(victim) + ".lock")


def test_an_mbox_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "mbox")
    with pytest.raises(MaildropError):
        MboxStorage(tmp_path / "mbox").open(USER)


# --- on the wire ---------------------------------------------------------------------------


@pytest.fixture(params=NAMES)
def binding(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def serve(binding: str, storage: Storage) -> Iterator[int]:
    """``binding``'s server for ``storage`` on 127.0.0.1; yields the port."""
    backend = Backend(UserDB.from_pairs({USER: PASSWORD}), storage)
    with serving(binding, backend, failed_login_delay=0) as port:
        yield port


def test_a_planted_link_is_never_served(binding: str, tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    secret = outside(tmp_path)
    put(root, "new", "1.real.h", b"Subject: mine\n\nhello\n")
    (root / "new" / "2.x.h").symlink_to(secret)
    received = b""
    with serve(binding, MaildirStorage(root)) as port:
        with RawClient(port) as client:
            assert client.login(USER, PASSWORD).startswith(b"+OK")
            assert client.command(b"STAT") == b"+OK 1 %d\r\n" % len(
                crlf(b"Subject: mine\n\nhello\n")
            )
            assert client.command(b"UIDL").startswith(b"+OK")
            received += client.multiline()
            received += client.retr(1)
            received += client.command(b"RETR 2")
            assert client.command(b"QUIT").startswith(b"+OK")
    assert b"2.x.h" not in received and SECRET not in received
    assert untouched(secret)


def test_twins_are_retrieved_and_deleted_independently(binding: str, tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "md")
    older, newer = twins(root)
    twin = twin_uid("1700000000.X.h", newer)
    with serve(binding, MaildirStorage(root)) as port:
        with RawClient(port) as client:
            assert client.login(USER, PASSWORD).startswith(b"+OK")
            assert client.command(b"UIDL").startswith(b"+OK")
            assert client.multiline() == b"1 1700000000.X.h\r\n2 %s\r\n" % twin.encode()
            assert client.retr(1) == crlf(older)
            assert client.retr(2) == crlf(newer)
            assert client.command(b"DELE 2").startswith(b"+OK")
            assert client.command(b"QUIT").startswith(b"+OK")
        with RawClient(port) as client:
            assert client.login(USER, PASSWORD).startswith(b"+OK")
            assert client.command(b"UIDL").startswith(b"+OK")
            assert client.multiline() == b"1 1700000000.X.h\r\n"
            assert client.retr(1) == crlf(older)
            assert client.command(b"QUIT").startswith(b"+OK")
    assert os.listdir(root / "new") == ["1700000000.X.h"] and os.listdir(root / "cur") == []


@pytest.mark.parametrize("planted", ["maildir lock", "mbox", "mbox dot-lock"])
def test_a_planted_link_fails_the_login_and_creates_nothing(
    binding: str, tmp_path: Path, planted: str
) -> None:
    target = tmp_path / "created"
    storage: Storage
    if planted == "maildir lock":
        root = make_maildir(tmp_path / "md")
        (root / _maildir.LOCK_FILE).symlink_to(target)
        storage = MaildirStorage(root)
    elif planted == "mbox":
        (tmp_path / "mbox").symlink_to(target)
        storage = MboxStorage(tmp_path / "mbox")
    else:
        (tmp_path / "mbox").write_bytes(MBOX)
        (tmp_path / "mbox.lock").symlink_to(target)
        storage = MboxStorage(tmp_path / "mbox")
    with serve(binding, storage) as port:
        with RawClient(port) as client:
            assert client.login(USER, PASSWORD).startswith(b"-ERR [SYS/TEMP]")
            assert client.command(b"QUIT").startswith(b"+OK")
    assert not os.path.lexists(target)
