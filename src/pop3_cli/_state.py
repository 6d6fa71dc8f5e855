"""What ``pop3 fetch`` has already stored, per account, in the destination Maildir.

A message is recorded by its unique id (UIDL), its size as LISTed and the
SHA-256 of the bytes retrieved (before ``pop3 fetch`` adds header fields or
changes line ends), and with ``--keep-days`` the time it was first seen.
``DIR/.pop3-fetch-state.json`` holds ``{"version": 3, "accounts":
{"user@host": {uid: [size, sha256], ...}}}``, a record being
``[size, sha256, first_seen]`` when a first-seen time (whole seconds since
the epoch) is known: that third element is optional, and a file without
it reads as before. The file is only ever replaced atomically (written to a temporary file, synced,
renamed, directory synced). Recording a message right after storing it must
not rewrite the whole file every time (that would be quadratic in the number
of messages), so each record is first appended to
``DIR/.pop3-fetch-state.journal`` (one JSON line ``[account, uid, size,
sha256]``, synced); the journal is folded into the JSON file and emptied at
the start and end of every run. A line torn by a crash is ignored, which is
safe: its message is also found by its file name (see ``_deliver``).
``DIR/.pop3-fetch.lock`` keeps two runs from using the same Maildir at once.

The account is keyed by what names the maildrop, ``user@host`` (``state_key``),
not by how it is reached: unique ids belong to the maildrop (RFC 1939 section
7), so moving from STLS on port 110 to implicit TLS on port 995, or to a
proxy's port, must not fetch kept mail again. Versions 1 and 2 keyed it by
``host:port:user``; their keys (and those of their journal lines) are read
as ``user@host``, records of two ports of one maildrop merged, and the file
is rewritten as version 3 when the run starts. When two names reach one
maildrop (an address and a host name, a proxy's name), ``--state-key``
names it explicitly.

Version 1 files (``{"accounts": {account: [uid, ...]}}``) and their journal
lines (``[account, uid]``) are read as records without a size or a digest:
enough for ``--keep`` to skip them, never enough to delete a message (see
``_fetch``).

The file names start with ``prefix`` (``.pop3-fetch`` unless told otherwise:
an mbox's state is named after the mbox, see ``_targets``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable
from types import TracebackType
from typing import IO, NamedTuple

from ._deliver import fsync_directory
from ._errors import CliError

__all__ = [
    "JOURNAL_FILE",
    "LOCK_FILE",
    "STATE_FILE",
    "FetchState",
    "Record",
    "read_records",
    "state_key",
    "transport_key",
]

STATE_FILE = ".pop3-fetch-state.json"
JOURNAL_FILE = ".pop3-fetch-state.journal"
LOCK_FILE = ".pop3-fetch.lock"
_VERSION = 3
_TRANSPORT_VERSION = 2  # keyed by host:port:user
_LEGACY_VERSION = 1  # keyed by host:port:user, ids only
_TRANSPORT_KEY = re.compile(r"(.+):[0-9]+:(.*)", re.DOTALL)


def state_key(user: str, host: str) -> str:
    """The key of a maildrop in the state file: ``user@host`` (host in lower case)."""
    return f"{user}@{host.lower().removesuffix('.')}"


def transport_key(user: str, host: str, port: int) -> str:
    """The key versions 1 and 2 gave a maildrop, ``host:port:user`` (see ``_upgraded_key``)."""
    return f"{host.lower()}:{port}:{user}"


def _upgraded_key(key: str) -> str:
    """A version 1 or 2 key, ``host:port:user``, as ``user@host``.

    The host part is the longest that leaves ``:port:`` (an IPv6 address holds
    colons; a user name rarely holds ``:digits:``).
    """
    match = _TRANSPORT_KEY.fullmatch(key)
    return key if match is None else state_key(match.group(2), match.group(1))


def _merge(records: dict[str, Record], uid: str, record: Record) -> None:
    """Add ``record``; one with a digest wins over one without (two ports' records)."""
    old = records.get(uid)
    if old is None or old.sha256 is None or record.sha256 is not None:
        records[uid] = record


class Record(NamedTuple):
    """What was stored under one unique id.

    ``None`` fields come from a version 1 state file, which kept ids only.
    """

    size: int | None
    """The size the server LISTed for the message (not the size stored)."""
    sha256: str | None
    """Hex SHA-256 of the message as RETR delivered it (not of the stored form)."""
    first_seen: int | None = None
    """When the message was first stored (seconds since the epoch), for ``--keep-days``."""


_LEGACY = Record(None, None)


def _size(value: object) -> bool:
    return value is None or (type(value) is int and value >= 0)


def _sha256(value: object) -> bool:
    return value is None or (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _record(value: object) -> Record | None:
    """A record from its JSON form ``[size, sha256(, first_seen)]``, or ``None`` if malformed."""
    if (
        isinstance(value, list)
        and len(value) in (2, 3)
        and _size(value[0])
        and _sha256(value[1])
        and (len(value) == 2 or _size(value[2]))
    ):
        return Record(*value)
    return None


def _json(record: Record) -> list[object]:
    """The JSON form of ``record``: the first-seen time only if known (older files lack it)."""
    return list(record) if record.first_seen is not None else list(record[:2])


def _accounts_from(data: object) -> dict[str, dict[str, Record]] | None:
    """The accounts of a version 1, 2 or 3 state file (keyed ``user@host``), or ``None``
    if malformed."""
    if (
        not isinstance(data, dict)
        or data.get("version") not in (_LEGACY_VERSION, _TRANSPORT_VERSION, _VERSION)
        or not isinstance(data.get("accounts"), dict)
    ):
        return None
    accounts: dict[str, dict[str, Record]] = {}
    for name, entries in data["accounts"].items():
        key = name if data["version"] == _VERSION else _upgraded_key(name)
        records = accounts.setdefault(key, {})
        if data["version"] == _LEGACY_VERSION:
            if not isinstance(entries, list) or not all(isinstance(u, str) for u in entries):
                return None
            for uid in entries:
                _merge(records, uid, _LEGACY)
        elif isinstance(entries, dict):
            for uid, value in entries.items():
                record = _record(value)
                if record is None:
                    return None
                _merge(records, uid, record)
        else:
            return None
    return accounts


def _read_json(path: str) -> object:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return {"version": _VERSION, "accounts": {}}
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        return None


def _file(directory: str, prefix: str, name: str) -> str:
    """The path of one of the state's files (``name`` one of ``STATE_FILE``...) under ``prefix``."""
    return os.path.join(directory, prefix + name.removeprefix(".pop3-fetch"))


def _read_state(directory: str, prefix: str) -> dict[str, dict[str, Record]]:
    """Every account's records: the state file with its journal folded in."""
    path = _file(directory, prefix, STATE_FILE)
    data = _read_json(path)
    accounts = _accounts_from(data)
    if accounts is None:
        raise CliError(
            f"{path} is damaged or from another version; move it away to fetch everything again"
        )
    upgrade = isinstance(data, dict) and data.get("version") != _VERSION
    journal_path = _file(directory, prefix, JOURNAL_FILE)
    try:
        with open(journal_path, "rb") as f:
            journal = f.read()
    except FileNotFoundError:
        return accounts
    except OSError as exc:
        raise CliError(f"cannot read {journal_path}: {exc.strerror}") from None
    for line in journal.split(b"\n"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # torn by a crash, or empty
        if not (
            isinstance(entry, list)
            and len(entry) in (2, 4, 5)
            and isinstance(entry[0], str)
            and isinstance(entry[1], str)
        ):
            continue
        # A version 1 line holds no size or digest: a record that deletes nothing.
        record = _LEGACY if len(entry) == 2 else _record(entry[2:])
        if record is not None:
            # The journal of an old state file is as old as the file.
            key = _upgraded_key(entry[0]) if upgrade else entry[0]
            _merge(accounts.setdefault(key, {}), entry[1], record)
    return accounts


def read_records(directory: str, account: str, prefix: str = ".pop3-fetch") -> dict[str, Record]:
    """``account``'s records, read without the lock and without writing (``--status``)."""
    if not os.path.exists(_file(directory, prefix, STATE_FILE)) and not os.path.exists(
        _file(directory, prefix, JOURNAL_FILE)
    ):
        return {}
    return _read_state(directory, prefix).get(account, {})


class FetchState:
    """The messages stored for one account; ``with FetchState(maildir, account) as state``."""

    def __init__(self, maildir: str, account: str, prefix: str = ".pop3-fetch") -> None:
        self.maildir = maildir
        self.account = account
        self.prefix = prefix
        self._path = _file(maildir, prefix, STATE_FILE)
        self._journal_path = _file(maildir, prefix, JOURNAL_FILE)
        self._accounts: dict[str, dict[str, Record]] = {}
        self._journal: IO[bytes] | None = None
        self._lock_fd: int | None = None

    # --- opening and closing -------------------------------------------------------------

    def __enter__(self) -> FetchState:
        self._lock()
        try:
            self._load()
            self.save()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.save()
        finally:
            self.close()

    def close(self) -> None:
        """Release the journal and the lock (what is recorded stays recorded)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _lock(self) -> None:
        path = _file(self.maildir, self.prefix, LOCK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CliError(f"cannot create {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CliError(f"another pop3 fetch is using {self.maildir}") from None
        self._lock_fd = fd

    # --- reading -----------------------------------------------------------------------------

    def _load(self) -> None:
        self._accounts = _read_state(self.maildir, self.prefix)

    # --- the API ---------------------------------------------------------------------------

    def get(self, uid: str) -> Record | None:
        """What was stored under ``uid`` for this account, if anything."""
        return self._accounts.get(self.account, {}).get(uid)

    def __contains__(self, uid: object) -> bool:
        return uid in self._accounts.get(self.account, {})

    def add(
        self, uid: str, size: int | None, sha256: str | None, first_seen: int | None = None
    ) -> None:
        """Record durably that ``uid`` (LISTed as ``size``) was stored as bytes with ``sha256``.

        The record is appended to the journal and synced before this returns.
        """
        record = Record(size, sha256, first_seen)
        self._accounts.setdefault(self.account, {})[uid] = record
        line = json.dumps([self.account, uid, *_json(record)], ensure_ascii=True)
        try:
            if self._journal is None:
                self._journal = open(self._journal_path, "ab")  # noqa: SIM115 - closed by close()
            self._journal.write(line.encode("ascii") + b"\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except OSError as exc:
            raise CliError(f"cannot write {self._journal_path}: {exc.strerror}") from None

    def add_stored(self, meta: dict[str, object]) -> None:
        """``add`` what a target kept of a message a killed run stored (if well-formed)."""
        uid = meta.get("uid")
        fields = [meta.get("size"), meta.get("sha256")]
        if meta.get("first_seen") is not None:
            fields.append(meta["first_seen"])
        record = _record(fields)
        if isinstance(uid, str) and record is not None and record.sha256 is not None:
            self.add(uid, record.size, record.sha256, record.first_seen)

    def forget(self, uids: Iterable[str]) -> None:
        """Forget ``uids`` of this account (saved by ``save``).

        For messages the server has deleted (``+OK`` to QUIT): an id it lists
        later names a new message, to be fetched.
        """
        records = self._accounts.get(self.account, {})
        for uid in uids:
            records.pop(uid, None)

    def prune(self, present: Iterable[str]) -> None:
        """Forget this account's uids that are not in ``present`` (saved by ``save``)."""
        keep = set(present)
        records = self._accounts.get(self.account)
        if records is not None:
            self._accounts[self.account] = {
                uid: record for uid, record in records.items() if uid in keep
            }

    def save(self) -> None:
        """Replace the state file atomically with everything known, then empty the journal."""
        accounts = {
            name: {uid: _json(record) for uid, record in records.items()}
            for name, records in self._accounts.items()
            if records
        }
        data = json.dumps({"version": _VERSION, "accounts": accounts}, indent=1) + "\n"
        tmp = self._path + ".tmp"  # one writer at a time: we hold the lock
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
            fsync_directory(self.maildir)
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self._journal_path, 0)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise CliError(f"cannot write {self._path}: {exc.strerror}") from None
