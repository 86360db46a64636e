"""What a new user meets in the first hour: every missing file said at once, folders and globs of videos, readable
summaries in logs and pipes, CSV and JSON Lines read back, nothing left in the temp folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_args, boxes_file, detect


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_local_ray_session_leaves_nothing_in_the_temp_folder(tmp_path):
    pytest.importorskip("ray")
    import shutil
    import tempfile

    temp = Path(tempfile.mkdtemp(prefix="st", dir="/tmp"))  # short: Ray's socket paths must fit in 107 characters
    code = ("from stclip_cli.corpus.engine import ray_session\n"
            "with ray_session(None, num_cpus=1):\n"
            "    import ray; assert ray.is_initialized()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(temp)})
    left = sorted(p.name for p in temp.iterdir())
    shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert left == []


def test_a_folder_a_glob_and_a_manifest_of_videos_are_inputs(tmp_path, make_video, checkpoint):
    vids = tmp_path / "vids"
    (vids / "cam").mkdir(parents=True)
    make_video(vids, n_frames=4, name="a.mp4")
    make_video(vids / "cam", n_frames=4, name="b.mp4")
    boxes = boxes_file(tmp_path, 4)
    folder = detect(vids, *base_args(checkpoint, boxes), "--json", f"{tmp_path}/f/")
    assert folder.exit_code == 0, folder.output
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["a.json", "b.json"]
    pattern = detect(f"{vids}/*.mp4", *base_args(checkpoint, boxes), "--json", f"{tmp_path}/g/")
    assert pattern.exit_code == 0 and sorted(p.name for p in (tmp_path / "g").iterdir()) == ["a.json"]
    manifest = tmp_path / "list.txt"
    manifest.write_text("vids/cam/b.mp4\n# a comment\nvids/gone.mp4\n")
    listed = detect(f"@{manifest}", *base_args(checkpoint, boxes), "--json", f"{tmp_path}/m/")
    assert listed.exit_code == 1 and "gone.mp4: video not found" in listed.output  # the rest still ran
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["b.json"]


def test_a_folder_of_images_stays_a_frame_folder_and_an_empty_one_fails_first(tmp_path, make_frames_folder, checkpoint):
    from conftest import one_line_error

    frames = make_frames_folder(tmp_path, n_frames=4)
    result = detect(frames, *base_args(checkpoint, boxes_file(tmp_path, 4)), "--json", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out.json").read_text())["num_frames"] == 4
    (tmp_path / "empty").mkdir()
    line = one_line_error(detect(tmp_path / "empty", *base_args(checkpoint, boxes_file(tmp_path, 4))))
    assert line.startswith(f"error: no videos in {tmp_path / 'empty'}")


def test_eval_reads_the_csv_detect_writes(tmp_path, make_video, checkpoint):
    """detect's CSV (header row, action names, times in seconds) against ground truth that names its actions: no
    AVA label map needed; against AVA ids, the label map maps the names."""
    from typer.testing import CliRunner

    from stclip_cli.cli import app

    video = make_video(tmp_path, n_frames=4)
    result = detect(video, *base_args(checkpoint, boxes_file(tmp_path, 4)), "--csv", tmp_path / "pred.csv")
    assert result.exit_code == 0, result.output
    header, *rows = (tmp_path / "pred.csv").read_text().splitlines()
    assert header == "video_id,time,x1,y1,x2,y2,action,score"
    action = rows[0].split(",")[6]
    truth = [row.rsplit(",", 2)[0] for row in rows if row.split(",")[6] == action]  # each frame's person does it
    gt = tmp_path / "gt.csv"
    gt.write_text("video_id,time,x1,y1,x2,y2,action,person\n" + "".join(f"{t},{action},0\n" for t in truth))
    scored = CliRunner().invoke(app, ["eval", "--pred", str(tmp_path / "pred.csv"), "--gt", str(gt), "--json",
                                      str(tmp_path / "r.json")])
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "r.json").read_text())["ap"] == {action: 1.0}
    ids = tmp_path / "ids.csv"
    ids.write_text("".join(f"{t},1,0\n" for t in truth))
    (tmp_path / "map.pbtxt").write_text(f'item {{\n  name: "{action}"\n  id: 1\n}}\n')
    mapped = CliRunner().invoke(app, ["eval", "--pred", str(tmp_path / "pred.csv"), "--gt", str(ids), "--label-map",
                                      str(tmp_path / "map.pbtxt"), "--json", str(tmp_path / "m.json")])
    assert mapped.exit_code == 0 and json.loads((tmp_path / "m.json").read_text())["ap"] == {action: 1.0}
    unmapped = CliRunner().invoke(app, ["eval", "--pred", str(tmp_path / "pred.csv"), "--gt", str(ids)])
    assert unmapped.exit_code == 1 and "names its actions by AVA id: pass --label-map" in unmapped.output


@pytest.mark.slow
def test_the_first_offline_run_names_every_missing_file_at_once(tmp_path, make_video):
    """The README's main command on a fresh machine without network: one line naming the CLIP file and the detector
    file, each with where to get it and the flag that takes a local copy (was: the CLIP file, then after the user
    fetched it, the detector without an address)."""
    video = make_video(tmp_path, n_frames=4)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "YOLO_CONFIG_DIR": str(home / "yolo"),
           "HF_HOME": str(home / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "stclip_cli", "detect", str(video), "--actions", "clap,wave"],
                          capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
    line = lines[0]
    assert line.startswith("error: 2 files are missing: no cached copy of CLIP weights ViT-B-16"), line
    assert "--clip-weights FILE" in line and "yolo11n.pt" in line and "--detector FILE" in line and "--boxes FILE" in line
    assert "https://github.com/ultralytics/assets/releases/latest/download/yolo11n.pt" in line


@pytest.mark.slow
def test_plot_reads_the_json_lines_a_stream_writes(tmp_path, make_video, checkpoint):
    from typer.testing import CliRunner

    from stclip_cli.cli import app

    video = make_video(tmp_path, n_frames=4)
    with open(video, "rb") as stdin:
        piped = subprocess.run([sys.executable, "-m", "stclip_cli", "detect", "-", *map(str, base_args(checkpoint, boxes_file(tmp_path, 4))),
                                "--jsonl", str(tmp_path / "live.jsonl")], stdin=stdin, capture_output=True, text=True,
                               timeout=300)
    assert piped.returncode == 0, piped.stderr
    drawn = CliRunner().invoke(app, ["plot", str(tmp_path / "live.jsonl"), "--out", str(tmp_path / "live.png"), "--quiet"])
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "live.png").read_bytes().startswith(b"\x89PNG")
    (tmp_path / "bad.jsonl").write_text('{"video": "a", "persons": []}\nnot json\n')
    from conftest import one_line_error

    line = one_line_error(CliRunner().invoke(app, ["plot", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "b.png")]))
    assert "line 2 is not JSON" in line
