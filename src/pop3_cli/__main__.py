"""``python -m pop3_cli``: the same as the ``pop3`` console script."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
