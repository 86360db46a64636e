"""The declared dependencies: one OpenCV (the one --show needs and ultralytics installs), torch and torchvision a pair."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def declared() -> list[str]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]


def test_one_opencv_with_a_gui():
    names = [re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower() for requirement in declared()]
    opencv = [name for name in names if name.startswith("opencv")]
    assert opencv == ["opencv-python"], opencv  # headless as well: the last installed decides if --show works


def test_torch_and_torchvision_are_pinned_as_a_pair():
    pins = {r.split("==")[0]: r.split("==")[1] for r in declared() if r.startswith(("torch==", "torchvision=="))}
    assert set(pins) == {"torch", "torchvision"}
