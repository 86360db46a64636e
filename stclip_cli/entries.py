"""Checked reading of the entries of a JSON input file: each bad value ends in one error naming the file and entry.

Hand-written rather than a schema library: the checks that matter here (finite numbers, x1 <= x2, integer frame
indices, ids in range) and messages in the field's own terms ("must be 4 numbers [x1, y1, x2, y2]") would need as
much glue around one.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, NoReturn

from stclip_cli.errors import StclipError

BOX_FORM = "4 numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2"
LARGEST = 2**63 - 1  # the largest integer a file may give: frame indices and ids become int64
DIGITS = re.compile(r"[0-9]{1,19}")


def shown(value: Any, limit: int = 60) -> str:
    """A value as JSON text (null, "abc", NaN), cut to ``limit`` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Entries:
    """Readers of one file's entries; ``where`` names an entry as a JSON path, e.g. ``frames[3].persons[0].box``."""

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> NoReturn:
        """Raise the one-line error ``<file>: <where> <problem>``."""
        raise StclipError(f"{self.path}: {where} {problem}")

    def field(self, entry: dict, key: str, where: str) -> Any:
        """``entry[key]``, which must be present."""
        if key not in entry:
            self.fail(where, f"has no \"{key}\"")
        return entry[key]

    def mapping(self, value: Any, where: str) -> dict:
        """A JSON object."""
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {shown(value)}")
        return value

    def array(self, value: Any, where: str) -> list:
        """A JSON array."""
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {shown(value)}")
        return value

    def text(self, value: Any, where: str) -> str:
        """A non-empty string."""
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"must be a non-empty string, got {shown(value)}")
        return value

    def number(self, value: Any, where: str, from_text: bool = False) -> float:
        """A finite number (not a boolean, NaN or infinite); with ``from_text`` a string holding one is accepted."""
        number = value
        if from_text and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not _finite(number):
            self.fail(where, f"must be a finite number, got {shown(value)}")
        return float(number)

    def integer(self, value: Any, where: str, first: int = 0, from_text: bool = False) -> int:
        """An integer from ``first`` to 2**63 - 1 (what an index, id or Arrow column holds); with ``from_text`` a
        string of ASCII digits ("00014") is accepted too (not "²", which Python calls a digit but cannot convert)."""
        if from_text and isinstance(value, str) and DIGITS.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not first <= value <= LARGEST:
            self.fail(where, f"must be an integer >= {first}, got {shown(value)}")
        return value

    def box(self, value: Any, where: str) -> list[float]:
        """An xyxy box: 4 finite numbers with x1 <= x2 and y1 <= y2."""
        good = (
            isinstance(value, list) and len(value) == 4
            and all(not isinstance(v, bool) and isinstance(v, (int, float)) and _finite(v) for v in value)
        )
        if not good or value[2] < value[0] or value[3] < value[1]:
            self.fail(where, f"must be {BOX_FORM}, got {shown(value)}")
        return [float(v) for v in value]


def _finite(number: int | float) -> bool:
    """A finite float, and an integer small enough to be one (JSON integers have no size limit)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


__all__ = ["BOX_FORM", "Entries", "shown"]
