"""Where outputs go and how they are written safely: path checks done before any decoding, shared by every command
and engine. Light on imports (no torch, no codecs) so that bad paths are reported in well under a second."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import StclipError


def check_writable(path: str | Path) -> Path:
    """Fail now, before any decoding, with "cannot write <path>: <reason>" if ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise StclipError(f"cannot write {path}: it is a folder")
    if not parent.exists():
        raise StclipError(f"cannot write {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise StclipError(f"cannot write {path}: {parent} is not a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise StclipError(f"cannot write {path}: permission denied")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as err:
        raise StclipError(f"cannot write {path}: {(err.strerror or str(err)).lower()}") from None
    return path
