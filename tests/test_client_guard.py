"""ClientGuard, the rules for using one client connection, without any connection."""

from __future__ import annotations

import pytest

import pop3_sansio as p
from pop3_sansio.client import ClientGuard


class Closes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _guard() -> tuple[ClientGuard, Closes]:
    closes = Closes()
    return ClientGuard(closes), closes


def _session(state: p.State = p.State.TRANSACTION) -> p.ClientSession:
    session = p.ClientSession()
    if state is p.State.ERROR:
        session.connection._our_error = True  # as after our misuse
    else:
        session.connection._state = state  # as after the greeting (and a login)
    return session


def test_an_operation_claims_the_connection_and_frees_it() -> None:
    guard, closes = _guard()
    guard.begin()
    assert guard.busy
    guard.finished()
    assert not guard.busy
    guard.begin()  # free again
    assert closes.count == 0


def test_a_second_operation_while_busy_breaks_and_closes() -> None:
    guard, closes = _guard()
    guard.begin()
    with pytest.raises(ConnectionError, match="an earlier operation was not finished"):
        guard.begin()
    assert repr(guard.broken) == "RuntimeError('an earlier operation was not finished')"
    assert closes.count == 1
    with pytest.raises(ConnectionError, match="after an interrupted operation") as info:
        guard.begin()
    assert info.value.__cause__ is guard.broken


@pytest.mark.parametrize(
    ("exc", "wrote", "state", "breaks"),
    [
        (p.Pop3Error("no", None, "DELE"), True, p.State.TRANSACTION, False),
        (p.LocalProtocolError("bad", reason="bad-argument"), False, p.State.TRANSACTION, False),
        (p.LocalProtocolError("bad", reason="bad-argument"), True, p.State.TRANSACTION, True),
        (p.LocalProtocolError("bad", reason="wrong-state"), False, p.State.ERROR, True),
        (TimeoutError(), True, p.State.TRANSACTION, True),
        (TimeoutError(), False, p.State.TRANSACTION, True),
    ],
    ids=["err", "refused", "refused-after-write", "in-error", "timeout", "timeout-unwritten"],
)
def test_failures_are_classified(
    exc: BaseException, wrote: bool, state: p.State, breaks: bool
) -> None:
    guard, closes = _guard()
    guard.begin()
    guard.failed(exc, wrote=wrote, session=_session(state))
    assert not guard.busy
    assert (guard.broken is exc, closes.count) == ((True, 1) if breaks else (False, 0))


def test_the_first_cause_is_kept() -> None:
    guard, closes = _guard()
    first, second = TimeoutError("first"), OSError("second")
    guard.interrupted(first)
    guard.interrupted(second)
    assert guard.broken is first
    assert closes.count == 2  # closing twice is harmless; the binding's close() is idempotent


def test_a_failed_open_marks_it_broken_once() -> None:
    guard, closes = _guard()
    guard.open_failed()
    assert repr(guard.broken) == "RuntimeError('open() failed')"
    earlier = TimeoutError()
    guard, _ = _guard()
    guard.interrupted(earlier)
    guard.open_failed()
    assert guard.broken is earlier
    assert closes.count == 0  # the binding closes (gracefully or not)


def test_exit_plans() -> None:
    guard, _ = _guard()
    assert guard.exit_plan(None, _session(p.State.TRANSACTION)) == "commit"
    assert guard.exit_plan(None, _session(p.State.AUTHORIZATION)) == "quit"
    assert guard.exit_plan(None, None) == "quit"
    assert guard.exit_plan(KeyError, _session()) == "close"
    guard2, closes = _guard()
    guard2.begin()  # an operation left half-way: broken now, and closed
    assert guard2.exit_plan(None, _session()) == "close"
    assert repr(guard2.broken) == "RuntimeError('an operation was not finished')"
    assert closes.count == 1
    assert guard2.exit_plan(None, _session()) == "close"  # still broken
    assert closes.count == 1


def test_leaving_normally_without_quit_reports_lost_marks() -> None:
    guard, _ = _guard()
    cause = TimeoutError()
    guard.interrupted(cause)
    session = _session()
    guard.closed_without_quit(None, session)  # nothing marked: quiet
    session._marked.add(3)
    guard.closed_without_quit(KeyError, session)  # the caller has its own exception
    guard.closed_without_quit(None, None)
    with pytest.raises(ConnectionError, match="1 message") as info:
        guard.closed_without_quit(None, session)
    assert info.value.__cause__ is cause


@pytest.mark.parametrize(
    ("peer", "allowed", "may"),
    [
        (("127.0.0.1", 110), False, True),
        (("::ffff:127.0.0.1", 110, 0, 0), False, True),
        (("::1", 110, 0, 0), False, True),
        (("192.0.2.1", 110), False, False),
        (None, False, False),
        (("192.0.2.1", 110), True, True),
    ],
)
def test_new_session_plaintext_policy(peer: object, allowed: bool, may: bool) -> None:
    guard, _ = _guard()
    session = guard.new_session(
        tls=None, allow_plaintext_login=allowed, peer=peer, random_bytes=None, max_message_size=5
    )
    assert (session.allow_plaintext_login, session.may_send_password) == (may, may)
    assert session.max_message_size == 5
    tls = guard.new_session(
        tls="implicit",
        allow_plaintext_login=False,
        peer=("192.0.2.1", 995),
        random_bytes=None,
        max_message_size=None,
    )
    assert (tls.allow_plaintext_login, tls.connection.tls_active) == (False, True)
