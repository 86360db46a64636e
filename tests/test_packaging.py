"""A wheel (what `pip install git+...` or `pip install .` installs) carries everything stclip reads at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["pyproject.toml", "README.md", "LICENSE", "stclip_cli", "models"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built into a wheel (in a copy, so the checkout gets no build/ folder) and installed into a folder."""
    if shutil.which("pip", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("pip is not installed beside this Python")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(src, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((work / "dist").glob("stclip-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    return work / "site"


def test_wheel_holds_the_model_cards_the_open_clip_configs_and_the_sample_clip(installed):
    wheel = next(installed.parent.joinpath("dist").glob("stclip-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    cards = {f"stclip_cli/models/{p.name}" for p in (ROOT / "models").glob("*.yaml")}
    assert cards and cards <= names
    assert "stclip_cli/models/open_clip/stclip-tiny-test.json" in names
    assert {"stclip_cli/assets/arm_wrestling.mp4", "stclip_cli/assets/NOTICE"} <= names


@pytest.mark.slow
def test_installed_wheel_reads_its_cards_outside_the_checkout(installed, tmp_path):
    """Before, the cards were looked up beside the package's parent folder: site-packages/models, which is not there."""
    code = ("import stclip_cli.weights.cards as c; from stclip_cli.model.clip_backbone import OPEN_CLIP_CONFIGS as o; "
            "print(c.CARDS_DIR); print(','.join(c.list_cards())); print(c.load_card('stclip').backbone); "
            "print(o.is_dir())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(installed)})
    assert proc.returncode == 0, proc.stderr
    cards_dir, cards, backbone, configs = proc.stdout.split("\n")[:4]
    assert Path(cards_dir) == installed / "stclip_cli" / "models"
    assert set(cards.split(",")) == {p.stem for p in (ROOT / "models").glob("*.yaml")}
    assert backbone == "ViT-B-16" and configs == "True"
