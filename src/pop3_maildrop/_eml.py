"""Messages from a folder of ``.eml`` files: what ``pop3 serve --eml-dir`` and
``pop3_testing`` preload into memory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_eml_dir"]


def read_eml_dir(path: str | os.PathLike[str]) -> list[tuple[Path, bytes]]:
    """Every ``*.eml`` file directly in ``path`` with its contents, sorted by file name.

    The name's suffix is matched without regard to case (``.EML`` too); other
    files and subdirectories are skipped. Raises ``FileNotFoundError`` or
    ``NotADirectoryError`` for a bad ``path``, ``OSError`` for a file that
    cannot be read, and ``ValueError`` when the folder holds no ``.eml`` file.
    """
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"no such directory: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a directory: {folder}")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.suffix.lower() == ".eml" and entry.is_file()),
        key=lambda entry: entry.name,
    )
    if not files:
        raise ValueError(f"no .eml files in {folder}")
    return [(file, file.read_bytes()) for file in files]
