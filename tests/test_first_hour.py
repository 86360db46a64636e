"""What a new user meets in the first hour: readable summaries in logs and pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_the_summary_is_not_cut_at_80_columns_in_a_log(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=6)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 40], "score": 0.9} for f in range(6)]))
    names = "arm wrestling with a rather long name,shaking hands politely,clapping hands together"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "stclip_cli", "detect", str(video), "--actions", names, "--model",
                           "tiny-test", "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--json",
                           str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stderr.splitlines() if "clip.mp4" in line and "│" in line)
    for name in names.split(","):
        assert name in row, proc.stderr  # every top action on the one row, none cut with an ellipsis
    assert str(tmp_path / "out.json") in row


def test_a_local_ray_session_leaves_nothing_in_the_temp_folder(tmp_path):
    import pytest

    pytest.importorskip("ray")
    import shutil
    import tempfile

    temp = Path(tempfile.mkdtemp(prefix="st", dir="/tmp"))  # short: Ray's socket paths must fit in 107 characters
    code = ("from stclip_cli.corpus import ray_session\n"
            "with ray_session(None, num_cpus=1):\n"
            "    import ray; assert ray.is_initialized()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(temp)})
    left = sorted(p.name for p in temp.iterdir())
    shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert left == []
