"""Frame AP on hand-computed cases, file readers, the AVA CSV evaluation, and the real J-HMDB files."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import LABEL_MAP
from stclip_cli.data.splits import JHMDB_CLASSES
from stclip_cli.errors import StclipError
from stclip_cli.benchmark.metrics import (
    ava_evaluate,
    box_iou,
    evaluate_json,
    frame_ap,
    mean_ap,
    normalise_name,
    read_detect_json,
    read_ground_truth,
    video_key,
    voc_ap,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "zs_jhmdb"
G1, G2, FAR = [0, 0, 10, 10], [20, 20, 30, 30], [100, 100, 110, 110]


def test_box_iou_continuous():
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 5], [5, 0, 15, 10], [50, 50, 60, 60]])) == (
        pytest.approx(np.array([[0.5, 1 / 3, 0.0]]))
    )


def test_voc_ap_all_point():
    assert voc_ap(np.array([1, 0, 1]), 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_ap(np.array([0, 1]), 1) == pytest.approx(0.5)
    assert voc_ap(np.array([]), 3) == 0.0
    assert math.isnan(voc_ap(np.array([1]), 0))


def test_ties_keep_input_order():
    gt = [("a", "x", G1), ("b", "x", G2)]
    fp_first = [("a", "x", 0.9, G1), ("b", "x", 0.5, FAR), ("b", "x", 0.5, G2)]
    tp_first = [("a", "x", 0.9, G1), ("b", "x", 0.5, G2), ("b", "x", 0.5, FAR)]
    assert frame_ap(fp_first, gt, ["x"])["x"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert frame_ap(tp_first, gt, ["x"])["x"] == pytest.approx(1.0)


def test_duplicate_detection_is_false_positive():
    gt = [("a", "x", G1), ("b", "x", G2)]
    dets = [("a", "x", 0.9, G1), ("a", "x", 0.8, [0, 0, 10, 9]), ("b", "x", 0.7, G2)]
    assert frame_ap(dets, gt, ["x"])["x"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_missed_gt_and_class_without_gt():
    gt = [("a", "x", G1), ("b", "x", G2)]
    dets = [("a", "x", 0.9, G1), ("a", "y", 0.9, G1)]
    aps = frame_ap(dets, gt, ["x", "y"])
    assert aps["x"] == pytest.approx(0.5)
    assert math.isnan(aps["y"])
    assert mean_ap(aps) == pytest.approx(0.5)
    assert math.isnan(mean_ap({"y": math.nan}))


def test_detection_in_frame_without_gt_of_class_is_false_positive():
    gt = [("a", "x", G1), ("b", "y", G1)]
    dets = [("b", "x", 0.9, G1), ("a", "x", 0.8, G1)]
    assert frame_ap(dets, gt, ["x"])["x"] == pytest.approx(0.5)


@pytest.mark.parametrize("y2, expected", [(4.99, 0.0), (5.0, 1.0), (5.01, 1.0)])
def test_iou_threshold_boundary(y2, expected):
    assert frame_ap([("a", "x", 1.0, [0, 0, 10, y2])], [("a", "x", G1)], ["x"])["x"] == expected


def test_voc_rule_best_box_already_matched():
    gt = [("a", "x", [0, 0, 10, 10]), ("a", "x", [0, 0, 10, 12])]
    dets = [("a", "x", 0.9, [0, 0, 10, 10]), ("a", "x", 0.8, [0, 0, 10, 10.5])]
    # the second detection's best box (the first GT) is taken: a false positive although IoU(GT2) >= 0.5
    assert frame_ap(dets, gt, ["x"])["x"] == pytest.approx(0.5)


def test_normalise_name():
    assert normalise_name("Brush_hair") == normalise_name("brush  hair") == "brush hair"
    assert normalise_name("IceDancing") == normalise_name("ice dancing") == "ice dancing"
    assert normalise_name("jump/leap") == "jump/leap"


def test_video_key():
    assert video_key("/data/in.mp4") == "in"
    assert video_key("videos/clap/some.video_0/") == "some.video_0"


def _detect_json(path, persons_key):
    data = {
        "video": "clips/v1.mp4", "width": 64, "height": 48, "fps": 25.0, "num_frames": 3,
        "actions": ["brush hair", "clap"],
        "frames": [
            {"index": 0, "time": 0.0, "persons": [{"box": G1, "detector_score": 0.9, "track_id": None,
                                                   persons_key: {"brush hair": 0.8, "clap": 0.1}}]},
            {"index": 1, "time": 0.04, "persons": [{"box": G2, "detector_score": 0.9, "track_id": None,
                                                    persons_key: {"brush hair": 0.3, "clap": 0.6}}]},
            {"index": 2, "time": 0.08, "persons": [{"box": G2, "detector_score": 0.9, "track_id": None,
                                                    persons_key: {"brush hair": 0.9, "clap": 0.0}}]},
        ],
    }
    if persons_key == "labels":
        for frame, label in zip(data["frames"], (["brush_hair"], ["clap"], [])):
            frame["persons"][0]["labels"] = label
    path.write_text(json.dumps(data))
    return path


def test_detect_json_round_trip(tmp_path):
    pred = _detect_json(tmp_path / "pred.json", "scores")
    gt = _detect_json(tmp_path / "gt.json", "labels")
    rows = read_detect_json(pred)
    assert len(rows) == 6 and rows[0] == (("v1", 0), "brush hair", 0.8, G1)
    assert read_ground_truth(gt) == [(("v1", 0), "brush_hair", G1), (("v1", 1), "clap", G2)]
    aps = evaluate_json(pred, gt).aps
    # frame 2 has no GT, its detections are false positives (PASCAL VOC / ActivityNet): brush_hair FP 0.9 (frame 2),
    # TP 0.8, FP 0.3 -> AP 1/2; clap: TP at 0.6, then FPs 0.1 (frame 0) and 0.0 (frame 2) -> AP 1
    assert aps == {"brush_hair": pytest.approx(0.5), "clap": pytest.approx(1.0)}


def test_coco_ground_truth(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({
        "images": [{"id": 10003, "movie": "m", "timestamp": "00003", "width": 320, "height": 240}],
        "annotations": [{"image_id": 10003, "bbox": [1, 2, 3, 4], "action_ids": [3]}],
    }))
    assert read_ground_truth(path) == [(("m", 2), "clap", [1, 2, 3, 4])]


def test_bad_files(tmp_path):
    with pytest.raises(StclipError, match=r"^file not found: .*nope\.json$"):
        read_detect_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StclipError, match=r"bad\.json is not valid JSON"):
        read_detect_json(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(StclipError, match=r"is not a detect JSON \(objects with 'video' and 'frames'\)$"):
        read_detect_json(tmp_path / "other.json")
    pred = _detect_json(tmp_path / "pred.json", "scores")
    with pytest.raises(StclipError, match=r"holds no ground truth: expected persons with \"labels\": \[names\]$"):
        read_ground_truth(pred)


def test_ava_evaluate(tmp_path):
    (tmp_path / "map.pbtxt").write_text(LABEL_MAP)
    (tmp_path / "gt.csv").write_text(
        "v,0902,0.1,0.1,0.5,0.5,1,0\n"
        "v,0902,0.1,0.1,0.5,0.5,11,0\n"
        "v,0903,0.1,0.1,0.5,0.5,11,0\n"
        "v,0904,0.1,0.1,0.5,0.5,1,0\n"      # excluded keyframe
        "v,0902,0.6,0.6,0.9,0.9,12,1\n"     # class not in the label map
    )
    (tmp_path / "excluded.csv").write_text("v,0904\n")
    (tmp_path / "pred.csv").write_text(
        "v,0902,0.1,0.1,0.5,0.5,1,0.9\n"
        "v,0904,0.6,0.6,0.9,0.9,1,0.95\n"   # excluded: ignored
        "v,0905,0.6,0.6,0.9,0.9,11,0.99\n"  # keyframe without GT: a false positive (ActivityNet AVA evaluator)
        "v,0902,0.6,0.6,0.9,0.9,11,0.8\n"   # FP
        "v,0903,0.1,0.1,0.5,0.5,11,0.7\n"   # TP
        "v,0902,0.1,0.1,0.5,0.5,12,0.7\n"   # class not in the label map
        "w,0902,0.1,0.1,0.5,0.5,11,0.99\n"  # a video the GT does not hold: left out
    )
    scores = ava_evaluate(tmp_path / "pred.csv", tmp_path / "gt.csv", tmp_path / "excluded.csv", tmp_path / "map.pbtxt")
    aps = scores.aps
    assert aps["bend/bow (at the waist)"] == pytest.approx(1.0)
    assert aps["sit"] == pytest.approx(0.5 * 1 / 3)
    assert math.isnan(aps["crawl"])
    assert scores.left_out == ["w"] and scores.unpredicted == ["crawl"]
    only = ava_evaluate(tmp_path / "pred.csv", tmp_path / "gt.csv", None, tmp_path / "map.pbtxt", classes=["sit"]).aps
    assert list(only) == ["sit"]
    with pytest.raises(StclipError, match=r"^class 'swim' is not in the label map"):
        ava_evaluate(tmp_path / "pred.csv", tmp_path / "gt.csv", None, tmp_path / "map.pbtxt", classes=["swim"])


@pytest.mark.skipif(not SHARED.exists(), reason="../shared absent")
def test_real_jhmdb_files():
    gt = read_ground_truth(SHARED / "jhmdb_test_gt_min.json")
    assert len(gt) == 9139
    classes = list(JHMDB_CLASSES)
    assert mean_ap(frame_ap([(k, c, 1.0, b) for k, c, b in gt], gt, classes)) == pytest.approx(1.0)
    # the reference person detections scored with the true class of the video: a person-detection AP
    images = {im["id"]: (im["movie"], int(im["timestamp"]) - 1)
              for im in json.loads((SHARED / "jhmdb_test_gt_min.json").read_text())["images"]}
    video_class = {key[0]: cls for key, cls, _ in gt}
    dets = [(images[r["image_id"]], video_class[images[r["image_id"]][0]], float(r["score"]), r["bbox"])
            for r in json.loads((SHARED / "jhmdb_faster_RCNN_person.json").read_text())]
    aps = frame_ap(dets, gt, classes)
    assert 0.85 < mean_ap(aps) < 1.0
    assert all(0.5 < v <= 1.0 for v in aps.values())


@pytest.mark.parametrize("name, content, message", [
    ("excluded.csv", "v\n", "not an AVA excluded-timestamps CSV"),
    ("excluded.csv", "v,abc\n", "not an AVA excluded-timestamps CSV"),
    ("excluded.csv", "v,inf\n", "not an AVA excluded-timestamps CSV"),
    ("excluded.csv", None, "cannot read"),  # a folder
    ("map.pbtxt", b"\xff\xfe\x00item", "not a text .pbtxt label map"),
    ("map.pbtxt", None, "cannot read"),
    ("gt.csv", "v,inf,0.1,0.1,0.5,0.5,1,0\n", "not an AVA CSV"),
    ("gt.csv", "v,0902,0.1,nan,0.5,0.5,1,0\n", "not an AVA CSV"),
    ("gt.csv", None, "cannot read"),
])
def test_bad_ava_files_are_one_line(tmp_path, name, content, message):
    """Each of these ended in a traceback (IndexError, OverflowError, IsADirectoryError, UnicodeDecodeError), or,
    for a NaN box, was accepted without a word."""
    (tmp_path / "map.pbtxt").write_text(LABEL_MAP)
    (tmp_path / "gt.csv").write_text("v,0902,0.1,0.1,0.5,0.5,1,0\n")
    (tmp_path / "pred.csv").write_text("v,0902,0.1,0.1,0.5,0.5,1,0.9\n")
    (tmp_path / "excluded.csv").write_text("v,0904\n")
    bad = tmp_path / name
    bad.unlink()
    if content is None:
        bad.mkdir()
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    with pytest.raises(StclipError, match=message) as err:
        ava_evaluate(tmp_path / "pred.csv", tmp_path / "gt.csv", tmp_path / "excluded.csv", tmp_path / "map.pbtxt")
    assert "\n" not in str(err.value)
