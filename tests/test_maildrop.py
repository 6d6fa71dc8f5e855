"""pop3_maildrop storage: every backend through the same contract, then each one's own rules.

The contract is RFC 1939's: an exclusive lock per session (section 4), a
snapshot of CRLF sizes (section 11) and persistent unique ids (section 7)
taken at open, and removal only at commit (section 6).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pop3_maildrop
from pop3_maildrop import (
    MaildirStorage,
    Maildrop,
    MaildropError,
    MaildropLocked,
    MboxStorage,
    MemoryStorage,
    Storage,
    _base,
    _maildir,
    _mbox,
)

SRC = Path(__file__).resolve().parent.parent / "src"

MESSAGES = [
    b"Subject: one\n\nbody one\n",
    b"Subject: two\r\n\r\nbody two\r\n",
    b"Subject: three\n\nno final newline",
    b"Subject: four\n\n.dot line\n\nmixed\r\nends\n",
]


def crlf_size(raw: bytes) -> int:
    """RFC 1939 section 11, computed independently of ``message_size``."""
    converted = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if converted and not converted.endswith(b"\r\n"):  # an empty message stays empty
        converted += b"\r\n"
    return len(converted)


def read_all(drop: Maildrop, msg: int, chunk_size: int = 65536) -> bytes:
    chunks = list(drop.read(msg, chunk_size))
    assert all(type(c) is bytes and 0 < len(c) <= chunk_size for c in chunks)
    return b"".join(chunks)


def other_process(code: str) -> str:
    """Run ``code`` in a fresh interpreter; return what it printed."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


# --- the backends, behind one harness ------------------------------------------------


class Harness:
    """One backend: how to make its storage and put mail into it from outside."""

    name = ""
    user = "alice"
    storage: Storage

    def deliver(self, raw: bytes) -> None:
        """Add a message the way a delivery agent would (no session open)."""
        raise NotImplementedError

    def deliver_during_session(self, raw: bytes) -> None:
        self.deliver(raw)

    def stored(self, raw: bytes) -> bytes:
        """The bytes the backend keeps for a delivered ``raw``."""
        return raw

    def storage_code(self) -> str:
        """A Python expression building the same storage in another process."""
        raise NotImplementedError

    def remove_externally(self, index: int) -> bool:
        """Remove the index-th delivered message as another program would; False if n/a."""
        return False


class MaildirHarness(Harness):
    name = "maildir"

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "Maildir"
        self.storage = MaildirStorage(self.root)
        self.names: list[str] = []

    def deliver(self, raw: bytes) -> None:
        # Names with increasing time prefixes: delivery order is snapshot order.
        n = len(self.names)
        name = f"{1_700_000_000 + n}.M{n}P1Q1.host"
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "tmp" / name).write_bytes(raw)
        os.rename(self.root / "tmp" / name, self.root / "new" / name)
        self.names.append(name)

    def storage_code(self) -> str:
        return f"MaildirStorage({str(self.root)!r})"

    def remove_externally(self, index: int) -> bool:
        (self.root / "new" / self.names[index]).unlink()
        return True


class MboxHarness(Harness):
    name = "mbox"

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "mbox"
        self.storage = MboxStorage(self.path)

    def deliver(self, raw: bytes) -> None:
        box = mailbox.mbox(self.path)
        box.lock()
        box.add(raw)
        box.close()

    def deliver_during_session(self, raw: bytes) -> None:
        # Another process: in this one, closing any descriptor of the file
        # would drop the session's lockf lock (POSIX).
        other_process(
            f"import mailbox; b = mailbox.mbox({str(self.path)!r}); b.add({raw!r}); b.close()"
        )

    def stored(self, raw: bytes) -> bytes:
        return raw if raw.endswith(b"\n") else raw + b"\n"  # mailbox.mbox adds it

    def storage_code(self) -> str:
        return f"MboxStorage({str(self.path)!r})"


class MemoryHarness(Harness):
    name = "memory"

    def __init__(self, tmp: Path) -> None:
        self.memory = MemoryStorage()
        self.storage = self.memory
        self.uids: list[str] = []

    def deliver(self, raw: bytes) -> None:
        self.uids.append(self.memory.add(self.user, raw))

    def remove_externally(self, index: int) -> bool:
        self.memory._remove(self.user, {self.uids[index]})
        return True


@pytest.fixture(params=[MaildirHarness, MboxHarness, MemoryHarness], ids=lambda c: c.name)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    harness: Harness = request.param(tmp_path)
    return harness


@pytest.fixture(params=[MaildirHarness, MboxHarness], ids=lambda c: c.name)
def fh(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    """The file backends: their locks must hold across processes."""
    harness: Harness = request.param(tmp_path)
    return harness


def lock_state_elsewhere(h: Harness) -> str:
    code = h.storage_code()
    return other_process(
        "from pop3_maildrop import *\n"
        f"s = {code}\n"
        "try:\n"
        f"    s.open({h.user!r}).close()\n"
        "except MaildropLocked:\n"
        "    print('locked')\n"
        "else:\n"
        "    print('free')\n"
    )


# --- the contract ----------------------------------------------------------------------


def test_public_api() -> None:
    assert sorted(pop3_maildrop.__all__) == sorted(
        [
            "Backend",  # added by the bindings' author (_backend.py)
            "MaildirStorage",
            "Maildrop",
            "MaildropError",
            "MaildropLocked",
            "MboxStorage",
            "MemoryStorage",
            "PostgresStorage",
            "Storage",
            "StorageUnavailableError",
            "UserDB",
            "HASH_SCHEMES",  # pop3 pw (_users.py)
            "hash_password",
            "verify_password",
            "read_eml_dir",  # for pop3_testing and pop3 serve --eml-dir (_eml.py)
        ]
    )
    assert issubclass(MaildropLocked, MaildropError)


def test_empty_maildrop(h: Harness) -> None:
    with h.storage.open(h.user) as drop:
        assert drop.messages == ()
        assert drop.commit([]) == []


def test_sizes_are_crlf_octets_and_read_returns_stored_bytes(h: Harness) -> None:
    for raw in MESSAGES:
        h.deliver(raw)
    with h.storage.open(h.user) as drop:
        assert [m.size for m in drop.messages] == [crlf_size(raw) for raw in MESSAGES]
        for n, raw in enumerate(MESSAGES, 1):
            for chunk_size in (1, 3, 64, 65536):
                assert read_all(drop, n, chunk_size) == h.stored(raw)


def test_unique_ids_are_valid_distinct_and_stable(h: Harness) -> None:
    for raw in MESSAGES:
        h.deliver(raw)
    with h.storage.open(h.user) as drop:
        first = [m.uid for m in drop.messages]
    with h.storage.open(h.user) as drop:
        assert [m.uid for m in drop.messages] == first
    assert len(set(first)) == len(first)
    assert all(_base.is_valid_uid(uid) for uid in first)


def test_message_delivered_during_session_is_not_in_it(h: Harness) -> None:
    h.deliver(MESSAGES[0])
    with h.storage.open(h.user) as drop:
        before = drop.messages
        h.deliver_during_session(MESSAGES[1])
        assert drop.messages == before
        assert len(drop.messages) == 1
    with h.storage.open(h.user) as drop:
        assert len(drop.messages) == 2
        assert drop.messages[0] == before[0]


def test_second_session_is_locked_out_until_close(h: Harness) -> None:
    drop = h.storage.open(h.user)
    with pytest.raises(MaildropLocked):
        h.storage.open(h.user)
    drop.close()
    drop.close()  # idempotent
    with h.storage.open(h.user), pytest.raises(MaildropLocked):
        h.storage.open(h.user)
    h.storage.open(h.user).close()


def test_lock_holds_against_another_process(fh: Harness) -> None:
    h = fh
    h.deliver(MESSAGES[0])
    drop = h.storage.open(h.user)
    try:
        # A failed second open in this process must not weaken the lock
        # (closing a second descriptor would drop a POSIX lockf lock).
        with pytest.raises(MaildropLocked):
            h.storage.open(h.user)
        assert lock_state_elsewhere(h) == "locked"
    finally:
        drop.close()
    assert lock_state_elsewhere(h) == "free"


def test_commit_removes_exactly_the_given_messages(h: Harness) -> None:
    for raw in MESSAGES:
        h.deliver(raw)
    with h.storage.open(h.user) as drop:
        uids = [m.uid for m in drop.messages]
        assert drop.commit([3, 1]) == []
    with h.storage.open(h.user) as drop:
        assert [m.uid for m in drop.messages] == [uids[1], uids[3]]
        assert read_all(drop, 1) == h.stored(MESSAGES[1])
        assert read_all(drop, 2) == h.stored(MESSAGES[3])


def test_commit_of_an_already_removed_message_counts_as_removed(h: Harness) -> None:
    for raw in MESSAGES[:3]:
        h.deliver(raw)
    with h.storage.open(h.user) as drop:
        assert drop.commit([2, 2]) == []
        assert drop.commit([2]) == []  # removed by this session already
        with pytest.raises(MaildropError):
            drop.read(2)
        if h.remove_externally(0):  # and by someone else
            assert drop.commit([1]) == []
    with h.storage.open(h.user) as drop:
        expected = 1 if h.name != "mbox" else 2
        assert len(drop.messages) == expected


def test_bad_numbers_and_closed_maildrop(h: Harness) -> None:
    h.deliver(MESSAGES[0])
    drop = h.storage.open(h.user)
    for bad in (0, 2, -1):
        with pytest.raises(ValueError):
            drop.read(bad)
        with pytest.raises(ValueError):
            drop.commit([1, bad])
    with pytest.raises(ValueError):
        drop.read(1, 0)
    drop.close()
    with pytest.raises(MaildropError):
        drop.read(1)
    with pytest.raises(MaildropError):
        drop.commit([1])
    with h.storage.open(h.user) as drop:
        assert len(drop.messages) == 1  # nothing was removed


def test_unread_iterator_can_be_dropped(h: Harness) -> None:
    h.deliver(MESSAGES[0])
    with h.storage.open(h.user) as drop:
        chunks = drop.read(1, 4)
        assert next(chunks) == MESSAGES[0][:4]
        del chunks
        unread = drop.read(1)
        del unread


def test_repr_names_the_storage(h: Harness) -> None:
    assert type(h.storage).__name__ in repr(h.storage)


def test_backend_joins_users_and_storage() -> None:
    storage = MemoryStorage({"alice": [b"hi\n"]})
    users = pop3_maildrop.UserDB.from_pairs({"alice": "secret"})
    backend = pop3_maildrop.Backend(users, storage)
    assert "UserDB" in repr(backend) and "MemoryStorage" in repr(backend)
    assert backend.check_password("alice", "secret")
    assert not backend.check_password("alice", "wrong")
    assert backend.secret("alice") == "secret"
    assert not backend.check_token("alice", "tok")
    with backend.open("alice") as drop:
        assert len(drop.messages) == 1
    tokens = pop3_maildrop.Backend(users, storage, check_token=lambda u, t: t == "tok-" + u)
    assert tokens.check_token("alice", "tok-alice")
    assert not tokens.check_token("alice", "tok-bob")


# --- shared helpers ----------------------------------------------------------------------


def test_make_unique_adds_occurrence_suffixes() -> None:
    assert _base.make_unique(["a", "b", "a", "a", "a.2"]) == ["a", "b", "a.2", "a.3", "a.2.2"]
    long = "x" * 70
    assert _base.make_unique([long, long]) == [long, "x" * 60 + ".2"]


def test_file_chunks_maps_read_errors() -> None:
    class Broken:
        closed = False

        def read(self, size: int, /) -> bytes:
            raise OSError(errno.EIO, "disk on fire")

        def close(self) -> None:
            self.closed = True

    broken = Broken()
    chunks = _base.FileChunks(broken, 10)
    with pytest.raises(MaildropError):
        next(chunks)
    assert broken.closed
    assert list(chunks) == []


def test_fsync_directory_is_best_effort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _base.fsync_directory(str(tmp_path / "missing"))

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, "no")

    monkeypatch.setattr(os, "fsync", fail)
    _base.fsync_directory(str(tmp_path))


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b", "a..b", "nul\0", "../x"])
@pytest.mark.parametrize("cls", [MaildirStorage, MboxStorage])
def test_per_user_rejects_names_that_leave_the_root(
    tmp_path: Path, cls: type[MaildirStorage | MboxStorage], name: str
) -> None:
    with pytest.raises(MaildropError):
        cls(tmp_path, per_user=True).open(name)


# --- Maildir -------------------------------------------------------------------------------


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


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose CRLF size was computed by reading them."""
    calls: list[str] = []
    real = _maildir._measure

    def spy(dir_fd: int, name: str) -> int:
        calls.append(name)
        return real(dir_fd, name)

    monkeypatch.setattr(_maildir, "_measure", spy)
    return calls


def uids_of(storage: Storage, user: str = "u") -> list[str]:
    with storage.open(user) as drop:
        return [m.uid for m in drop.messages]


def read_cache(root: Path) -> dict[str, tuple[int, int, int]]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _maildir._read_cache(fd)
    finally:
        os.close(fd)


def test_maildir_created_and_uid_is_the_unique_part(tmp_path: Path) -> None:
    storage = MaildirStorage(tmp_path / "md")
    assert uids_of(storage) == []
    assert sorted(os.listdir(tmp_path / "md")) == [_maildir.LOCK_FILE, "cur", "new", "tmp"]
    put(tmp_path / "md", "new", "1700000000.M1P2.host", b"x\n")
    assert uids_of(storage) == ["1700000000.M1P2.host"]


def test_maildir_uid_survives_move_to_cur_and_flag_changes(tmp_path: Path) -> None:
    root = make_maildir(tmp_path)
    storage = MaildirStorage(root)
    put(root, "new", "1700000000.A.host,S=2", b"a\n")
    put(root, "new", "1700000001.B.host", b"b\n")
    before = uids_of(storage)
    assert before == ["1700000000.A.host", "1700000001.B.host"]
    os.rename(root / "new" / "1700000000.A.host,S=2", root / "cur" / "1700000000.A.host,S=2:2,")
    assert uids_of(storage) == before
    os.rename(
        root / "cur" / "1700000000.A.host,S=2:2,", root / "cur" / "1700000000.A.host,S=2:2,RS"
    )
    assert uids_of(storage) == before
    # Opening does not move anything from new/ to cur/ (POP3 does not need it).
    assert os.listdir(root / "new") == ["1700000001.B.host"]


def test_maildir_finds_a_message_moved_during_the_session(tmp_path: Path) -> None:
    root = make_maildir(tmp_path)
    put(root, "new", "1.A.h", b"first\n")
    put(root, "new", "2.B.h", b"second\n")
    put(root, "new", "3.C.h", b"third\n")
    with MaildirStorage(root).open("u") as drop:
        os.rename(root / "new" / "1.A.h", root / "cur" / "1.A.h:2,S")
        os.rename(root / "new" / "2.B.h", root / "cur" / "2.B.h:2,S")
        assert read_all(drop, 1) == b"first\n"
        os.rename(root / "cur" / "1.A.h:2,S", root / "cur" / "1.A.h:2,RS")
        assert read_all(drop, 1) == b"first\n"
        (root / "new" / "3.C.h").unlink()
        with pytest.raises(MaildropError):
            drop.read(3)
        assert drop.commit([1, 2, 3]) == []
    assert os.listdir(root / "cur") == []
    assert os.listdir(root / "new") == []


def test_maildir_order_is_oldest_first_and_ignores_non_messages(tmp_path: Path) -> None:
    root = make_maildir(tmp_path)
    put(root, "cur", "20.b.h:2,S", b"3\n")
    put(root, "new", "10.z.h", b"1\n")
    put(root, "new", "20.a.h", b"2\n")
    put(root, "new", "custom-name", b"0\n", mtime=5)  # no time prefix: its mtime counts
    put(root, "new", ".hidden", b"not mail\n")
    (root / "new" / "subdir").mkdir()
    assert uids_of(MaildirStorage(root)) == ["custom-name", "10.z.h", "20.a.h", "20.b.h"]


def test_maildir_odd_or_long_unique_parts_are_hashed(tmp_path: Path) -> None:
    root = make_maildir(tmp_path)
    long = "1." + "x" * 69
    exactly_70 = "2." + "y" * 68
    put(root, "new", long + ",S=1", b"a\n")
    put(root, "new", exactly_70, b"b\n")
    put(root, "new", "3.with space", b"c\n")
    put(root, "new", "4.caf\u00e9", b"d\n")
    put(root, "new", ",W=3:2,", b"e\n", mtime=6)  # empty unique part

    def digest(unique: str) -> str:
        return hashlib.sha256(os.fsencode(unique)).hexdigest()[:40]

    uids = uids_of(MaildirStorage(root))
    assert uids == [
        digest(long),
        exactly_70,
        digest("3.with space"),
        digest("4.caf\u00e9"),
        digest(""),  # no time prefix: ordered by its mtime
    ]
    assert uids_of(MaildirStorage(root)) == uids


def test_maildir_uid_collision_with_a_digest_stays_unique(tmp_path: Path) -> None:
    root = make_maildir(tmp_path)
    odd = "1.odd name"
    put(root, "new", odd, b"a\n")
    put(root, "new", hashlib.sha256(odd.encode()).hexdigest()[:40], b"b\n", mtime=2)
    uids = uids_of(MaildirStorage(root))
    assert len(set(uids)) == 2
    assert uids[1] == uids[0] + ".2"


def test_maildir_virtual_size_tag_is_honoured(tmp_path: Path, measured: list[str]) -> None:
    root = make_maildir(tmp_path)
    put(root, "cur", "1.a.h,S=5,W=999:2,S", b"abc\n")
    put(root, "new", "custom,W=42", b"abc\n", mtime=3)  # needs a stat for its mtime only
    put(root, "new", "2.b.h,W=12x", b"abc\n")  # not a number: measured
    with MaildirStorage(root).open("u") as drop:
        assert [m.size for m in drop.messages] == [999, 5, 42]
    assert measured == ["2.b.h,W=12x"]


def test_maildir_size_cache_is_reused_and_invalidated(tmp_path: Path, measured: list[str]) -> None:
    root = make_maildir(tmp_path)
    put(root, "new", "1.a.h", b"one\n")
    put(root, "new", "2.b.h", b"two\ntwo\n")
    storage = MaildirStorage(root)
    uids = uids_of(storage)
    assert sorted(measured) == ["1.a.h", "2.b.h"]
    cache = (root / _maildir.SIZE_CACHE).read_text()
    assert cache.startswith("pop3-sansio sizes 1\n")
    assert "1.a.h" in cache and "2.b.h" in cache
    assert not (root / (_maildir.SIZE_CACHE + ".tmp")).exists()

    measured.clear()
    assert uids_of(storage) == uids
    assert measured == []

    # An edited file (new size and mtime) is measured again.
    put(root, "new", "2.b.h", b"two\ntwo\ntwo\n", mtime=1_800_000_000)
    with storage.open("u") as drop:
        assert [m.size for m in drop.messages] == [5, 15]
    assert measured == ["2.b.h"]

    # A message that is gone costs no rewrite (the usual case: mail deleted at QUIT);
    # its entry leaves the cache when the cache is next written, for a new message.
    (root / "new" / "1.a.h").unlink()
    before = (root / _maildir.SIZE_CACHE).stat()
    measured.clear()
    assert uids_of(storage) == ["2.b.h"]
    assert measured == []
    after = (root / _maildir.SIZE_CACHE).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    put(root, "new", "3.c.h", b"three\n")
    assert uids_of(storage) == ["2.b.h", "3.c.h"]
    assert measured == ["3.c.h"]
    assert sorted(read_cache(root)) == ["2.b.h", "3.c.h"]


def test_maildir_size_cache_drops_the_entries_of_messages_gone_once_they_pile_up(
    tmp_path: Path, measured: list[str]
) -> None:
    root = make_maildir(tmp_path)
    count = _maildir._CACHE_SLACK + 3
    for n in range(count):
        put(root, "new", f"{n}.m.h", b"x\n")
    storage = MaildirStorage(root)
    assert len(uids_of(storage)) == count
    assert len(read_cache(root)) == count
    for n in range(_maildir._CACHE_SLACK):  # up to the slack: kept
        (root / "new" / f"{n}.m.h").unlink()
    assert len(uids_of(storage)) == 3
    assert len(read_cache(root)) == count
    (root / "new" / f"{_maildir._CACHE_SLACK}.m.h").unlink()  # one more: rewritten
    assert len(uids_of(storage)) == 2
    assert sorted(read_cache(root)) == [f"{n}.m.h" for n in (count - 2, count - 1)]
    assert sorted(measured) == sorted(f"{n}.m.h" for n in range(count))  # each once


@pytest.mark.parametrize(
    "corrupt",
    [
        b"",
        b"\xff\xfe garbage",
        b"some other header\n",
        b"pop3-sansio sizes 1\n1.a.h 4 5\n",
        b"pop3-sansio sizes 1\n1.a.h 4 5 x\n",
        b"pop3-sansio sizes 1\n1.a.h 4 5 6",  # no final newline: a torn write
    ],
)
def test_maildir_corrupt_size_cache_is_ignored_and_rebuilt(
    tmp_path: Path, measured: list[str], corrupt: bytes
) -> None:
    root = make_maildir(tmp_path)
    put(root, "new", "1.a.h", b"one\n")
    (root / _maildir.SIZE_CACHE).write_bytes(corrupt)
    with MaildirStorage(root).open("u") as drop:
        assert drop.messages[0].size == 5
    assert measured == ["1.a.h"]
    assert read_cache(root) != {}


def test_maildir_empty_cache_file_and_cache_that_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, measured: list[str]
) -> None:
    root = make_maildir(tmp_path)
    (root / _maildir.SIZE_CACHE).write_text("pop3-sansio sizes 1\n")
    assert read_cache(root) == {}
    put(root, "new", "1.a.h", b"one\n")

    def fail(src: str, dst: str, **dir_fds: int) -> None:
        raise OSError(errno.EROFS, "read-only")

    monkeypatch.setattr(os, "replace", fail)
    with MaildirStorage(root).open("u") as drop:
        assert drop.messages[0].size == 5  # a lost speed-up only
    assert not (root / (_maildir.SIZE_CACHE + ".tmp")).exists()


def test_maildir_message_vanishing_while_measured_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_maildir(tmp_path)
    put(root, "new", "1.a.h", b"one\n")
    put(root, "new", "2.b.h", b"two\n")

    def gone(dir_fd: int, name: str) -> int:
        if name == "1.a.h":
            raise FileNotFoundError(errno.ENOENT, "gone", name)
        return 5

    monkeypatch.setattr(_maildir, "_measure", gone)
    assert uids_of(MaildirStorage(root)) == ["2.b.h"]


def test_maildir_unreadable_message_fails_the_open_and_releases_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_maildir(tmp_path)
    put(root, "new", "1.a.h", b"one\n")

    def denied(dir_fd: int, name: str) -> int:
        raise PermissionError(errno.EACCES, "denied", name)

    monkeypatch.setattr(_maildir, "_measure", denied)
    storage = MaildirStorage(root)
    with pytest.raises(MaildropError) as info:
        storage.open("u")
    assert not isinstance(info.value, MaildropLocked)
    monkeypatch.undo()
    assert uids_of(storage) == ["1.a.h"]


def test_maildir_open_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not creating, and nothing there.
    missing = MaildirStorage(tmp_path / "missing", create=False)
    with pytest.raises(MaildropError):
        missing.open("u")
    # The lock file exists but new/ does not: the listing fails, the lock is released.
    (tmp_path / "half").mkdir()
    half = MaildirStorage(tmp_path / "half", create=False)
    with pytest.raises(MaildropError):
        half.open("u")
    make_maildir(tmp_path / "half")
    assert uids_of(half) == []
    # The root is a file: cannot be created.
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(MaildropError):
        MaildirStorage(tmp_path / "file").open("u")
    # The lock file cannot be opened (it is a directory).
    make_maildir(tmp_path / "lockdir")
    (tmp_path / "lockdir" / _maildir.LOCK_FILE).mkdir()
    with pytest.raises(MaildropError):
        MaildirStorage(tmp_path / "lockdir").open("u")

    # flock fails for a reason other than contention.
    def broken(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(MaildropError) as info:
        half.open("u")
    assert not isinstance(info.value, MaildropLocked)
    monkeypatch.undo()
    assert uids_of(half) == []


def test_maildir_flock_held_elsewhere(tmp_path: Path) -> None:
    # Another open file description of the lock file (as another process
    # would have) conflicts with ours even inside this process (Linux flock).
    root = make_maildir(tmp_path)
    fd = os.open(root / _maildir.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(MaildropLocked):
            MaildirStorage(root).open("u")
    finally:
        os.close(fd)
    assert uids_of(MaildirStorage(root)) == []


def test_maildir_per_user(tmp_path: Path) -> None:
    storage = MaildirStorage(tmp_path, per_user=True)
    assert storage.path("alice") == str(tmp_path / "alice")
    with storage.open("alice") as a, storage.open("bob") as b:
        assert a.messages == b.messages == ()
    put(tmp_path / "alice", "new", "1.x.h", b"hi\n")
    assert uids_of(storage, "alice") == ["1.x.h"]
    assert uids_of(storage, "bob") == []
    # Without per_user every user shares the one Maildir (and its lock).
    shared = MaildirStorage(tmp_path / "alice")
    with shared.open("alice"), pytest.raises(MaildropLocked):
        shared.open("bob")


def test_maildir_the_same_directory_by_two_paths_is_one_lock(tmp_path: Path) -> None:
    make_maildir(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with MaildirStorage(tmp_path / "real").open("u"), pytest.raises(MaildropLocked):
        MaildirStorage(tmp_path / "link").open("u")


def unlistable(path: object) -> None:
    raise OSError(errno.EIO, "cannot list")


def test_maildir_read_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_maildir(tmp_path)
    put(root, "new", "1.a.h", b"one\n")
    with MaildirStorage(root).open("u") as drop:
        real_open_file = _maildir._open_file

        def denied(dir_fd: int, name: str) -> int:
            if name == "1.a.h:2,S":
                raise PermissionError(errno.EACCES, "denied", name)
            return real_open_file(dir_fd, name)

        monkeypatch.setattr(_maildir, "_open_file", denied)
        os.rename(root / "new" / "1.a.h", root / "cur" / "1.a.h:2,S")
        with pytest.raises(MaildropError):
            drop.read(1)  # found again after the move, but cannot be opened
        os.rename(root / "cur" / "1.a.h:2,S", root / "cur" / "1.a.h:2,RS")
        monkeypatch.setattr(os, "scandir", unlistable)
        with pytest.raises(MaildropError):
            drop.read(1)  # cur/ cannot even be listed
        monkeypatch.undo()
        assert read_all(drop, 1) == b"one\n"


def test_maildir_commit_reports_what_it_could_not_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_maildir(tmp_path)
    for n in range(1, 5):
        put(root, "new", f"{n}.m.h", b"x\n")
    real_unlink = os.unlink
    vanish_on_unlink = {"4.m.h:2,S"}

    def unlink(name: str, *, dir_fd: int | None = None) -> None:
        if name == "2.m.h":
            raise PermissionError(errno.EACCES, "denied", name)
        if name in vanish_on_unlink:
            vanish_on_unlink.clear()
            real_unlink(name, dir_fd=dir_fd)  # another program removed it just before us
            raise FileNotFoundError(errno.ENOENT, "gone", name)
        real_unlink(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    with MaildirStorage(root).open("u") as drop:
        os.rename(root / "new" / "4.m.h", root / "cur" / "4.m.h:2,S")
        assert drop.commit([1, 2, 4]) == [2]
        assert drop.commit([2]) == [2]
        (root / "new" / "3.m.h").unlink()
        monkeypatch.setattr(os, "scandir", unlistable)
        assert drop.commit([3]) == [3]  # cannot even look for it: reported
    monkeypatch.undo()
    assert sorted(os.listdir(root / "new")) == ["2.m.h"]


def test_maildir_snapshot_scales(tmp_path: Path) -> None:
    # Behaviour, not speed: many files, sizes from the cache on the second open.
    root = make_maildir(tmp_path)
    for n in range(300):
        put(root, "new", f"{1_700_000_000 + n}.M{n}.h", b"line\n" * (n % 7))
    storage = MaildirStorage(root)
    with storage.open("u") as drop:
        sizes = [m.size for m in drop.messages]
    assert sizes == [crlf_size(b"line\n" * (n % 7)) for n in range(300)]
    with storage.open("u") as drop:
        assert [m.size for m in drop.messages] == sizes


# --- mbox ----------------------------------------------------------------------------------


def write_mbox(path: Path, messages: list[bytes]) -> None:
    box = mailbox.mbox(path)
    for raw in messages:
        box.add(raw)
    box.close()


def test_mbox_x_uidl_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    twin = b"Subject: twin\n\nsame\n"
    messages = [
        b"X-UIDL: good-1\nSubject: a\n\nbody\n",
        b"Subject: b\nx-uidl:   spaced-ok  \r\n\r\nbody\r\n",
        b"Subject: c\nX-UIDL: has space\n\nbody\n",
        b"Subject: d\nX-UIDL: " + b"z" * 71 + b"\n\nbody\n",
        b"Subject: e\nX-UIDL: shared\n\n",
        b"Subject: f\nX-UIDL: shared\n\n",
        b"Subject: g\n\nX-UIDL: in-the-body\n",
        b"Subject: h\nX-UIDL: no-body",
        twin,
        twin,
        twin,
    ]
    write_mbox(path, messages)
    uids = uids_of(MboxStorage(path))

    def digest(raw: bytes) -> str:
        return hashlib.sha256(raw if raw.endswith(b"\n") else raw + b"\n").hexdigest()[:40]

    assert uids[:2] == ["good-1", "spaced-ok"]
    assert uids[2:8] == [digest(raw) for raw in messages[2:7]] + ["no-body"]
    assert uids[8:] == [digest(twin), digest(twin) + ".2", digest(twin) + ".3"]
    assert uids_of(MboxStorage(path)) == uids


def test_mbox_big_message_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    big = b"X-UIDL: big-one\nSubject: big\n\n" + b"0123456789abcdef\n" * 10_000
    write_mbox(path, [big])
    with MboxStorage(path).open("u") as drop:
        assert drop.messages[0].uid == "big-one"
        assert drop.messages[0].size == crlf_size(big)
        chunks = list(drop.read(1))
        assert len(chunks) == 3  # 64 KiB at a time
        assert b"".join(chunks) == big


def test_mbox_per_user_and_create(tmp_path: Path) -> None:
    storage = MboxStorage(tmp_path, per_user=True)
    assert storage.path("bob") == str(tmp_path / "bob")
    assert uids_of(storage, "bob") == []
    assert (tmp_path / "bob").exists()
    with pytest.raises(MaildropError):
        MboxStorage(tmp_path / "none", create=False).open("u")
    with pytest.raises(MaildropError):
        MboxStorage(tmp_path / "no" / "such" / "dir").open("u")


def test_mbox_dot_lock_of_another_program(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    write_mbox(path, [MESSAGES[0]])
    (tmp_path / "mbox.lock").write_bytes(b"")
    with pytest.raises(MaildropLocked):
        MboxStorage(path).open("u")
    (tmp_path / "mbox.lock").unlink()
    with MboxStorage(path).open("u"):
        assert (tmp_path / "mbox.lock").exists()
    assert not (tmp_path / "mbox.lock").exists()


def test_mbox_open_failures_release_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mbox"
    write_mbox(path, [MESSAGES[0]])
    storage = MboxStorage(path)

    def lock_fails(self: mailbox.mbox) -> None:
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(mailbox.mbox, "lock", lock_fails)
    with pytest.raises(MaildropError) as info:
        storage.open("u")
    assert not isinstance(info.value, MaildropLocked)
    monkeypatch.undo()

    def measure_fails(file: object) -> object:
        raise OSError(errno.EIO, "bad disk")

    monkeypatch.setattr(_mbox, "_measure", measure_fails)
    with pytest.raises(MaildropError):
        storage.open("u")
    monkeypatch.undo()
    assert len(uids_of(storage)) == 1
    assert not (tmp_path / "mbox.lock").exists()


def test_mbox_read_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mbox"
    write_mbox(path, [MESSAGES[0]])
    with MboxStorage(path).open("u") as drop:

        def get_file(self: mailbox.mbox, key: str) -> object:
            raise OSError(errno.EIO, "bad disk")

        monkeypatch.setattr(mailbox.mbox, "get_file", get_file)
        with pytest.raises(MaildropError):
            drop.read(1)


def test_mbox_failed_rewrite_reports_and_removes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mbox"
    write_mbox(path, MESSAGES)
    before = path.read_bytes()
    storage = MboxStorage(path)
    with storage.open("u") as drop:

        def flush_fails(self: mailbox.mbox) -> None:
            raise OSError(errno.ENOSPC, "disk full")

        monkeypatch.setattr(mailbox.mbox, "flush", flush_fails)
        assert drop.commit([1, 3]) == [1, 3]
        assert drop.commit([2]) == [2]  # the mailbox object cannot be trusted any more
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert len(uids_of(storage)) == 4


def test_mbox_external_change_during_session_fails_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    h = MboxHarness(tmp_path)
    write_mbox(path, MESSAGES[:2])
    with MboxStorage(path).open("u") as drop:
        h.deliver_during_session(MESSAGES[2])  # ignoring the lock
        assert drop.commit([1]) == [1]  # mailbox sees the file grew: no rewrite
    assert len(uids_of(MboxStorage(path))) == 3


def test_mbox_close_errors_still_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mbox"
    write_mbox(path, [MESSAGES[0]])
    storage = MboxStorage(path)
    drop = storage.open("u")
    real_close = mailbox.mbox.close

    def close_fails(self: mailbox.mbox) -> None:
        real_close(self)
        raise mailbox.Error("late failure")

    monkeypatch.setattr(mailbox.mbox, "close", close_fails)
    drop.close()
    monkeypatch.undo()
    assert len(uids_of(storage)) == 1


# --- memory ----------------------------------------------------------------------------------


def test_memory_storage_initial_contents_and_uids() -> None:
    storage = MemoryStorage({"alice": [b"a\n", b"b\n"], "empty": []})
    assert storage.contents("alice") == [b"a\n", b"b\n"]
    assert storage.contents("nobody") == []
    uid = storage.add("alice", bytearray(b"c"))  # type: ignore[arg-type]
    with storage.open("alice") as drop:
        assert [m.uid for m in drop.messages] == ["mem1", "mem2", uid]
        assert [m.size for m in drop.messages] == [3, 3, 3]
        assert drop.commit([1]) == []
    assert storage.contents("alice") == [b"b\n", b"c"]
    assert storage.uids("alice") == ["mem2", uid]  # what is left, without opening it
    assert storage.uids("nobody") == []
    assert uids_of(storage, "empty") == []
    assert uids_of(storage, "new-user") == []
    assert storage.add("alice", b"d\n") not in {"mem1", "mem2", uid}  # never reused
    assert "3 maildrops" in repr(storage)


def test_maildir_written_by_the_standard_library(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "md")
    keys = [box.add(raw) for raw in MESSAGES]
    box.close()
    with MaildirStorage(tmp_path / "md").open("u") as drop:
        # mailbox's keys are the unique parts of its file names
        assert sorted(m.uid for m in drop.messages) == sorted(keys)
        assert sorted(m.size for m in drop.messages) == sorted(map(crlf_size, MESSAGES))
