"""Servers that keep accepting when the system runs out of descriptors or threads."""

from __future__ import annotations

import pytest

from pop3_sansio import AcceptPause, refusal

# --- the shared rules ----------------------------------------------------------------------


def test_accept_pause_doubles_up_to_its_longest_and_starts_over_after_an_accept() -> None:
    pause = AcceptPause(first=0.05, longest=0.3)
    assert [pause.failed() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    pause.accepted()
    assert pause.failed() == 0.05


@pytest.mark.parametrize(("first", "longest"), [(0, 1), (-1, 1), (2, 1)])
def test_accept_pause_refuses_pauses_that_are_not_positive_and_ordered(
    first: float, longest: float
) -> None:
    with pytest.raises(ValueError, match="0 < first <= longest"):
        AcceptPause(first, longest)


def test_refusal_is_a_sys_temp_greeting() -> None:
    assert refusal("no room") == b"-ERR [SYS/TEMP] no room\r\n"
