"""Output paths checked before any work starts: a run that ends by failing to write its report
(or table, or store entry) would lose the whole run.

The checks create nothing (a run refused for another reason leaves no folder behind): the
nearest existing folder on the path must be a folder this process may create entries in, and
nothing on the way may be a file. The flag and the path are named in the message.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputPathError


def writable_folder(path, flag: str) -> Path:
    """`path` is, or can be created as, a folder this process can write files into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {str(path)!r} is a file, not a folder; give a folder path")
    _creatable(path, flag)
    return path


def writable_file(path, flag: str) -> Path:
    """`path` is a file this process can create or replace (its folders may be missing)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {str(path)!r} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {str(path)!r} is not writable; give a file you can write")
    _creatable(path.parent if str(path.parent) else Path("."), flag, shown=path)
    return path


def _creatable(folder: Path, flag: str, shown: Path | None = None) -> None:
    """`folder` exists and is writable, or its nearest existing ancestor is a writable folder."""
    shown = folder if shown is None else shown
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {str(shown)!r} cannot be written: {str(existing)!r} is a "
                              f"file, not a folder; give a path under a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {str(shown)!r} cannot be written: no permission to write "
                              f"in {str(existing)!r}; give a folder you can write to")
