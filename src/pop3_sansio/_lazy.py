"""PEP 562 exports for the public modules: a name's module is imported on first use.

``import pop3_sansio.client`` then costs only what the names a program touches
need (docs/architecture.md, section 8); ``from pop3_sansio.client import X``
works as for an eager module, and the value is cached in the module's globals.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, object], table: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a module whose ``table`` maps name -> ``_module``."""
    module_name = str(namespace["__name__"])
    exported = namespace["__all__"]
    assert isinstance(exported, list)

    def __getattr__(name: str) -> object:  # noqa: N807 - the PEP 562 name
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(__import__(f"pop3_sansio.{source}", fromlist=[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *exported})

    return __getattr__, __dir__
