"""The base of the core's light value classes: the events, instructions and codes.

A value class lists its fields in ``__slots__`` (declaration order, which is
also ``__match_args__``), validates and stores them in a hand-written
``__init__``, and inherits the rest from ``Value``: equality and hashing by
type and fields, a ``repr`` that leaves out the fields named in ``_hidden``
(secrets and bodies, docs/architecture.md invariant 7), immutability, and
``pickle``/``copy`` through the constructor.

They are not dataclasses on purpose: importing ``dataclasses`` costs about a
third of ``import poplib`` and creating each dataclass about half a
millisecond (docs/architecture.md, section 8).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import NoReturn

__all__ = ["Value", "init_field"]

init_field = object.__setattr__
"""Store a field in ``__init__`` (``Value.__setattr__`` refuses every assignment)."""


class Value:
    """Slotted and immutable; equal, hashed, shown and pickled by its fields."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()
    _hidden: frozenset[str] = frozenset()
    """Fields that ``repr`` leaves out."""

    def _fields(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self.__match_args__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._fields() == other._fields()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__match_args__
            if name not in self._hidden
        )
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[Value], tuple[object, ...]]:
        return type(self), self._fields()
