"""PostgresStorage against a real PostgreSQL (tests/postgres.py): the storage contract.

Unique ids stable across sessions, sizes in CRLF octets, the snapshot fixed at login
(RFC 1939 sections 4, 7, 11); the lease that makes a maildrop one session's across every
server (taken, renewed, released, expired after a crash, fenced at commit); delivery
(streamed, idempotent with a given id, atomic for a batch); the schema (created,
versioned, upgraded, refused when newer); the pool (bounded; a database that is down
gives ``StorageUnavailableError`` and the pool reconnects when it is back).
"""

from __future__ import annotations

import io
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pop3_maildrop import (
    Maildrop,
    MaildropError,
    MaildropLocked,
    PostgresStorage,
    StorageUnavailableError,
    _postgres,
)
from pop3_maildrop._postgres import SCHEMA_VERSION, STORE_CHUNK
from postgres import PostgresCluster, create_database
from served import crlf, env

pytest_plugins = ["peers", "postgres"]


@pytest.fixture
def storage(pg_url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(pg_url, pool_max=4) as storage:
        yield storage


def user(request: pytest.FixtureRequest) -> str:
    """A maildrop of the test's own (the database is the module's)."""
    return request.node.name


def contents(drop: Maildrop) -> list[bytes]:
    return [b"".join(drop.read(n)) for n in range(1, len(drop.messages) + 1)]


def wait_open(storage: PostgresStorage, name: str, timeout: float = 10.0) -> float:
    """Open and close ``name``'s maildrop as soon as it is free; the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            storage.open(name).close()
            return time.monotonic() - started
        except MaildropLocked:
            assert time.monotonic() - started < timeout, "still locked"
            time.sleep(0.01)


# --- guarantee 1: ids, sizes, the snapshot --------------------------------------------------


def test_ids_are_stable_and_sizes_are_crlf_octets(
    storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    messages = [b"Subject: lf\n\nbody\n", b"Subject: crlf\r\n\r\nbody\r\n", b"no final newline"]
    uids = [storage.deliver(name, m) for m in messages]
    assert len(set(uids)) == 3
    with storage.open(name) as drop:
        assert [m.uid for m in drop.messages] == uids  # delivery order
        assert [m.size for m in drop.messages] == [len(crlf(m)) for m in messages]
        assert contents(drop) == messages  # stored as given; the server converts
    with storage.open(name) as drop:
        assert [m.uid for m in drop.messages] == uids  # the same ids in every session
        assert drop.commit([2]) == []
    with storage.open(name) as drop:
        assert [m.uid for m in drop.messages] == [uids[0], uids[2]]  # never renumbered ids


def test_the_snapshot_is_fixed_at_login(
    storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    first = storage.deliver(name, b"Subject: 1\n\none\n")
    with storage.open(name) as drop:
        late = storage.deliver(name, b"Subject: 2\n\ntwo\n")
        assert [m.uid for m in drop.messages] == [first]
        drop.commit([1])
    with storage.open(name) as drop:
        # Delivered during the session: neither listed nor deleted by it.
        assert [m.uid for m in drop.messages] == [late]
        assert contents(drop) == [b"Subject: 2\n\ntwo\n"]


def test_a_big_message_is_stored_and_read_in_chunks(
    storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    data = b"".join(b"line %d\n" % n for n in range(60_000))  # several chunk rows
    assert len(data) > 3 * STORE_CHUNK
    stream = io.BytesIO(data)
    uid = storage.deliver(name, stream)
    pieces = (data[i : i + 1000] for i in range(0, len(data), 1000))
    uid2 = storage.deliver(name, pieces)  # an iterable of chunks of any size
    with storage.open(name) as drop:
        assert [m.uid for m in drop.messages] == [uid, uid2]
        assert drop.messages[0].size == len(crlf(data))
        chunks = list(drop.read(1, 5000))
        assert max(map(len, chunks)) == 5000
        assert b"".join(chunks) == data
        assert b"".join(drop.read(2, 1 << 20)) == data


def test_a_reader_fetches_more_rows_each_query_up_to_a_bound(
    storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    data = os.urandom(40 * STORE_CHUNK - 10)  # 40 rows, the last one short
    storage.deliver(name, data)

    def read(drop: Maildrop, chunk_size: int) -> tuple[list[int], int]:
        """The rows fetched after each query, and the most octets held at once."""
        reader: Any = drop.read(1, chunk_size)
        fetched, held, got = [], 0, []
        for chunk in reader:
            assert len(chunk) <= chunk_size
            got.append(chunk)
            if not fetched or reader._next != fetched[-1]:
                fetched.append(reader._next)
            held = max(held, sum(map(len, reader._buffer)) + len(reader._data))
        assert b"".join(got) == data
        return fetched, held

    with storage.open(name) as drop:
        # One row, then twice as many a query, then 8 rows (512 KiB) at a time.
        fetched, held = read(drop, 5000)
        assert fetched == [1, 3, 7, 15, 23, 31, 39, 40]
        assert 4 * STORE_CHUNK < held <= 8 * STORE_CHUNK
        # A chunk_size of more rows than that: that many rows a query.
        fetched, held = read(drop, 10 * STORE_CHUNK)
        assert fetched == [10, 20, 30, 40]
        assert held <= 10 * STORE_CHUNK


def test_a_given_id_is_kept_and_a_repeat_stores_nothing(
    storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    big = b"x" * (2 * STORE_CHUNK + 5)
    assert storage.deliver(name, b"one\n", uid="1700000000.M1P1.host") == "1700000000.M1P1.host"
    assert storage.deliver(name, b"other\n", uid="1700000000.M1P1.host") == "1700000000.M1P1.host"
    assert storage.deliver(name, big, uid="big") == "big"
    assert storage.deliver(name, io.BytesIO(big), uid="big") == "big"
    with storage.open(name) as drop:
        assert [m.uid for m in drop.messages] == ["1700000000.M1P1.host", "big"]
        assert contents(drop) == [b"one\n", big]
    with pytest.raises(ValueError, match="unique id"):
        storage.deliver(name, b"x\n", uid="has space")


def test_deliver_many_is_one_transaction(
    storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)

    def failing() -> Iterator[bytes]:
        yield b"x" * STORE_CHUNK * 2
        raise OSError("the sender went away")

    with pytest.raises(OSError, match="went away"):
        storage.deliver_many([(name, b"first\n"), (name + "-b", failing())])
    with storage.open(name) as drop:
        assert drop.messages == ()  # the first was rolled back with the second
    uids = storage.deliver_many([(name, b"a\n"), (name + "-b", b"b\n")])
    with storage.open(name) as drop, storage.open(name + "-b") as other:
        assert [drop.messages[0].uid, other.messages[0].uid] == uids


def test_unusable_names_and_arguments(storage: PostgresStorage, pg_url: str) -> None:
    for name in ("", "a\0b"):
        with pytest.raises(MaildropError):
            storage.open(name)
        with pytest.raises(MaildropError):
            storage.deliver(name, b"x\n")
    with pytest.raises(ValueError, match="pool_min"):
        PostgresStorage(pg_url, pool_min=3, pool_max=2)
    with pytest.raises(ValueError, match="lease_seconds"):
        PostgresStorage(pg_url, lease_seconds=0.1)
    with pytest.raises(ValueError, match="connection string"):
        PostgresStorage("not a = valid = string")
    with pytest.raises(TypeError, match="bytes"):
        storage.deliver("someone", iter(["text"]))  # type: ignore[list-item]
    assert "secret" not in repr(PostgresStorage(pg_url.replace("@", ":secret@")))


# --- guarantee 2: the lease -----------------------------------------------------------------


def test_one_session_per_maildrop_across_storages(
    pg_url: str, storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    with PostgresStorage(pg_url) as elsewhere:  # another server, as far as the lease knows
        drop = storage.open(name)
        with pytest.raises(MaildropLocked):
            elsewhere.open(name)
        with pytest.raises(MaildropLocked):
            storage.open(name)
        assert elsewhere._get_runtime().keeper.pending() == []  # refused: nothing to give back
        drop.close()
        # Released by the keeper thread, at once: the next login anywhere gets it.
        assert wait_open(elsewhere, name) < 1.0
        assert wait_open(storage, name) < 1.0
        # In the same process a closed session's lease is taken over without waiting.
        for _ in range(3):
            storage.open(name).close()


def test_a_live_session_renews_its_lease(pg_url: str, request: pytest.FixtureRequest) -> None:
    name = user(request)
    with PostgresStorage(pg_url, lease_seconds=1.0) as a, PostgresStorage(pg_url) as b:
        drop = a.open(name)
        time.sleep(2.2)  # more than two leases: renewed about 6 times meanwhile
        with pytest.raises(MaildropLocked):
            b.open(name)
        assert drop.commit([]) == []
        drop.close()


HOLDER = """
import sys, time
from pop3_maildrop import PostgresStorage
storage = PostgresStorage(sys.argv[1], lease_seconds=float(sys.argv[3]))
drop = storage.open(sys.argv[2])
print("open", flush=True)
time.sleep(60)
"""


def hold_then_kill(url: str, name: str, lease: float) -> None:
    """A process that opens ``name``'s maildrop, then dies by SIGKILL (no release)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, name, str(lease)],
        stdout=subprocess.PIPE,
        env=env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"open\n"
        with PostgresStorage(url) as other, pytest.raises(MaildropLocked):
            other.open(name)  # alive: its lease holds, even on the same machine
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_a_crashed_holder_on_this_machine_is_taken_over_at_once(
    pg_url: str, storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    hold_then_kill(pg_url, name, 60.0)
    # Its process is gone for sure (same boot, same PID namespace, no such process):
    # as a local lock would, the lease goes with it; no waiting for the expiry.
    with storage.open(name) as drop:
        assert drop.messages == ()


def test_which_holders_are_known_to_be_dead() -> None:
    from pop3_maildrop._postgres import _is_dead, _machine, _process_identity

    me = _process_identity(os.getpid())
    assert me is not None and me.startswith(f"{_machine()}/{os.getpid()}/")
    assert not _is_dead(me)  # alive
    assert _is_dead(me.rsplit("/", 1)[0] + "/1")  # the PID is another process's now
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert _is_dead(f"{_machine()}/{child.pid}/1")  # no such process
    assert not _is_dead(None)  # a holder that could not name itself
    assert not _is_dead(f"another-boot/1/{os.getpid()}/1")  # another machine: cannot tell


def test_a_crashed_holders_lease_elsewhere_expires(
    pg_url: str, storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    lease = 1.0
    hold_then_kill(pg_url, name, lease)
    killed = time.monotonic()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # What the lease of a host that died looks like from here: another machine's.
        conn.execute(
            "UPDATE pop3_leases SET process = 'another-boot-id/4026531836/' || "
            "split_part(process, '/', 3) || '/' || split_part(process, '/', 4) "
            "WHERE mailbox = %s",
            (name,),
        )
    with pytest.raises(MaildropLocked):
        storage.open(name)
    wait_open(storage, name)
    freed = time.monotonic() - killed
    print(f"lease {lease} s: free again {freed:.2f} s after the kill")
    assert 0.5 < freed < lease + 1.0


def test_a_lost_lease_deletes_nothing(
    pg_url: str, storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    storage.deliver(name, b"keep me\n")
    drop = storage.open(name)
    # What a network partition longer than the lease leaves behind: the lease expired
    # (no renewal reached the database) and another server's session took it.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE pop3_leases SET expires = now() - interval '1 second'")
    with PostgresStorage(pg_url) as other:
        taker = other.open(name)
        with pytest.raises(MaildropError, match="lease"):
            drop.commit([1])
        drop.close()
        assert len(taker.messages) == 1
        taker.close()
    with storage.open(name) as again:
        assert contents(again) == [b"keep me\n"]


def test_a_commit_releases_the_lease_with_the_deletions(
    pg_url: str, storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    storage.deliver(name, b"one\n")
    storage.deliver(name, b"two\n")
    drop = storage.open(name)
    assert drop.commit([1]) == []
    with PostgresStorage(pg_url) as other, other.open(name) as next_session:
        assert len(next_session.messages) == 1  # free at once, the deletion visible
    assert drop.commit([1]) == []  # already removed: counts as removed
    with pytest.raises(MaildropError):
        drop.commit([2])  # the session is over
    drop.close()


def test_a_login_waiting_for_a_commit_sees_its_deletions(
    pg_url: str, storage: PostgresStorage, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    storage.deliver(name, b"one\n")
    storage.deliver(name, b"two\n")
    drop = storage.open(name)
    with psycopg.connect(pg_url) as quit_, psycopg.connect(pg_url, autocommit=True) as watch:
        # A QUIT's update under way on another server: lease and message 1 deleted, not
        # yet committed. A login now waits for the lease's row, and must then list what
        # that commit left: its snapshot is read by a statement that starts after the
        # wait (one statement taking the lease and reading the list would not see it).
        quit_.execute("DELETE FROM pop3_leases WHERE mailbox = %s", (name,))
        quit_.execute(
            "DELETE FROM pop3_messages WHERE id = (SELECT min(id) FROM pop3_messages "
            "WHERE mailbox = %s)",
            (name,),
        )
        opened: list[Maildrop] = []
        login = threading.Thread(target=lambda: opened.append(storage.open(name)))
        login.start()
        waiting = """
            SELECT count(*) FROM pg_stat_activity
            WHERE application_name = 'pop3-sansio' AND wait_event_type = 'Lock'
        """
        deadline = time.monotonic() + 10
        while watch.execute(waiting).fetchone() != (1,):
            assert time.monotonic() < deadline, "the login did not wait for the lease"
            time.sleep(0.01)
        quit_.commit()
        login.join()
    drop.close()
    (after,) = opened
    assert contents(after) == [b"two\n"]
    after.close()


def test_a_connection_the_server_ended_is_replaced_before_use(
    pg_url: str, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    with PostgresStorage(pg_url, pool_min=1, pool_max=1) as storage:
        storage.deliver(name, b"one\n")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE application_name = 'pop3-sansio'"
            ).fetchall()
        assert ended == [(True,)]  # the pool's one connection
        # What a restart of the database does to every pooled connection: the next
        # session gets a new one, not an error from the dead one.
        with storage.open(name) as drop:
            assert contents(drop) == [b"one\n"]


def test_sessions_hold_no_connection(pg_url: str, request: pytest.FixtureRequest) -> None:
    name = user(request)
    with PostgresStorage(pg_url, pool_min=0, pool_max=2) as storage:
        storage.deliver(name + "-0", b"hello\n")
        drops = []
        lock = threading.Lock()

        def login(n: int) -> None:
            drop = storage.open(f"{name}-{n}")
            with lock:
                drops.append(drop)

        threads = [threading.Thread(target=login, args=(n,)) for n in range(60)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(drops) == 60  # 60 sessions open on a pool of 2 connections
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pop3-sansio'"
            ).fetchone()
            leases = conn.execute(
                "SELECT count(*) FROM pop3_leases WHERE mailbox LIKE %s", (name + "-%",)
            ).fetchone()
        assert row is not None and 1 <= row[0] <= 2
        assert leases == (60,)
        first = next(d for d in drops if d.messages)
        assert contents(first) == [b"hello\n"]
        for drop in drops:
            drop.close()


# --- the schema -----------------------------------------------------------------------------


def test_the_schema_is_versioned_and_upgraded(postgres: PostgresCluster) -> None:

    url = create_database(postgres, "schema_test")
    with psycopg.connect(url, autocommit=True) as conn:
        # An empty version table: a database from before the first version.
        conn.execute("CREATE TABLE pop3_schema (version integer NOT NULL)")
    with PostgresStorage(url) as storage:
        storage.create_schema()
        storage.create_schema()  # idempotent
        storage.deliver("someone", b"x\n")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM pop3_schema").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE pop3_schema SET version = version + 1")
    with PostgresStorage(url) as storage, pytest.raises(MaildropError, match="upgrade"):
        storage.open("someone")


def test_concurrent_first_uses_create_the_schema_once(postgres: PostgresCluster) -> None:

    url = create_database(postgres, "schema_race")
    storages = [PostgresStorage(url) for _ in range(4)]
    errors: list[BaseException] = []

    def first_use(storage: PostgresStorage) -> None:
        try:
            storage.deliver("racer", b"x\n")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(s,)) for s in storages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for storage in storages:
        storage.close()
    assert errors == []
    with PostgresStorage(url) as storage, storage.open("racer") as drop:
        assert len(drop.messages) == 4


# --- guarantee 5 (storage side): the database goes away and comes back ------------------------


def test_database_down_then_back(pg_faults: PostgresCluster) -> None:
    cluster = pg_faults
    url = create_database(cluster, "down_then_back")
    with PostgresStorage(url, timeout=1.0, lease_seconds=30) as storage:
        storage.deliver("alice", b"before\n")
        drop = storage.open("alice")
        cluster.stop()
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            storage.open("bob")
        with pytest.raises(StorageUnavailableError):
            storage.deliver("alice", b"during\n")
        with pytest.raises(StorageUnavailableError):
            list(drop.read(1))
        with pytest.raises(StorageUnavailableError):
            drop.commit([1])
        assert time.monotonic() - started < 10  # each waited about the timeout, no more
        cluster.start()
        # The session's lease survived the restart (it is a row, durably committed):
        # it goes on, and the pool gives it a fresh connection.
        assert contents(drop) == [b"before\n"]
        with pytest.raises(MaildropLocked):
            storage.open("alice")
        drop.close()
        wait_open(storage, "alice")
        with storage.open("alice") as again:
            assert contents(again) == [b"before\n"]  # nothing partial from the outage


def test_after_a_restart_the_first_login_does_not_wait_for_each_dead_connection(
    pg_faults: PostgresCluster, request: pytest.FixtureRequest
) -> None:
    url = create_database(pg_faults, "restart_pool")
    with PostgresStorage(url, pool_min=4, pool_max=4, timeout=5.0) as storage:
        storage.deliver("erin", b"one\n")
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 10
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pop3-sansio'"
            while conn.execute(query).fetchone() != (4,):
                assert time.monotonic() < deadline, "the pool did not fill"
                time.sleep(0.05)
        pg_faults.stop()
        pg_faults.start()
        # Four dead connections in the pool: each is found so and replaced at once,
        # not after a back-off of 1, 2, 4 s (which the 5 s timeout would not allow).
        with storage.open("erin") as drop:
            assert contents(drop) == [b"one\n"]


class Forgetful:
    """A loopback TCP relay that can forget its connections, as a NAT or firewall does.

    ``forget()`` forgets the connections open at that moment: they get no packet, and
    the client's next write is answered with a reset. ``close()`` stops it.
    """

    def __init__(self, port: int) -> None:
        self._upstream = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._forgets = 0  # how many times forget() was called
        self._closing = threading.Event()
        self._threads = [threading.Thread(target=self._accept)]
        self._threads[0].start()

    def forget(self) -> None:
        self._forgets += 1

    def close(self) -> None:
        self._closing.set()
        for thread in list(self._threads):
            thread.join()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._relay, args=(client,))
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket) -> None:
        known = self._forgets
        with client, socket.create_connection(("127.0.0.1", self._upstream)) as upstream:
            while not self._closing.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.05)
                if self._forgets > known:
                    if client in ready:  # a write to a connection no longer known: reset
                        client.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        return
                    continue
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                        if data:
                            (upstream if sock is client else client).sendall(data)
                    except OSError:
                        data = b""
                    if not data:
                        return


def test_a_connection_unused_for_a_while_is_checked_before_use(
    postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_database(postgres, "forgotten")
    relay = Forgetful(postgres.port)
    url = f"postgresql://postgres@127.0.0.1:{relay.port}/forgotten"
    monkeypatch.setattr(_postgres, "_CHECK_IDLE", 0.2)  # 30 s in service
    try:
        with PostgresStorage(url, pool_min=1, pool_max=1, timeout=5.0) as storage:
            storage.deliver("fay", b"one\n")
            relay.forget()  # nothing reaches the server's side: its socket looks fine
            time.sleep(0.3)
            with storage.open("fay") as drop:
                assert contents(drop) == [b"one\n"]
    finally:
        relay.close()


def test_connections_have_keepalives_and_a_user_timeout_unless_the_url_sets_them(
    pg_url: str,
) -> None:
    def parameters(url: str) -> dict[str, str]:
        with PostgresStorage(url, timeout=4.0) as storage:
            with storage._get_runtime().connection() as conn:
                return conn.info.get_parameters()

    given = parameters(pg_url)
    assert given["keepalives"] == "1"
    assert (given["keepalives_idle"], given["keepalives_interval"]) == ("30", "10")
    assert given["keepalives_count"] == "3"
    assert given["tcp_user_timeout"] == "4000"  # the storage's timeout, in ms
    own = parameters(pg_url + "?keepalives_idle=7&tcp_user_timeout=1234")
    assert (own["keepalives_idle"], own["tcp_user_timeout"]) == ("7", "1234")
    assert own["keepalives_count"] == "3"


def test_a_login_that_fails_after_taking_the_lease_gives_it_back(
    pg_url: str, request: pytest.FixtureRequest
) -> None:
    name = user(request)
    # The first login of a process (its lease keeper not yet started), failing after
    # the lease was taken: on a row written by hand with an unusable unique id.
    with PostgresStorage(pg_url) as first, PostgresStorage(pg_url) as other:
        other.create_schema()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO pop3_messages (mailbox, uid, size, octets, chunks) "
                "VALUES (%s, 'two words', 1, 1, 0)",
                (name,),
            )
        with pytest.raises(MaildropError, match="unusable message"):
            first.open(name)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DELETE FROM pop3_messages WHERE mailbox = %s", (name,))
        # Given back within moments (the lease is 60 s, and its holder lives on).
        assert wait_open(other, name, timeout=5.0) < 5.0


def test_an_outage_longer_than_the_lease_loses_it(pg_faults: PostgresCluster) -> None:
    url = create_database(pg_faults, "outage_over_lease")
    with PostgresStorage(url, timeout=1.0, lease_seconds=1.0) as storage:
        storage.deliver("carol", b"one\n")
        drop = storage.open("carol")
        pg_faults.stop()
        time.sleep(1.5)  # no renewal reaches the database for longer than the lease
        pg_faults.start()
        time.sleep(0.5)  # the keeper's next renewal finds the lease expired: not renewed
        with pytest.raises(MaildropError, match="lease"):
            drop.commit([1])
        assert contents(drop) == [b"one\n"]  # reading needs no lease; deleting does
        drop.close()
        wait_open(storage, "carol")
        with storage.open("carol") as again:
            assert contents(again) == [b"one\n"]


def test_reads_of_messages_gone_and_other_database_errors(
    postgres: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    url = create_database(postgres, "errors_test")
    with PostgresStorage(url) as storage:
        exact = b"x" * (2 * STORE_CHUNK)  # a whole number of chunks
        storage.deliver("dave", io.BytesIO(exact))
        storage.deliver("dave", b"two\n")
        storage.deliver("dave", b"three\n")
        with pytest.raises(ValueError, match="one entry per delivery"):
            storage.deliver_many([("dave", b"x\n")], uids=[])
        drop = storage.open("dave")
        assert drop.messages[0].size == len(exact) + 2  # the CRLF a last line lacks
        assert b"".join(drop.read(1)) == exact
        # Removed behind the session's back (an operator's DELETE): an error, not a hang
        # or a short message.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM pop3_messages WHERE mailbox = 'dave' AND octets = 4")
        with pytest.raises(MaildropError, match="no longer exists"):
            drop.read(2)
        assert drop.commit([3]) == []
        with pytest.raises(MaildropError, match="removed"):
            drop.read(3)  # committed: the session is over
        drop.close()
        caplog.set_level("WARNING", logger="pop3.maildrop")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE pop3_chunks")
        with storage.open("dave") as drop, pytest.raises(MaildropError, match="database error"):
            drop.read(1)
        assert "PostgreSQL storage: database error" in caplog.text
    with pytest.raises(MaildropError, match="closed"):
        storage.open("dave")
