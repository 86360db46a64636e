"""`stclip eval`: which classes a prediction file is scored on, where a model's persons come from (detector,
boxes files, the dataset's detections), frames without ground truth, and one-line errors for bad files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SHARED, one_line_error
from stclip_cli.cli import app
from stclip_cli.data.splits import UCF24_CLASSES, get_split
from synthetic import make_jhmdb, person_box

runner = CliRunner()
JHMDB_GT = SHARED / "data" / "zs_jhmdb" / "jhmdb_test_gt_min.json"
SPLIT1 = {"clap", "sit", "wave", "throw", "pullup", "catch"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])



def notes(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("note:")]


# --- which classes --pred is scored on ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_prediction(tmp_path_factory) -> Path:
    """A detect JSON over every video of the real GT: GT boxes; split-1 videos score their class 0.8 and the other
    split-1 classes 0.1; videos of the other classes score every split-1 class 0.9 (outside split 1's test set)."""
    if not JHMDB_GT.is_file():
        pytest.skip(f"{JHMDB_GT} not available")
    data = json.loads(JHMDB_GT.read_text())
    classes = [line.strip() for line in (JHMDB_GT.parent / "all_label.txt").read_text().splitlines()]
    images = {im["id"]: (im["movie"], int(im["timestamp"]) - 1) for im in data["images"]}
    videos: dict[str, dict[int, list]] = {}
    for ann in data["annotations"]:
        movie, frame = images[ann["image_id"]]
        label = classes[ann["action_ids"][0] - 1]
        if label in SPLIT1:
            scores = {c: (0.8 if c == label else 0.1) for c in SPLIT1}
        else:
            scores = {c: 0.9 for c in SPLIT1} | {label: 0.8}
        videos.setdefault(movie, {}).setdefault(frame, []).append({"box": ann["bbox"], "scores": scores})
    pred = [{"video": movie, "frames": [{"index": f, "persons": p} for f, p in sorted(frames.items())]}
            for movie, frames in videos.items()]
    path = tmp_path_factory.mktemp("pred") / "pred.json"
    path.write_text(json.dumps(pred))
    return path


def test_real_jhmdb_split_scores_its_six_classes(real_prediction, tmp_path):
    out = tmp_path / "r.json"
    result = invoke("eval", "--pred", real_prediction, "--gt", JHMDB_GT, "--dataset", "jhmdb", "--split", "1", "--json", out)
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    assert set(scored["ap"]) == SPLIT1
    # the 190 videos of the other 15 classes are not split 1's test videos: their 0.9 scores are not scored
    assert scored["map"] == pytest.approx(1.0) and scored["videos"] == 78
    assert len(scored["left_out_videos"]) == 268 - 78
    assert notes(result.output)[0] == "note: averaging 6 classes, jhmdb split 1 test classes"
    seen = invoke("eval", "--pred", real_prediction, "--gt", JHMDB_GT, "--dataset", "jhmdb", "--split", "1",
                  "--subset", "train", "--json", out)
    assert seen.exit_code == 0, seen.output
    assert set(json.loads(out.read_text())["ap"]) == set(get_split("jhmdb", 1).train_classes)


@pytest.mark.slow
def test_real_jhmdb_every_class_is_said(real_prediction, tmp_path):
    out = tmp_path / "r.json"
    result = invoke("eval", "--pred", real_prediction, "--gt", JHMDB_GT, "--json", out)
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())["ap"]) == 21
    assert notes(result.output)[0] == (
        "note: averaging 21 classes, every class of the ground truth (choose with --dataset/--split or --classes)")
    explicit = invoke("eval", "--pred", real_prediction, "--gt", JHMDB_GT, "--classes", "Clap, pullup", "--json", out)
    assert explicit.exit_code == 0, explicit.output
    assert list(json.loads(out.read_text())["ap"]) == ["clap", "pullup"]
    assert notes(explicit.output)[0] == "note: averaging 2 classes, the --classes list"


def _coco_gt(path: Path, frames: int = 3, annotated: int = 2) -> Path:
    """One video "v" with ``frames`` images, the first ``annotated`` holding a clap (action id 3) at [10, 10, 40, 50]."""
    images = [{"id": 10001 + f, "movie": "v", "timestamp": f"{f + 1:05d}", "width": 80, "height": 60} for f in range(frames)]
    annotations = [{"image_id": 10001 + f, "bbox": [10, 10, 40, 50], "action_ids": [3]} for f in range(annotated)]
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def _pred(path: Path, frames: dict[int, float], video: str = "v.mp4", extra: list | None = None) -> Path:
    data = {"video": video, "frames": [{"index": f, "persons": [{"box": [11, 10, 40, 50], "scores": {"clap": s, "sit": 0.5}}]}
                                       for f, s in frames.items()]}
    path.write_text(json.dumps([data, *(extra or [])]))
    return path


def test_detection_on_frame_without_ground_truth_is_false_positive(tmp_path):
    gt = _coco_gt(tmp_path / "gt.json")
    # frame 2 is an image without annotation, frame 5 is not listed at all: both are frames of a test video
    for frame in (2, 5):
        pred = _pred(tmp_path / "pred.json", {frame: 0.9, 0: 0.8, 1: 0.7})
        out = tmp_path / "r.json"
        result = invoke("eval", "--pred", pred, "--gt", gt, "--classes", "clap", "--json", out)
        assert result.exit_code == 0, result.output
        # FP at 0.9, then two TPs: precision envelope 2/3 over the whole recall range
        assert json.loads(out.read_text())["ap"]["clap"] == pytest.approx(2 / 3)


def test_videos_outside_the_ground_truth_are_left_out_and_said(tmp_path):
    gt = _coco_gt(tmp_path / "gt.json")
    other = {"video": "w.mp4", "frames": [{"index": 0, "persons": [{"box": [0, 0, 5, 5], "scores": {"clap": 1.0}}]}]}
    pred = _pred(tmp_path / "pred.json", {0: 0.8, 1: 0.7}, extra=[other])
    result = invoke("eval", "--pred", pred, "--gt", gt, "--classes", "clap,wave", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["ap"] == {"clap": pytest.approx(1.0), "wave": None}
    assert notes(result.output) == [
        "note: averaging 1 class, the --classes list; no ground truth for wave (left out of the mean); "
        "no predictions for wave",
        "note: scored 2 frame(s) of 1 test video(s); 0 test video(s) have no predictions",
        "note: 1 video(s) of pred.json are not among the 1 test video(s) of gt.json and were not scored: w",
    ]


def test_a_prediction_file_covering_few_test_videos_is_said(real_prediction, tmp_path):
    """One of split 1's 78 test videos predicted: the mAP is low, and the note says why."""
    data = json.loads(real_prediction.read_text())
    test_videos = sorted({row["video"] for row in data if any(
        set(p["scores"]) == SPLIT1 and max(p["scores"].values()) == 0.8 for f in row["frames"] for p in f["persons"])})
    one = tmp_path / "one.json"
    one.write_text(json.dumps([row for row in data if row["video"] == test_videos[0]]))
    out = tmp_path / "r.json"
    result = invoke("eval", "--pred", one, "--gt", JHMDB_GT, "--dataset", "jhmdb", "--split", "1", "--json", out)
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    frames = sum(len(row["frames"]) for row in json.loads(one.read_text()))
    assert notes(result.output)[1].startswith(
        f"note: scored {frames} frame(s) of 78 test video(s); 77 test video(s) have no predictions: ")
    assert scored["frames"] == frames and len(scored["videos_without_predictions"]) == 77
    assert test_videos[0] not in scored["videos_without_predictions"]


def test_ava_dataset_without_split_scores_every_class_of_the_label_map(tmp_path):
    from conftest import LABEL_MAP

    (tmp_path / "map.pbtxt").write_text(LABEL_MAP)
    (tmp_path / "gt.csv").write_text("v,0902,0.1,0.1,0.5,0.5,1,0\nu,0902,0.1,0.1,0.5,0.5,11,0\n")
    (tmp_path / "pred.csv").write_text("v,0902,0.1,0.1,0.5,0.5,1,0.9\n")
    out = tmp_path / "r.json"
    result = invoke("eval", "--pred", tmp_path / "pred.csv", "--gt", tmp_path / "gt.csv", "--label-map",
                    tmp_path / "map.pbtxt", "--dataset", "ava", "--json", out)
    assert result.exit_code == 0, result.output
    plain = invoke("eval", "--pred", tmp_path / "pred.csv", "--gt", tmp_path / "gt.csv", "--label-map",
                   tmp_path / "map.pbtxt", "--json", tmp_path / "plain.json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(out.read_text())["ap"] == json.loads((tmp_path / "plain.json").read_text())["ap"]
    assert notes(result.output)[:2] == notes(plain.output)[:2]
    assert notes(result.output)[1] == "note: scored 1 frame(s) of 2 test video(s); 1 test video(s) have no predictions: u"


@pytest.mark.parametrize("args, expected", [
    (["--split", "1"], "error: --split needs --dataset: which benchmark's split?"),
    (["--dataset", "jhmdb"], "error: --dataset needs --split (or --classes) to choose the classes of --pred"),
    (["--dataset", "jhmdb", "--split", "1", "--classes", "clap"],
     "error: --classes and --split both choose the classes: pass one of them"),
    (["--classes", " , "], 'error: --classes names no class; pass e.g. --classes "clap,sit,wave"'),
    (["--classes", "clap,Clap"], "error: class 'Clap' is named twice in --classes"),
    (["--dataset", "jhmdb", "--split", "9"], "error: unknown split 9 for jhmdb: expected one of 1, 2, 3, 4 or all"),
    (["--dataset", "jhmdb", "--split", "1", "--subset", "dev"], "error: unknown subset 'dev': expected one of train, test"),
    (["--detector", "yolo11n.yaml"], "error: --boxes and --detector choose the persons a model scores; a --pred file is already scored"),
])
def test_class_choice_errors(tmp_path, args, expected):
    gt, pred = _coco_gt(tmp_path / "gt.json"), _pred(tmp_path / "pred.json", {0: 0.9})
    assert one_line_error(invoke("eval", "--pred", pred, "--gt", gt, *args)) == expected


# --- one error line for each bad entry ----------------------------------------------------------------------------

GOOD_PERSON = {"box": [1, 2, 30, 40], "detector_score": 0.9, "scores": {"clap": 0.7}}


def _with_person(**change) -> dict:
    person = {k: v for k, v in {**GOOD_PERSON, **change}.items() if v is not ...}
    return {"video": "v.mp4", "frames": [{"index": 0, "persons": [GOOD_PERSON]}, {"index": 1, "persons": [person]}]}


BAD_PREDICTIONS = [
    (_with_person(box=...), 'frames[1].persons[0] has no "box"'),
    (_with_person(box=[1, 2, 3]), "frames[1].persons[0].box must be 4 numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, got [1, 2, 3]"),
    (_with_person(box=[30, 2, 1, 40]), "frames[1].persons[0].box must be 4 numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, got [30, 2, 1, 40]"),
    (_with_person(box=[1, 40, 30, 2]), "frames[1].persons[0].box must be 4 numbers"),
    (_with_person(box=[1, 2, "30", 40]), "frames[1].persons[0].box must be 4 numbers"),
    (_with_person(scores={"clap": "abc"}), 'frames[1].persons[0].scores["clap"] must be a finite number, got "abc"'),
    (_with_person(scores={"clap": None}), 'frames[1].persons[0].scores["clap"] must be a finite number, got null'),
    (_with_person(scores={"clap": float("nan")}), 'frames[1].persons[0].scores["clap"] must be a finite number, got NaN'),
    (_with_person(scores={"clap": float("inf")}), 'frames[1].persons[0].scores["clap"] must be a finite number, got Infinity'),
    (_with_person(scores={"clap": True}), 'frames[1].persons[0].scores["clap"] must be a finite number, got true'),
    (_with_person(scores=...), 'frames[1].persons[0] has no "scores"'),
    (_with_person(scores=[0.5]), "frames[1].persons[0].scores must be an object, got [0.5]"),
    ({"video": "v.mp4", "frames": [{"index": 1.5, "persons": []}]}, "frames[0].index must be an integer >= 0, got 1.5"),
    ({"video": "v.mp4", "frames": [{"index": "3x", "persons": []}]}, 'frames[0].index must be an integer >= 0, got "3x"'),
    ({"video": "v.mp4", "frames": [{"index": -1, "persons": []}]}, "frames[0].index must be an integer >= 0, got -1"),
    ({"video": "v.mp4", "frames": [{"persons": []}]}, 'frames[0] has no "index"'),
    ({"video": "v.mp4", "frames": [{"index": 0, "persons": {}}]}, "frames[0].persons must be a list, got {}"),
    ({"video": "v.mp4", "frames": [{"index": 0, "persons": [7]}]}, "frames[0].persons[0] must be an object, got 7"),
    ({"video": "v.mp4", "frames": "x"}, 'frames must be a list, got "x"'),
    ({"video": 3, "frames": []}, "video must be a non-empty string, got 3"),
    (_with_person(box=[1, 2, 10 ** 400, 40]), "frames[1].persons[0].box must be 4 numbers"),
    (_with_person(scores={"clap": 10 ** 400}), 'frames[1].persons[0].scores["clap"] must be a finite number'),
    ([{"video": "a.mp4", "frames": []}, _with_person(box=[1, 2])], "[1].frames[1].persons[0].box must be 4 numbers"),
]


@pytest.mark.parametrize("data, expected", BAD_PREDICTIONS)
def test_bad_prediction_entry_is_one_error_line(tmp_path, data, expected):
    gt = _coco_gt(tmp_path / "gt.json")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(data))
    line = one_line_error(invoke("eval", "--pred", pred, "--gt", gt))
    assert line.startswith(f"error: {pred}: {expected}"), line


def _coco(annotation: dict | None = None, image: dict | None = None) -> dict:
    good_image = {"id": 10001, "movie": "v", "timestamp": "00001", "width": 80, "height": 60}
    good_annotation = {"image_id": 10001, "bbox": [10, 10, 40, 50], "action_ids": [3]}
    annotation = {k: v for k, v in {**good_annotation, **(annotation or {})}.items() if v is not ...}
    image = {k: v for k, v in {**good_image, **(image or {})}.items() if v is not ...}
    return {"images": [image], "annotations": [good_annotation, annotation]}


BAD_GROUND_TRUTH = [
    (_coco({"bbox": [10, 10]}), "annotations[1].bbox must be 4 numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, got [10, 10]"),
    (_coco({"bbox": [40, 10, 10, 50]}), "annotations[1].bbox must be 4 numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, got [40, 10, 10, 50]"),
    (_coco({"bbox": [10, 10, float("nan"), 50]}), "annotations[1].bbox must be 4 numbers"),
    (_coco({"bbox": ...}), 'annotations[1] has no "bbox"'),
    (_coco({"action_ids": ...}), 'annotations[1] has no "action_ids"'),
    (_coco({"action_ids": 3}), "annotations[1].action_ids must be a list, got 3"),
    (_coco({"action_ids": [0]}), "annotations[1].action_ids[0] must be an integer >= 1, got 0"),
    (_coco({"action_ids": [22]}), "annotations[1].action_ids[0] must be an action id in 1..21, got 22"),
    (_coco({"action_ids": ["clap"]}), 'annotations[1].action_ids[0] must be an integer >= 1, got "clap"'),
    (_coco({"image_id": 99}), "annotations[1].image_id names no image of images[]: 99"),
    (_coco({"image_id": 1.5}), "annotations[1].image_id must be an integer >= 0, got 1.5"),
    (_coco(image={"timestamp": "abc"}), 'images[0].timestamp must be an integer >= 1, got "abc"'),
    (_coco(image={"timestamp": 2.5}), "images[0].timestamp must be an integer >= 1, got 2.5"),
    (_coco(image={"movie": None}), "images[0].movie must be a non-empty string, got null"),
    (_coco(image={"id": ...}), 'images[0] has no "id"'),
    ({"images": {}, "annotations": []}, "images must be a list, got {}"),
    ({"video": "v.mp4", "frames": [{"index": 0, "persons": [{"box": [1, 2, 3, 4], "labels": "clap"}]}]},
     'frames[0].persons[0].labels must be a list, got "clap"'),
    ({"video": "v.mp4", "frames": [{"index": 0, "persons": [{"labels": ["clap"]}]}]}, 'frames[0].persons[0] has no "box"'),
]


@pytest.mark.parametrize("data, expected", BAD_GROUND_TRUTH)
def test_bad_ground_truth_entry_is_one_error_line(tmp_path, data, expected):
    pred = _pred(tmp_path / "pred.json", {0: 0.9})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(data))
    line = one_line_error(invoke("eval", "--pred", pred, "--gt", gt))
    assert line.startswith(f"error: {gt}: {expected}"), line


# --- where a model's persons come from ----------------------------------------------------------------------------

TEST_CLASSES = ["clap", "sit"]


@pytest.fixture(scope="module")
def jhmdb_root(tmp_path_factory) -> Path:
    return make_jhmdb(tmp_path_factory.mktemp("jhmdb"), videos_per_class=1, frames=6, classes=TEST_CLASSES)


def eval_model(checkpoint: Path, root: Path, out: Path, *args, dataset: str = "jhmdb"):
    # the fixture's one video per class lies in the official train half: --pool all makes them test videos
    return invoke("eval", "--dataset", dataset, "--split", "1", "--data-root", root, "--model", "tiny-test",
                  "--checkpoint", checkpoint, "--device", "cpu", "--quiet", "--json", out, "--pool", "all", *args)


def _detect_json_boxes(folder: Path, video: str, boxes: dict[int, list[float]]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{video}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"video": video, "frames": [
        {"index": f, "persons": [{"box": box, "detector_score": 0.9}]} for f, box in boxes.items()]}))
    return path


@pytest.mark.slow
def test_jhmdb_persons_from_a_boxes_folder_equal_gt_boxes(tmp_path, checkpoint, jhmdb_root):
    folder = tmp_path / "boxes"
    for number, cls in enumerate(TEST_CLASSES, 1):
        _detect_json_boxes(folder, f"{cls}_video_0", {f: person_box(f + 1, number) for f in range(6)})
    result = eval_model(checkpoint, jhmdb_root, tmp_path / "boxes.json", "--boxes", folder)
    assert result.exit_code == 0, result.output
    gt = eval_model(checkpoint, jhmdb_root, tmp_path / "gt.json", "--gt-boxes")
    assert gt.exit_code == 0, gt.output
    by_boxes, by_gt = (json.loads((tmp_path / n).read_text()) for n in ("boxes.json", "gt.json"))
    assert by_boxes["persons"] == f"boxes files in {folder}" and by_gt["persons"] == "ground truth"
    assert by_boxes["ap"] == pytest.approx(by_gt["ap"]) and by_boxes["keyframes"] == 12
    missing = one_line_error(eval_model(checkpoint, jhmdb_root, tmp_path / "x.json", "--boxes", tmp_path / "nope"))
    assert missing == f"error: boxes file or folder not found: {tmp_path / 'nope'} (--boxes)"
    (folder / "sit_video_0.json").unlink()
    missing = one_line_error(eval_model(checkpoint, jhmdb_root, tmp_path / "x.json", "--boxes", folder))
    assert missing == f"error: no boxes file for video sit_video_0 in {folder}: expected {folder / 'sit_video_0.json'}"


def test_jhmdb_dataset_detections_file_and_its_bad_entries(tmp_path, checkpoint, jhmdb_root):
    default = eval_model(checkpoint, jhmdb_root, tmp_path / "default.json")
    explicit = eval_model(checkpoint, jhmdb_root, tmp_path / "explicit.json", "--boxes", jhmdb_root / "jhmdb_faster_RCNN_person.json")
    assert default.exit_code == 0 and explicit.exit_code == 0, default.output + explicit.output
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("default.json", "explicit.json"))
    assert a["persons"] == b["persons"] == "dataset detections" and a["ap"] == b["ap"]
    bad = tmp_path / "dets.json"
    bad.write_text(json.dumps([{"image_id": 10001, "bbox": [1, 2, 3, 4], "score": "0.9"},
                               {"image_id": 10001, "bbox": [1, 2, 3, 4], "score": "abc"}]))
    line = one_line_error(eval_model(checkpoint, jhmdb_root, tmp_path / "x.json", "--boxes", bad))
    assert line == f'error: {bad}: [1].score must be a finite number, got "abc"'
    line = one_line_error(eval_model(checkpoint, jhmdb_root, tmp_path / "x.json", "--gt-boxes", "--detector", "yolo11n.yaml"))
    assert line == "error: --gt-boxes, --boxes and --detector each choose the persons: pass one of them"


@pytest.mark.slow
def test_jhmdb_persons_from_a_yolo_detector(tmp_path, checkpoint, jhmdb_root, monkeypatch):
    from stclip_cli.core.detection import YoloPersonDetector

    seen: list[int] = []
    detect = YoloPersonDetector.detect

    def counting(self, images, indices=None):
        seen.extend(indices)
        return detect(self, images, indices)

    monkeypatch.setattr(YoloPersonDetector, "detect", counting)
    result = eval_model(checkpoint, jhmdb_root, tmp_path / "yolo.json", "--detector", "yolo11n.yaml",
                        "--person-conf", "0.0001", "--max-persons", "2")
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "yolo.json").read_text())
    assert scored["persons"] == "detector yolo11n.yaml" and scored["keyframes"] == 12
    assert sorted(seen) == sorted(list(range(6)) * 2)  # every frame of both test videos went through the detector
    assert all(scored["ap"][c] is not None for c in TEST_CLASSES)


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory) -> Path:
    """One UCF101-24 split-1 test video (IceDancing), 12 frames, its tube on frames 4..11 only."""
    root = tmp_path_factory.mktemp("ucf")
    key = "IceDancing/v_IceDancing_g01_c01"
    folder = root / "rgb-images" / key
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 13):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    tube = np.array([[f, 10, 10, 40, 50] for f in range(5, 13)], np.float32)  # 1-based frames 5..12
    labels = list(UCF24_CLASSES)
    (root / "UCF101v2-GT.pkl").write_bytes(pickle.dumps({
        "labels": labels, "gttubes": {key: {labels.index("IceDancing"): [tube]}}, "nframes": {key: 12},
        "resolution": {key: (60, 80)}, "train_videos": [[]], "test_videos": [[key]]}))
    return root


def test_ucf24_detected_persons_on_frames_outside_the_tube_are_false_positives(tmp_path, checkpoint, ucf_root):
    folder = tmp_path / "boxes"
    _detect_json_boxes(folder, "v_IceDancing_g01_c01", {f: [10, 10, 40, 50] for f in range(12)})
    result = eval_model(checkpoint, ucf_root, tmp_path / "r.json", "--boxes", folder, "--single-action", dataset="ucf24")
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "r.json").read_text())
    assert scored["keyframes"] == 12
    # soft voting gives every box the same scores, so ties keep frame order: 4 false positives (frames 0-3, no GT),
    # then 8 true positives -> precision 8/12 over the whole recall range (only the tube's frames: 1.0)
    assert scored["ap"]["IceDancing"] == pytest.approx(2 / 3)
    gt = eval_model(checkpoint, ucf_root, tmp_path / "gt.json", "--gt-boxes", "--single-action", dataset="ucf24")
    assert gt.exit_code == 0, gt.output
    assert json.loads((tmp_path / "gt.json").read_text())["ap"]["IceDancing"] == pytest.approx(1.0)
    line = one_line_error(eval_model(checkpoint, ucf_root, tmp_path / "x.json", "--boxes", folder / "v_IceDancing_g01_c01.json",
                                     dataset="ucf24"))
    assert line == ("error: ucf24 has no detections file format of its own: pass --boxes DIR with one boxes file per "
                    "video (<video>.json, as detect --boxes reads), or --detector")


def test_ucf24_persons_from_a_yolo_detector(tmp_path, checkpoint, ucf_root):
    result = eval_model(checkpoint, ucf_root, tmp_path / "r.json", "--detector", "yolo11n.yaml", "--person-conf", "0.0001",
                        "--max-persons", "1", dataset="ucf24")
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "r.json").read_text())
    assert scored["persons"] == "detector yolo11n.yaml" and scored["keyframes"] == 12


@pytest.mark.parametrize("which", ["gt", "pred"])
def test_eval_json_never_writes_over_its_inputs(tmp_path, which, monkeypatch):
    gt, pred = _coco_gt(tmp_path / "gt.json"), _pred(tmp_path / "pred.json", {0: 0.9})
    before = {p: p.read_bytes() for p in (gt, pred)}
    monkeypatch.chdir(tmp_path)
    line = one_line_error(invoke("eval", "--pred", pred, "--gt", gt, "--classes", "clap", "--json", f"./{which}.json"))
    assert "would write over the input" in line
    assert {p: p.read_bytes() for p in (gt, pred)} == before


def test_eval_json_that_cannot_be_written_fails_before_evaluating(tmp_path):
    gt, pred = _coco_gt(tmp_path / "gt.json"), _pred(tmp_path / "pred.json", {0: 0.9})
    line = one_line_error(invoke("eval", "--pred", pred, "--gt", gt, "--classes", "clap", "--json",
                                 tmp_path / "missing" / "r.json"))  # one line: no AP table was printed first
    assert "folder" in line and "does not exist" in line


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"images": [], "annotations": [' + "1" * 5000 + "]}"])
def test_json_python_cannot_parse_is_one_line(tmp_path, text):
    """Nesting deeper than Python's recursion limit and integers over 4300 digits raised out of json.loads."""
    gt, pred = tmp_path / "gt.json", _pred(tmp_path / "pred.json", {0: 0.9})
    gt.write_text(text)
    assert one_line_error(invoke("eval", "--pred", pred, "--gt", gt, "--classes", "clap")).startswith(
        f"error: {gt} is not valid JSON (")


def test_a_folder_given_as_an_eval_file_is_named_as_a_folder(tmp_path):
    gt, pred = _coco_gt(tmp_path / "gt.json"), _pred(tmp_path / "pred.json", {0: 0.9})
    folder = tmp_path / "dir"
    folder.mkdir()
    assert one_line_error(invoke("eval", "--pred", folder, "--gt", gt)) == f"error: --pred {folder} is a folder; give a file"
    assert one_line_error(invoke("eval", "--pred", pred, "--gt", gt, "--label-map", tmp_path / "no.pbtxt")) == (
        f"error: file not found: {tmp_path / 'no.pbtxt'} (--label-map)")
