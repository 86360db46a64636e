"""Person detection: YOLO built from a yaml (no weights), missing weights message, boxes files, FP filter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from stclip_cli.core.detection import BoxesFile, YoloPersonDetector, clip_to_frame, fp_filter
from stclip_cli.errors import StclipError


def test_yolo_from_yaml_runs_batched_and_keeps_persons_only(make_frame):
    detector = YoloPersonDetector("yolo11n.yaml", conf=0.001, device="cpu", imgsz=160)
    calls = []
    predict = detector.model.predict

    def counting_predict(images, **kwargs):
        calls.append((len(images), kwargs["classes"]))
        return predict(images, **kwargs)

    detector.model.predict = counting_predict
    images = [make_frame(0), make_frame(5)]
    results = detector.detect(images)
    assert calls == [(2, [0])]
    assert len(results) == 2
    for det in results:
        assert isinstance(det, sv.Detections)
        assert det.xyxy.dtype == np.float32
        assert det.confidence is not None and det.confidence.dtype == np.float32
        assert np.all(det.class_id == 0)
        assert np.all(det.xyxy[:, [0, 2]] <= 96) and np.all(det.xyxy[:, [1, 3]] <= 64)
    assert detector.detect([]) == []


def test_missing_weights_one_line_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = (
        "person detector weights '{}' not found; pass --detector PATH to a local ultralytics .pt file, or give "
        "precomputed person boxes with --boxes FILE"
    )
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(tmp_path / "missing" / "det.pt"))
    assert str(err.value) == expected.format(tmp_path / "missing" / "det.pt")


def test_unknown_weights_name_download_failure_is_caught(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from ultralytics.utils import downloads

    def offline(*args, **kwargs):
        raise ConnectionError("Download failure. Environment may be offline.")

    monkeypatch.setattr(downloads, "attempt_download_asset", offline)
    with pytest.raises(StclipError) as err:
        YoloPersonDetector("yolo11n.pt")
    assert str(err.value) == (  # where to get it, the flag that takes a local copy, and the way without one
        "person detector weights 'yolo11n.pt' not found and could not be downloaded; download "
        "https://github.com/ultralytics/assets/releases/latest/download/yolo11n.pt and pass --detector FILE, "
        "or give precomputed person boxes with --boxes FILE"
    )


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "det.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(StclipError) as err:
        YoloPersonDetector(str(bad))
    assert str(err.value).startswith(f"cannot load person detector '{bad}':")
    assert "\n" not in str(err.value)


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_boxes_file_detect_json(tmp_path):
    path = write_json(
        tmp_path / "boxes.json",
        {
            "video": "in.mp4",
            "frames": [
                {"index": 0, "time": 0.0, "persons": [
                    {"box": [10, 10, 50, 60], "detector_score": 0.9, "track_id": 3, "scores": {"a": 0.5}},
                    {"box": [-5, 0, 200, 30], "detector_score": 0.4, "track_id": 4},
                    {"box": [120, 10, 150, 20], "detector_score": 0.3},
                ]},
                {"index": 4, "time": 0.4, "persons": []},
            ],
        },
    )
    boxes = BoxesFile(path)
    assert boxes.frame_indices == [0]
    det = boxes.boxes_for(0, (96, 64))
    assert det.xyxy.tolist() == [[10, 10, 50, 60], [0, 0, 96, 30]]
    assert det.confidence.tolist() == pytest.approx([0.9, 0.4])
    assert det.tracker_id is None
    assert len(boxes.boxes_for(4)) == 0 and len(boxes.boxes_for(99)) == 0
    tracked = BoxesFile(write_json(tmp_path / "t.json", {"frames": [
        {"index": 2, "persons": [{"box": [1, 1, 5, 5], "detector_score": None, "track_id": 7}]}]}))
    det = tracked.boxes_for(2)
    assert det.confidence is None and det.tracker_id.tolist() == [7]


def test_boxes_file_coco_results_are_xywh_as_coco_defines(tmp_path):
    path = write_json(tmp_path / "dets.json", [
        {"image_id": 0, "bbox": [1, 2, 30, 40], "score": "0.75", "category_id": 1},
        {"image_id": "0", "bbox": [5, 5, 6, 6], "score": 0.5},
        {"image_id": 3, "bbox": [10, 10, 20, 20], "score": 1},
    ])
    boxes = BoxesFile(path)
    assert boxes.format == "coco" and BoxesFile(path, "coco").frame_indices == boxes.frame_indices == [0, 3]
    det = boxes.boxes_for(0)
    assert det.xyxy.tolist() == [[1, 2, 31, 42], [5, 5, 11, 11]]
    assert det.confidence.tolist() == pytest.approx([0.75, 0.5])
    images = [np.zeros((64, 96, 3), np.uint8)] * 2
    batch = boxes.detect(images, indices=[3, 1])
    assert [len(d) for d in batch] == [1, 0]
    assert batch[0].xyxy.tolist() == [[10, 10, 30, 30]]
    with pytest.raises(ValueError):
        boxes.detect(images)


def test_boxes_file_xyxy_lists_are_read_as_corners(tmp_path):
    path = write_json(tmp_path / "dets.json", [  # as the J-HMDB reference detections: corners, string scores
        {"image_id": 0, "category_id": 0, "bbox": [120, 58, 247, 220], "score": "0.9998443"},
        {"image_id": 0, "category_id": 0, "bbox": [320, 134, 320, 196], "score": "0.0666"},  # clipped at the edge
    ])
    boxes = BoxesFile(path, "xyxy")
    assert boxes.format == "xyxy"
    assert boxes.boxes_for(0).xyxy.tolist() == [[120, 58, 247, 220], [320, 134, 320, 196]]
    assert boxes.boxes_for(0, (320, 240)).xyxy.tolist() == [[120, 58, 247, 220]]  # the empty box is dropped


def test_reference_jhmdb_detections_read_as_xyxy():
    reference = Path(__file__).resolve().parents[2] / "shared" / "data" / "zs_jhmdb" / "jhmdb_faster_RCNN_person.json"
    if not reference.is_file():
        pytest.skip(f"{reference} not available")
    boxes = BoxesFile(reference, "xyxy")
    det = boxes.boxes_for(2670028)
    assert det.xyxy[0].tolist() == [120, 58, 247, 220] and det.confidence[0] == pytest.approx(0.9998443)


def test_explicit_stclip_format(tmp_path):
    detect_json = write_json(tmp_path / "d.json", {"frames": [{"index": 1, "persons": [{"box": [1, 2, 3, 4]}]}]})
    assert BoxesFile(detect_json, "stclip").boxes_for(1).xyxy.tolist() == [[1, 2, 3, 4]]


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ('[{"image_id": 0, "bbox": [1, 2, 3, 4]}]', "stclip", "not the JSON 'stclip detect' writes"),
        ('{"frames": []}', "coco", "not a COCO-results list of {image_id, bbox, score}; bbox is [x, y, width, height]"),
        ('{"frames": []}', "xyxy", "not a COCO-results-style list whose bbox is [x1, y1, x2, y2]"),
        ('[{"image_id": 0, "bbox": [1, 2, 0, 4], "score": 1}]', "coco", "entry 0 bbox [1, 2, 0, 4] has a width or height <= 0"),
        ('[{"image_id": 0, "bbox": [1, 2, 3, 4]}, {"image_id": 1, "bbox": [9, 2, -3, 4]}]', None, "entry 1 bbox [9, 2, -3, 4] has a width or height <= 0"),
        ('[{"image_id": 0, "bbox": [10, 2, 3, 4], "score": 1}]', "xyxy", "entry 0 bbox [10, 2, 3, 4] has x2 < x1 or y2 < y1"),
        ('[{"image_id": 0, "bbox": [1, 2, NaN, 4], "score": 1}]', "coco", "entry 0 bbox must be 4 finite numbers [x, y, width, height]"),
        ('[{"image_id": 0, "bbox": [1, 2, 3, Infinity], "score": 1}]', "xyxy", "entry 0 bbox must be 4 finite numbers [x1, y1, x2, y2]"),
        ('{"frames": [{"index": 0, "persons": [{"box": [5, 5, 1, 9]}]}]}', None,
         "frames[0].persons[0].box must be 4 numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, got [5, 5, 1, 9]"),
    ],
)
def test_boxes_format_mismatch_and_invalid_boxes(tmp_path, content, fmt, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(StclipError) as err:
        BoxesFile(path, fmt)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_unknown_boxes_format(tmp_path):
    with pytest.raises(StclipError) as err:
        BoxesFile(write_json(tmp_path / "b.json", []), "xywh")
    assert str(err.value) == "unknown boxes format 'xywh': use stclip, coco, xyxy"


def test_boxes_beyond_the_video_are_reported(tmp_path):
    rows = [{"image_id": f, "bbox": [1, 1, 5, 5], "score": 0.9} for f in (0, 5, 300, 301, 7)]
    boxes = BoxesFile(write_json(tmp_path / "boxes.json", rows))
    assert boxes.check_frames(280) == (
        f"{tmp_path / 'boxes.json'}: 2 boxes name frames beyond the video's 280 frames (first: entry 2, frame 300)"
    )
    assert boxes.check_frames(6) == (
        f"{tmp_path / 'boxes.json'}: 3 boxes name frames beyond the video's 6 frames (first: entry 2, frame 300)"
    )
    assert boxes.check_frames(302) is None and boxes.check_frames(0) is None
    detect_json = BoxesFile(write_json(tmp_path / "d.json", {"frames": [
        {"index": 0, "persons": []}, {"index": 9, "persons": [{"box": [1, 1, 2, 2]}]}]}))
    assert detect_json.check_frames(5) == (
        f"{tmp_path / 'd.json'}: 1 box names a frame beyond the video's 5 frames (first: frames[1].persons[0], frame 9)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON boxes file"),
        ('{"video": "x"}', "expected the JSON written by 'stclip detect'"),
        ('[{"image_id": 0, "bbox": [1, 2, 3], "score": 1}]', "entry 0 bbox must be 4 finite numbers"),
        ('[{"image_id": -1, "bbox": [1, 2, 3, 4], "score": 1}]', "entry 0 image_id must be a 0-based frame index"),
        ('[{"image_id": "v/1", "bbox": [1, 2, 3, 4], "score": 1}]', "entry 0 image_id must be a 0-based frame index"),
        ('[{"image_id": 0, "bbox": [1, 2, 3, 4], "score": "high"}]', "entry 0 score must be a number"),
        ('{"frames": [{"index": 0, "persons": [{"box": "x"}]}]}', "frames[0].persons[0].box must be 4 numbers [x1, y1, x2, y2]"),
        ('{"frames": [{"persons": []}]}', 'frames[0] has no "index"'),
        ('[{"image_id": 0, "bbox": "1234", "score": 1}]', "entry 0 bbox must be 4 finite numbers"),
        ('[{"image_id": 0, "bbox": [true, true, 40, 40], "score": 1}]', "entry 0 bbox must be 4 finite numbers"),
        ('[{"image_id": 0, "bbox": [1, 2, 1' + "0" * 400 + ', 4], "score": 1}]', "entry 0 bbox must be 4 finite numbers"),
        ('[{"image_id": 0, "bbox": [1, 2, 3, 4], "score": 1' + "0" * 400 + "}]", "entry 0 score must be a number"),
        ('[{"image_id": 0, "bbox": [1, 2, 3, 4], "score": ' + "1" * 5000 + "}]", "not a readable JSON boxes file"),
        ("[" * 100000 + "]" * 100000, "not a readable JSON boxes file"),
    ],
)
def test_bad_boxes_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(StclipError) as err:
        BoxesFile(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_missing_boxes_file(tmp_path):
    with pytest.raises(StclipError) as err:
        BoxesFile(tmp_path / "none.json")
    assert str(err.value) == f"boxes file not found: {tmp_path / 'none.json'}"


def test_fp_filter_keeps_best_and_boxes_within_margin():
    det = sv.Detections(
        xyxy=np.array([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3], [0, 0, 4, 4]], np.float32),
        confidence=np.array([0.5, 0.95, 0.9, 0.2], np.float32),
    )
    assert fp_filter(det, 0.001).confidence.tolist() == pytest.approx([0.95])
    assert fp_filter(det, 0.7).confidence.tolist() == pytest.approx([0.5, 0.95, 0.9])
    assert len(fp_filter(det, None)) == 4
    unscored = sv.Detections(xyxy=det.xyxy)
    assert len(fp_filter(unscored, 0.001)) == 4
    assert len(fp_filter(sv.Detections.empty(), 0.5)) == 0


def test_clip_to_frame_drops_zero_area():
    det = sv.Detections(xyxy=np.array([[-10, -10, 20, 20], [100, 0, 120, 10], [5, 5, 5, 9]], np.float32))
    clipped = clip_to_frame(det, 96, 64)
    assert clipped.xyxy.tolist() == [[0, 0, 20, 20]]
