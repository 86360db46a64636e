"""Action names from the user: parsed, cleaned and checked before any model work."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from stclip_cli.errors import StclipError


# embeddings, overrides and isolates reorder the text around them: a label would show other words than the name
BIDI_OVERRIDES = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def parse_actions(actions: str | None = None, actions_file: str | Path | None = None) -> list[str]:
    """Names from ``--actions`` (comma separated; ``\\,`` is a comma inside a name, ``\\\\`` a backslash) or
    ``--actions-file`` (one per line, UTF-8, where commas are plain text); blanks dropped, order kept.

    Zero names and duplicate names (case- and space-insensitive) are refused: scores are keyed by name.
    """
    if actions_file is not None and actions is not None:
        raise StclipError("--actions and --actions-file both name the actions: pass one of them")
    if actions_file is not None:
        raw = _read_lines(Path(actions_file))
    elif actions is not None:
        raw = split_names(actions)
    else:
        raise StclipError('no actions given; pass --actions "brush teeth,fishing" or --actions-file FILE')
    names = [" ".join(a.split()) for a in raw]
    names = [a for a in names if a]
    if not names:
        raise StclipError('no action names given (only blanks); pass --actions "brush teeth,fishing"')
    seen: dict[str, str] = {}
    for name in names:
        bad = next((c for c in name if unicodedata.category(c) == "Cc" or c in BIDI_OVERRIDES), None)
        if bad is not None:
            raise StclipError(f"action name {ascii(name)} holds the control character U+{ord(bad):04X}; names are "
                              f"plain text")
        key = name.casefold()
        if key in seen:
            raise StclipError(f"duplicate action name '{name}'; each action must be named once")
        seen[key] = name
    return names


def split_names(text: str) -> list[str]:
    """``--actions``'s names: split at commas, except a comma written ``\\,``; ``\\\\`` is one backslash."""
    names, current, chars = [], [], iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append(following if following in (",", "\\") else char + following)
        elif char == ",":
            names.append("".join(current))
            current = []
        else:
            current.append(char)
    names.append("".join(current))
    return names


def _read_lines(path: Path) -> list[str]:
    """The lines of an actions file, or one error line naming it: missing, a folder, unreadable, not UTF-8 text."""
    where = f"{path} (--actions-file)"
    if path.is_dir():
        raise StclipError(f"{where} is a folder; give a text file with one action name per line")
    if not path.exists():
        raise StclipError(f"actions file not found: {where}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise StclipError(f"cannot read {where}: {(err.strerror or str(err)).lower()}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise StclipError(f"{where} is not UTF-8 text (byte {err.start}); save it as UTF-8, one action name per line") from None
    return text.splitlines()
