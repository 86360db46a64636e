"""Action names from the user: parsed, cleaned and checked before any model work."""

from __future__ import annotations

from pathlib import Path

from .errors import StclipError


def parse_actions(actions: str | None = None, actions_file: str | Path | None = None) -> list[str]:
    """Names from ``--actions`` (comma separated) or ``--actions-file`` (one per line); blanks dropped, order kept.

    Zero names and duplicate names (case- and space-insensitive) are refused: scores are keyed by name.
    """
    if actions_file is not None:
        path = Path(actions_file)
        if not path.is_file():
            raise StclipError(f"actions file not found: {path} (--actions-file)")
        raw = path.read_text(encoding="utf-8", errors="replace").splitlines()
    elif actions is not None:
        raw = actions.split(",")
    else:
        raise StclipError('no actions given; pass --actions "brush teeth,fishing" or --actions-file FILE')
    names = [" ".join(a.split()) for a in raw]
    names = [a for a in names if a]
    if not names:
        raise StclipError('no action names given (only blanks); pass --actions "brush teeth,fishing"')
    seen: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in seen:
            raise StclipError(f"duplicate action name '{name}'; each action must be named once")
        seen[key] = name
    return names
