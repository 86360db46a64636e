"""Hostile flag values for detect: each is one ``error:`` line naming the flag, before any model loads, and no input
file changes. NaN passes every comparison, so NaN is tried wherever a number is taken."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from stclip_cli.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    heavy = sorted(m for m in ("torch", "open_clip", "ultralytics") if m in sys.modules)
    print("HEAVY", ",".join(heavy), "EXIT", done.code)
"""


@pytest.mark.parametrize("flag, value, message", [
    ("--person-conf", "nan", "--person-conf must be a number from 0 to 1"),
    ("--person-conf", "-1", "--person-conf must be a number from 0 to 1"),
    ("--person-conf", "inf", "--person-conf must be a number from 0 to 1"),
    ("--fp-margin", "nan", "--fp-margin must be a number of at least 0"),
    ("--fp-margin", "-0.5", "--fp-margin must be a number of at least 0"),
    ("--smooth", "nan", "--smooth must be a number from 0 to 1"),
    ("--stride", "0", "--stride must be a whole number of at least 1"),
    ("--batch-size", "0", "--batch-size must be a whole number of at least 1"),
    ("--window", "0", "--window must be a whole number of at least 1"),
    ("--top-k", "0", "--top-k must be a whole number of at least 1"),
    ("--interest-k", "-1", "--interest-k must be a whole number of at least 0"),
    ("--device", "foo", "--device must be auto, cpu, cuda or cuda:N"),
    ("--device", "cuda:x", "--device must be auto, cpu, cuda or cuda:N"),
    ("--timeout", "inf", "--timeout must be a number of seconds above 0"),
    ("--timeout", "nan", "--timeout must be a number of seconds above 0"),
    ("--timeout", "0", "--timeout must be a number of seconds above 0"),
    ("--checkpoint", "hf-hub:../../etc/passwd", "is not a Hub id"),
    ("--checkpoint", "hf-hub:org/../x", "is not a Hub id"),
    ("--checkpoint", "hf-hub:~/repo", "is not a Hub id"),
])
def test_bad_flag_is_one_line_before_models_load(tmp_path, flag, value, message):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 16)
    argv = ["detect", str(video), "--actions", "run", flag, value]
    if flag == "--smooth":
        argv.append("--track")
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "HEAVY  EXIT 1" in proc.stdout, proc.stdout
    assert video.read_bytes() == b"\x00" * 16
