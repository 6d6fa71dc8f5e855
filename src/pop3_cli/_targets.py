"""Where ``pop3 fetch`` stores mail: a Maildir, an mbox file, or an MDA command.

Every target keeps the fetch rule (see ``_fetch``): a message is recorded in
the state, and may then be deleted on the server, only once it is stored and
synced; and a run killed at any point neither loses a message nor stores one
twice. The message is first retrieved whole (in its stored form, see
``_mailform``) into a file of the target's own; then:

Maildir
    The file is in the Maildir's tmp/; storing it is a rename into new/ (see
    ``_deliver``). A copy stored by a killed run is found by its file name,
    which carries the message's id token and digest.

mbox (``--mbox FILE``)
    The file is ``<state>.message`` next to the state. Under the mbox's
    locks (``mailbox.mbox.lock()``: ``lockf`` and a ``FILE.lock`` dot-lock,
    as mutt, procmail and Dovecot take them; waited for up to 30 seconds; a
    dot-lock older than procmail's 1024 seconds with no lockf lock held is
    removed as a dead program's), an *append record*
    ``<state>.append`` is written and synced (where the mbox ended, which
    file it is, the ``From `` line, the dot-lock's identity); then the
    ``From `` line and the message are appended and synced, the message is
    recorded in the state, and the append record removed. A run that starts
    and finds an append record settles it first, under the same locks: the
    bytes are in the mbox whole at that offset (or, if a mail reader
    rewrote the file since, anywhere in it) -- then the message is stored
    and recorded; or the mbox ends with a part of them -- then it is cut
    back to where it ended before (the dot-lock the killed run left is
    recognised by its identity and removed). Until that next run a reader
    sees the part at the end of the mbox. Should a program that ignores the
    dot-lock have appended mail after the part meanwhile, the part is left
    where it is, with a warning. No header is added to find a message
    again: the record says where it went.

MDA (``--mda CMD``)
    The file is ``<state>.message``. An *MDA record* ``<state>.mda`` is
    written and synced, then ``sh -c CMD`` runs with the file as its
    standard input, in a session of its own (Ctrl-C at the terminal does
    not cut a delivery short), under a small shell wrapper that writes the
    exit status to ``<state>.mda-status`` and holds a lock (``flock``) on
    ``<state>.mda-lock`` until it ends. If ``pop3 fetch`` is killed
    meanwhile, the MDA still reads the whole message and finishes; the next
    run waits for the lock, reads the status, and records the message if
    it was 0 (the wrapper marks ``<state>.mda-status.started`` first, so a
    run killed before the MDA started is told apart). Only if the wrapper
    itself was killed (so no status was written) is the outcome unknown:
    then the message stays unrecorded and is delivered again (a warning
    says so): never lost, possibly twice. The status file is not synced:
    after a power cut (rather than a kill) the same can happen.
    Exit 0: delivered. Exit 75 (EX_TEMPFAIL, "try again later"): not
    delivered; the run stops fetching, keeps it and every later message on
    the server, commits what was delivered before (QUIT), and exits with 75.
    Any other status: not delivered, kept on the server, reported; the run
    goes on with the next message and exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import errno
import fcntl
import json
import logging
import mailbox
import mmap
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ._deliver import Delivery, MaildirWriter, Staged, fsync_directory
from ._errors import CliError, UsageError
from ._mailform import MessageForm

__all__ = [
    "EX_TEMPFAIL",
    "Deferred",
    "DeliveryFailed",
    "MaildirTarget",
    "MboxTarget",
    "MdaTarget",
    "Target",
    "check_target",
    "default_state_dir",
    "open_target",
]

log = logging.getLogger("pop3.fetch")

EX_TEMPFAIL = 75
"""sysexits.h: a temporary failure; the MDA asks to be tried again later."""

_LOCK_WAIT = 30.0
"""Seconds to wait for an mbox lock another program holds."""
_STALE_DOT_LOCK = 1024
"""Seconds after which a dot-lock is taken for one a dead program left (procmail's
LOCKTIMEOUT), if no program holds the mbox's lockf lock."""


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _lock_pid(content: bytes) -> int | None:
    """The process id a dot-lock holds (liblockfile's form: the number, a newline)."""
    text = content.strip()
    return int(text) if text.isdigit() and 0 < len(text) <= 10 else None


OnStored = Callable[[], None]
"""Records the message in the state (synced); called once it is stored and synced."""

Meta = dict[str, object]
"""What the state records for a message: ``uid``, ``size``, ``sha256``, ``first_seen``."""

Recorder = Callable[[Meta], None]
"""Records a message a killed run stored (``recover``)."""


class DeliveryFailed(Exception):  # noqa: N818 - an outcome, reported, not raised out of fetch
    """The MDA did not deliver the message (non-zero exit, not 75)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Deferred(CliError):  # noqa: N818 - the MDA's "try again later"
    """The MDA exited with 75: stop, keep the rest on the server, exit 75."""

    exit_code = EX_TEMPFAIL


class Target:
    """A destination: where its state lives, how a message is staged and stored."""

    name = ""
    """What the summary and the log call it."""
    state_dir = ""
    state_prefix = ".pop3-fetch"
    mbox_form = False
    """Whether lines starting with "From " are quoted (mbox)."""

    def recover(self, record: Recorder) -> None:
        """Settle what a killed run left (called holding the state's lock)."""

    def begin(self, token: str, form: MessageForm) -> Staged:
        """Start staging a message (``token`` names its account and unique id)."""
        path = self._spool(".message")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a run that failed (a kill is settled by recover)
        return Staged(path, form, lambda exc: CliError(f"cannot write {path}: {exc.strerror}"))

    def holds(self, token: str, sha256: str) -> bool:
        """Whether a copy found without the state's help holds this very message."""
        return False

    def store(self, pending: Staged, meta: Meta, record: OnStored) -> str:
        """Store the staged message, call ``record`` once it is synced; where it went.

        Raises ``DeliveryFailed`` or ``Deferred`` if it was not stored (MDA).
        """
        raise NotImplementedError

    def _spool(self, suffix: str) -> str:
        return os.path.join(self.state_dir, self.state_prefix + suffix)


def _make_directory(path: str, what: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {what} {path}: {exc.strerror}") from None


class MaildirTarget(Target):
    """``--maildir DIR``: the state in DIR, messages staged in DIR/tmp."""

    def __init__(self, root: str, state_dir: str) -> None:
        self.name = root
        self.writer = MaildirWriter(root)
        self.state_dir = state_dir
        _make_directory(self.state_dir, "the state directory")
        self._stored: set[str] = set()

    def recover(self, record: Recorder) -> None:
        self.writer.remove_unfinished()
        self._stored = self.writer.stored_tokens()

    def begin(self, token: str, form: MessageForm) -> Staged:
        return self.writer.start(token, form)

    def holds(self, token: str, sha256: str) -> bool:
        return token in self._stored and self.writer.holds(token, sha256)

    def store(self, pending: Staged, meta: Meta, record: OnStored) -> str:
        assert isinstance(pending, Delivery)
        path = pending.commit()
        self._stored.add(pending.token)
        record()
        return path


# --- the envelope sender ---------------------------------------------------------------------

_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*<([^<>\s]*)>", re.IGNORECASE | re.MULTILINE)
_FROM_FIELD = re.compile(rb"^From:[ \t]*(.*(?:\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def envelope_sender(path: str) -> str:
    """The sender for an mbox ``From `` line and an MDA's ``%F``: Return-Path, else From.

    Empty if the message names neither (read from its header, at most 64 KiB).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    head = head.replace(b"\r\n", b"\n")
    end = head.find(b"\n\n")
    head = head[: end + 1] if end >= 0 else head
    match = _RETURN_PATH.search(head)
    if match is not None:
        sender = match.group(1).decode("utf-8", "replace")
    else:
        match = _FROM_FIELD.search(head)
        field = match.group(1).decode("utf-8", "replace") if match else ""
        sender = email.utils.parseaddr(field)[1]
    return sender if sender and not any(c.isspace() or ord(c) < 0x20 for c in sender) else ""


# --- mbox ------------------------------------------------------------------------------------


def _mbox_from_line(sender: str, now: float) -> bytes:
    """``From sender date``, as ``mailbox.mboxMessage`` writes it (asctime, UTC)."""
    date = time.asctime(time.gmtime(now))
    return f"From {sender or 'MAILER-DAEMON'} {date}\n".encode("utf-8", "replace")


class MboxTarget(Target):
    """``--mbox FILE``: appended under the mbox locks; state ``.FILE.pop3-fetch*`` beside it."""

    mbox_form = True

    def __init__(self, path: str, state_dir: str, state_prefix: str) -> None:
        self.name = self.path = path
        self.state_dir, self.state_prefix = state_dir, state_prefix
        # When a killed run of ours started to take the dot-lock (``recover``): an empty
        # dot-lock made then is the one it was killed holding.
        self._killed_run_locking: int | None = None
        _make_directory(self.state_dir, "the state directory")
        try:
            self._create()
        except IsADirectoryError:
            raise CliError(f"--mbox {path} is a directory (use --maildir for a Maildir)") from None
        except OSError as exc:
            raise CliError(f"cannot create the mbox {path}: {exc.strerror}") from None

    def _create(self) -> None:
        """Create the mbox if missing, private (``mailbox`` would use the umask)."""
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self._create()  # again: a mail reader may remove an mbox it emptied
            box = mailbox.mbox(self.path, create=False)
        except mailbox.NoSuchMailboxError:
            raise CliError(f"the mbox {self.path} disappeared") from None
        except OSError as exc:
            raise CliError(f"cannot open the mbox {self.path}: {exc.strerror}") from None
        intent = self._spool(".locking")
        try:
            # Said before taking the locks (not synced: it only matters after a kill, not
            # a power cut), so that a dot-lock a kill leaves is known as ours (``recover``).
            try:
                _write_file(intent, f"{os.getpid()}\n".encode(), synced=False)
            except OSError as exc:
                raise CliError(f"cannot write {intent}: {exc.strerror}") from None
            deadline = time.monotonic() + _LOCK_WAIT
            while True:
                try:
                    box.lock()
                    # mailbox's dot-lock is empty: put our process id in it, as liblockfile
                    # does, so that others (and we, after a kill) can tell when it is stale.
                    with contextlib.suppress(OSError):  # a lock without it still works
                        _write_file(self.path + ".lock", f"{os.getpid()}\n".encode(), synced=False)
                    break
                except mailbox.ExternalClashError as exc:
                    if "dot lock" in str(exc) and self._remove_stale_dot_lock():
                        continue
                    if time.monotonic() > deadline:
                        raise CliError(
                            f"the mbox {self.path} stayed locked by another program for "
                            f"{_LOCK_WAIT:g} seconds (if none is running, remove "
                            f"{self.path}.lock); nothing was deleted on the server"
                        ) from None
                    time.sleep(0.1)
                except OSError as exc:
                    raise CliError(f"cannot lock the mbox {self.path}: {exc.strerror}") from None
            try:
                yield
            finally:
                box.unlock()
        finally:
            box.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(intent)

    def _remove_stale_dot_lock(self) -> bool:
        """Remove a dot-lock that a dead program left, when no lockf lock is held.

        (``mailbox`` reports a dot-lock clash only after taking the lockf lock.) Stale:
        one naming a process that is gone (liblockfile's rule); an empty one a killed run
        of ours made; any older than procmail's lock timeout.
        """
        lock = self.path + ".lock"
        try:
            with open(lock, "rb") as f:
                content = f.read(64)
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            return True  # gone meanwhile: try again
        except OSError:
            return False
        pid = _lock_pid(content)
        if pid is not None and pid != os.getpid() and _process_gone(pid):
            reason = f"by process {pid}, which is gone"
        elif (
            not content
            and self._killed_run_locking is not None
            and st.st_mtime_ns >= self._killed_run_locking
        ):
            reason = "by a killed run of pop3 fetch"
        elif time.time() - st.st_mtime >= _STALE_DOT_LOCK:
            reason = f"{time.time() - st.st_mtime:.0f} seconds ago"
        else:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        log.warning("%s: removed a dot-lock left %s", lock, reason)
        return True

    def _dot_lock_identity(self) -> list[int] | None:
        try:
            st = os.stat(self.path + ".lock")
        except OSError:
            return None
        return [st.st_dev, st.st_ino, st.st_mtime_ns]

    @contextlib.contextmanager
    def _open_locked(self, flags: int) -> Iterator[BinaryIO]:
        """The mbox, opened under its locks (so it is the file locked, not one renamed
        over it meanwhile) and closed after them: closing any descriptor of a file drops
        the process's lockf lock on it."""
        opened: list[BinaryIO] = []
        try:
            with self._locked():
                try:
                    fd = os.open(self.path, flags | os.O_RDWR | os.O_CLOEXEC, 0o600)
                except OSError as exc:
                    raise CliError(f"cannot open the mbox {self.path}: {exc.strerror}") from None
                opened.append(open(fd, "r+b", buffering=0))  # noqa: SIM115 - closed below
                yield opened[0]
        finally:
            for file in opened:
                file.close()

    def store(self, pending: Staged, meta: Meta, record: OnStored) -> str:
        pending.finish()
        journal = self._spool(".append")
        sender = envelope_sender(pending.path)
        try:
            with self._open_locked(os.O_APPEND | os.O_CREAT) as out:
                st = os.fstat(out.fileno())
                head = _separator(out, st.st_size) + _mbox_from_line(sender, time.time())
                entry = {
                    "start": st.st_size,
                    "file": [st.st_dev, st.st_ino],
                    "head": head.decode("latin-1"),
                    "dot_lock": self._dot_lock_identity(),
                    "message": meta,
                }
                _write_file(journal, json.dumps(entry).encode("ascii"), synced=True)
                fsync_directory(self.state_dir)
                _write_all(out, head)
                with open(pending.path, "rb") as message:
                    while chunk := message.read(1 << 16):
                        _write_all(out, chunk)
                os.fsync(out.fileno())
                record()
            os.unlink(journal)
            os.unlink(pending.path)
        except OSError as exc:
            raise CliError(f"cannot append to the mbox {self.path}: {exc.strerror}") from None
        return self.path

    def recover(self, record: Recorder) -> None:
        intent = self._spool(".locking")
        with contextlib.suppress(FileNotFoundError):
            # A run of ours (dead: we hold the state's lock) was killed taking or holding
            # the mbox's locks: a dot-lock made since is its own (if empty: killed before
            # it wrote its process id there).
            self._killed_run_locking = os.stat(intent).st_mtime_ns
            os.unlink(intent)
        journal = self._spool(".append")
        message = self._spool(".message")
        entry = _read_record(journal)  # None if torn: then the append had not begun
        if entry is not None:
            self._settle(entry, message, record)
        for path in (journal, message):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _settle(self, entry: dict[str, object], message: str, record: Recorder) -> None:
        head, start, meta = entry.get("head"), entry.get("start"), entry.get("message")
        if not (isinstance(head, str) and isinstance(start, int) and isinstance(meta, dict)):
            return  # not an append record of ours
        try:
            with open(message, "rb") as f:
                whole = head.encode("latin-1") + f.read()
        except FileNotFoundError:
            log.warning("%s: a killed run's message is gone; it may be stored twice", self.path)
            return
        except OSError as exc:
            raise CliError(f"cannot read {message}: {exc.strerror}") from None
        if entry.get("dot_lock") is not None and self._dot_lock_identity() == entry["dot_lock"]:
            # The killed run's own dot-lock: nobody else can have taken it since.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + ".lock")
        if not os.path.exists(self.path):
            return  # the mbox is gone: the message is not in it
        stored = False
        with self._open_locked(0) as box:
            st = os.fstat(box.fileno())
            same = [st.st_dev, st.st_ino] == entry.get("file")
            if same and st.st_size > start:
                box.seek(start)
                got = box.read(len(whole))
                if got == whole:
                    stored = True
                elif whole.startswith(got) and st.st_size == start + len(got):
                    box.truncate(start)  # a torn append: cut it off
                    os.fsync(box.fileno())
                    log.warning(
                        "%s: removed the part of a message that a killed run had appended",
                        self.path,
                    )
                else:
                    stored = _contains(box, whole.lstrip(b"\n"))
                    if not stored and got.startswith(head.encode("latin-1")):
                        log.warning(
                            "%s: a killed run left part of a message at offset %d, and other "
                            "mail was appended after it; it stays on the server, to be "
                            "fetched again",
                            self.path,
                            start,
                        )
            elif not same:
                stored = _contains(box, whole.lstrip(b"\n"))
        if stored:
            record(meta)


def _contains(box: BinaryIO, data: bytes) -> bool:
    """Whether ``data`` is anywhere in the file ``box``."""
    if os.fstat(box.fileno()).st_size < len(data) or not data:
        return False
    with mmap.mmap(box.fileno(), 0, access=mmap.ACCESS_READ) as view:
        return view.find(data) >= 0


def _separator(box: BinaryIO, size: int) -> bytes:
    """What to write first so that the mbox ends with an empty line (as mbox needs)."""
    if size == 0:
        return b""
    box.seek(max(size - 2, 0))
    end = box.read(2)
    if end.endswith(b"\n\n") or (end == b"\n" and size == 1):
        return b""
    return b"\n" if end.endswith(b"\n") else b"\n\n"


def _read_record(path: str) -> dict[str, object] | None:
    """The JSON object in ``path``; ``None`` if there is none (missing, or torn by a kill)."""
    try:
        with open(path, "rb") as f:
            entry = json.loads(f.read())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _write_all(file: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file (a raw write may write less)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.EIO, "nothing written")
        view = view[written:]


def _write_file(path: str, data: bytes, *, synced: bool) -> None:
    """Replace the contents of ``path`` (created private if missing) with ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "wb", buffering=0) as file:
        _write_all(file, data)
        if synced:
            os.fsync(file.fileno())


# --- MDA -------------------------------------------------------------------------------------

# Runs the MDA (sh -c CMD) with the message file as its standard input. The wrapper's
# own standard input is the lock file, whose flock it thus holds until it ends (the MDA
# does not inherit it: its standard input is the message). The exit status is written
# for a later run to read if pop3 fetch was killed meanwhile (renamed into place, so
# never read half-written), and is the wrapper's exit status.
_WRAPPER = """\
: >"$3.started" || exit 75
sh -c "$1" mda <"$2"
status=$?
printf '%s\\n' "$status" >"$3.tmp" && mv -f "$3.tmp" "$3"
exit "$status"
"""


def _substitute(command: str, sender: str, recipient: str) -> str:
    """fetchmail's ``%F`` (the sender) and ``%T`` (the recipient), shell-quoted; ``%%``: ``%``."""
    import shlex

    values = {"F": shlex.quote(sender), "T": shlex.quote(recipient), "%": "%"}
    return re.sub(r"%([FT%])", lambda m: values[m.group(1)], command)


class MdaTarget(Target):
    """``--mda CMD``: each message on the standard input of ``sh -c CMD``."""

    def __init__(self, command: str, recipient: str, state_dir: str, timeout: float) -> None:
        self.command = command
        self.name = f"the MDA ({command.split()[0] if command.split() else command})"
        self.recipient = recipient
        self.state_dir = state_dir
        self.timeout = timeout
        _make_directory(self.state_dir, "the state directory")

    def store(self, pending: Staged, meta: Meta, record: OnStored) -> str:
        pending.finish()
        journal, status_file = self._spool(".mda"), self._spool(".mda-status")
        command = _substitute(self.command, envelope_sender(pending.path), self.recipient)
        for path in (status_file, status_file + ".started"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        lock = self._lock_file()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _write_file(journal, json.dumps({"message": meta}).encode("ascii"), synced=True)
            fsync_directory(self.state_dir)
            status = self._run(command, pending.path, status_file, lock)
        finally:
            os.close(lock)  # the wrapper has ended: the lock goes with the last descriptor
        if status == 0:
            record()
        for path in (journal, status_file, status_file + ".started", pending.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if status == EX_TEMPFAIL:
            raise Deferred(
                f"the MDA asked to try again later (exit status {EX_TEMPFAIL}); "
                "the message and the ones after it were left on the server"
            )
        if status != 0:
            raise DeliveryFailed(status)
        return self.name

    def _lock_file(self) -> int:
        path = self._spool(".mda-lock")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CliError(f"cannot create {path}: {exc.strerror}") from None

    def _run(self, command: str, message: str, status_file: str, lock: int) -> int:
        """Run the MDA to its end; its exit status (128 + N: killed by signal N)."""
        try:
            proc = subprocess.Popen(  # noqa: S603 - the user's own MDA command, by design
                ["/bin/sh", "-c", _WRAPPER, "pop3-fetch-mda", command, message, status_file],
                stdin=lock,
                stdout=sys.stderr.fileno(),  # the MDA's output is not the summary
                start_new_session=True,  # Ctrl-C at the terminal must not cut it short
            )
        except OSError as exc:
            raise CliError(f"cannot start the MDA: {exc.strerror}") from None
        status = proc.wait()
        return status if status >= 0 else 128 - status

    def recover(self, record: Recorder) -> None:
        journal, status_file = self._spool(".mda"), self._spool(".mda-status")
        entry = _read_record(journal)  # None if torn: then the MDA had not been started
        meta = entry.get("message") if entry is not None else None
        if isinstance(meta, dict):
            self._wait_for_earlier_mda()
            try:
                with open(status_file, encoding="ascii") as f:
                    status: int | None = int(f.read().strip())
            except (OSError, ValueError):
                status = None
            if status == 0:
                record(meta)
            elif status is None and os.path.exists(status_file + ".started"):
                log.warning(
                    "an MDA run of a killed pop3 fetch was killed too, leaving no exit "
                    "status: its message will be delivered again (it may have been delivered)"
                )
        for path in (journal, status_file, status_file + ".started", self._spool(".message")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _wait_for_earlier_mda(self) -> None:
        """Wait until an MDA started by a killed run has ended (it holds the lock)."""
        lock = self._lock_file()
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() > deadline:
                    raise CliError(
                        f"an MDA started by an earlier pop3 fetch is still running after "
                        f"{self.timeout:g} seconds; nothing was fetched or deleted"
                    )
                time.sleep(0.05)
        finally:
            os.close(lock)


def default_state_dir() -> str:
    """Where an MDA's state lives without ``--state-dir``: XDG's state directory."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "pop3-fetch")


def check_target(args: argparse.Namespace) -> None:
    """Raise ``UsageError`` unless exactly one target is given, in a form it can take."""
    given = [name for name in ("maildir", "mbox", "mda") if getattr(args, name) is not None]
    if len(given) != 1:
        raise UsageError("give one of --maildir, --mbox or --mda (where to store the mail)")
    if args.mbox is not None and args.crlf:
        raise UsageError("--crlf: an mbox holds LF line ends (use --maildir or --mda)")


def state_location(args: argparse.Namespace) -> tuple[str, str]:
    """The directory and file-name prefix of the state of the target ``args`` name.

    A Maildir's by default in the Maildir; an mbox's beside it, named after it;
    an MDA's in ``default_state_dir()``; ``--state-dir`` wherever it says.
    """
    if args.state_dir is not None:
        return args.state_dir, ".pop3-fetch"
    if args.mbox is not None:
        directory = os.path.dirname(os.path.abspath(args.mbox))
        return directory, f".{os.path.basename(args.mbox)}.pop3-fetch"
    if args.mda is not None:
        return default_state_dir(), ".pop3-fetch"
    return args.maildir, ".pop3-fetch"


def open_target(args: argparse.Namespace) -> Target:
    """The target ``--maildir``, ``--mbox`` or ``--mda`` names (``check_target`` passed)."""
    state_dir, prefix = state_location(args)
    if args.mbox is not None:
        return MboxTarget(args.mbox, state_dir, prefix)
    if args.mda is not None:
        user = args.user
        recipient = user if "@" in user else f"{user}@{args.host}"
        return MdaTarget(args.mda, recipient, state_dir, args.timeout)
    return MaildirTarget(args.maildir, state_dir)
