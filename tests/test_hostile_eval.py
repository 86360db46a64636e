"""Hostile `stclip eval --pred/--gt` files: each is one ``error:`` line naming the file and entry (never a traceback,
never a silently different mAP), and no input changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from stclip_cli.cli import app

LABEL_MAP = 'item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\nitem {\n  name: "sit"\n  id: 11\n}\n'


def invoke(*argv):
    return CliRunner().invoke(app, [str(a) for a in argv])


def coco_gt(path: Path, timestamp=None) -> Path:
    images = [{"id": 10001 + f, "movie": "v", "timestamp": f"{f + 1:05d}", "width": 80, "height": 60} for f in range(3)]
    if timestamp is not None:
        images[1]["timestamp"] = timestamp
    annotations = [{"image_id": 10001 + f, "bbox": [10, 10, 40, 50], "action_ids": [3]} for f in range(2)]
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def prediction(path: Path, *videos: str) -> Path:
    data = [{"video": video, "frames": [{"index": 0, "persons": [{"box": [11, 10, 40, 50], "scores": {"clap": 0.9}}]}]}
            for video in videos]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("timestamp, shown", [("²", '"\\u00b2"'), ("1" * 5000, '"111'), ("٣", '"\\u0663"'),
                                              (2**70, "1180591620717411303424")])
def test_a_timestamp_that_is_no_ascii_integer_is_one_line(tmp_path, timestamp, shown):
    gt = coco_gt(tmp_path / "gt.json", timestamp)
    pred = prediction(tmp_path / "pred.json", "v.mp4")
    before = gt.read_bytes(), pred.read_bytes()
    line = one_line_error(invoke("eval", "--pred", pred, "--gt", gt, "--classes", "clap"))
    assert "images[1].timestamp must be an integer >= 1" in line and shown in line
    assert (gt.read_bytes(), pred.read_bytes()) == before


def test_two_predicted_videos_with_one_name_are_not_merged(tmp_path):
    gt = coco_gt(tmp_path / "gt.json")
    pred = prediction(tmp_path / "pred.json", "cam1/v.mp4", "cam2/v.mp4")
    line = one_line_error(invoke("eval", "--pred", pred, "--gt", gt, "--classes", "clap"))
    assert "cam1/v.mp4 and cam2/v.mp4 would both be matched as video 'v'" in line
    same = prediction(tmp_path / "same.json", "cam1/v.mp4", "cam1/v.mp4")  # one video in two objects: one video
    assert invoke("eval", "--pred", same, "--gt", gt, "--classes", "clap").exit_code == 0


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "NaN"])
def test_ava_predictions_with_non_finite_scores_are_refused(tmp_path, score):
    (tmp_path / "map.pbtxt").write_text(LABEL_MAP)
    (tmp_path / "gt.csv").write_text("v,0902,0.1,0.1,0.5,0.5,1,0\n")
    pred = tmp_path / "pred.csv"
    pred.write_text(f"v,0902,0.1,0.1,0.5,0.5,1,0.9\nv,0902,0.2,0.2,0.6,0.6,1,{score}\n")
    line = one_line_error(invoke("eval", "--pred", pred, "--gt", tmp_path / "gt.csv", "--label-map", tmp_path / "map.pbtxt"))
    assert f"{pred} is not an AVA CSV (line 2: score {score} is not a finite number)" in line
