"""Dataset readers on tiny synthetic datasets in the real formats, the keyframe Dataset and the error lines."""

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stclip_cli.data import default_data_root, open_dataset
from stclip_cli.data.ava import read_proposals, timestamp_to_frame
from stclip_cli.data.common import KeyframeDataset, collate, load_image
from stclip_cli.errors import StclipError

# J-HMDB split 1: clap and sit are test classes, brush_hair a train class.
JHMDB_VIDEOS = {"clap": ["c1", "c2"], "sit": ["s1"], "brush_hair": ["b1"]}
NFRAMES = 12
W, H = 32, 24


def _frames(folder: Path, count: int, name: str, step: int = 1) -> None:
    folder.mkdir(parents=True)
    for i in range(1, count + 1):
        image = np.full((H, W, 3), i * step, np.uint8)
        image[..., 2] = 200  # red in RGB once read back
        cv2.imwrite(str(folder / (name % i)), image)


def _box(i: int) -> list[int]:
    return [i, i, i + 10, i + 12]


@pytest.fixture
def jhmdb_root(tmp_path):
    root = tmp_path / "jhmdb"
    classes = ["brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour", "pullup",
               "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit"]
    images, annotations, dets = [], [], []
    for v, (cls, videos) in enumerate(sorted(JHMDB_VIDEOS.items())):
        for k, video in enumerate(videos):
            _frames(root / "videos" / cls / video, NFRAMES, "%05d.png")
            index = 10 * v + k + 1
            for frame in range(1, NFRAMES + 1):
                image_id = index * 10000 + frame
                images.append({"id": image_id, "movie": video, "timestamp": f"{frame:05d}", "width": W, "height": H})
                annotations.append({"image_id": image_id, "bbox": _box(frame), "action_ids": [classes.index(cls) + 1]})
                dets.append({"image_id": image_id, "category_id": 0, "bbox": _box(frame), "score": "0.75"})
    # c2 has no annotation in the test JSON (it lives in the official train half)
    test = [im for im in images if im["movie"] != "c2"]
    test_ids = {im["id"] for im in test}
    (root / "jhmdb_test_gt_min.json").write_text(json.dumps(
        {"images": test, "annotations": [a for a in annotations if a["image_id"] in test_ids]}))
    (root / "jhmdb_faster_RCNN_person.json").write_text(json.dumps(dets))
    return root


def _tubes(videos: dict[str, list[str]], labels: list[str], prefix=lambda c, v: f"{c}/{v}") -> dict:
    gttubes, nframes, resolution = {}, {}, {}
    for cls, names in videos.items():
        for name in names:
            key = prefix(cls, name)
            rows = np.array([[f, *_box(f)] for f in range(1, NFRAMES + 1)], np.float32)
            gttubes[key] = {labels.index(cls): [rows]}
            nframes[key] = NFRAMES
            resolution[key] = (H, W)
    keys = sorted(gttubes)
    return {"labels": labels, "gttubes": gttubes, "nframes": nframes, "resolution": resolution,
            "train_videos": [[k for k in keys if k.endswith("2")]],
            "test_videos": [[k for k in keys if k.endswith("1")]]}


def test_jhmdb_json(jhmdb_root):
    view = open_dataset("jhmdb", jhmdb_root, 1, "test", pool="all")
    assert view.classes == ["clap", "sit", "wave", "throw", "pullup", "catch"]
    assert [v.name for v in view.videos] == ["c1", "s1"] and view.skipped == ["c2"]
    official = open_dataset("jhmdb", jhmdb_root, 1, "test")  # the default: c2 is not in the test JSON's half
    assert [v.name for v in official.videos] == ["c1", "s1"] and official.skipped == []
    video = view.videos[0]
    assert (video.width, video.height, video.num_frames, video.label) == (W, H, NFRAMES, "clap")
    assert sorted(video.gt) == list(range(NFRAMES))  # 1-based files -> 0-based frames
    assert video.scored_frames() == list(range(NFRAMES))  # frame mAP scores every frame of a test video
    np.testing.assert_array_equal(video.gt[0].boxes, [_box(1)])
    assert video.gt[0].labels == [["clap"]]
    boxes, scores = video.detections[4]
    np.testing.assert_array_equal(boxes, [_box(5)])
    assert scores.dtype == np.float32 and scores[0] == pytest.approx(0.75)
    image = load_image(video.frame_paths[0])
    assert image.shape == (H, W, 3) and image.dtype == np.uint8 and tuple(image[0, 0]) == (200, 1, 1)


def test_jhmdb_pickle_official_pool(jhmdb_root):
    labels = ["brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour", "pullup",
              "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit"]
    pkl = jhmdb_root / "JHMDB-GT.pkl"
    pkl.write_bytes(pickle.dumps(_tubes(JHMDB_VIDEOS, labels)))
    everything = open_dataset("jhmdb", jhmdb_root, 1, "test", pkl=pkl, pool="all")
    assert [v.name for v in everything.videos] == ["c1", "c2", "s1"]
    assert everything.videos[0].detections is None  # pickle carries no image ids
    official = open_dataset("jhmdb", jhmdb_root, 1, "test", pkl=pkl)
    assert [v.name for v in official.videos] == ["c1", "s1"]
    train = open_dataset("jhmdb", jhmdb_root, 1, "train", pkl=pkl, pool="all")
    assert [v.name for v in train.videos] == ["b1"] and train.videos[0].gt[11].labels == [["brush_hair"]]
    assert open_dataset("jhmdb", jhmdb_root, 1, "train", pkl=pkl).videos == []  # b1 is in the official test half


def test_jhmdb_official_halves_from_either_json(tmp_path):
    from synthetic import make_jhmdb

    root = make_jhmdb(tmp_path / "j", videos_per_class=2, frames=2, classes=["clap", "brush_hair"])
    both = open_dataset("jhmdb", root, 1, "train")
    assert [v.name for v in both.videos] == ["brush_hair_video_0"] and both.skipped == []
    (root / "jhmdb_test_gt_min.json").unlink()  # the train file alone names the train half
    assert [v.name for v in open_dataset("jhmdb", root, 1, "train").videos] == ["brush_hair_video_0"]
    assert open_dataset("jhmdb", root, 1, "test").skipped == ["clap_video_1"]  # test half, no annotation here


def test_jhmdb_reference_video_list(jhmdb_root):
    (jhmdb_root / "label_split_1").mkdir()
    (jhmdb_root / "label_split_1" / "test_video.txt").write_text("s1\n")
    assert [v.name for v in open_dataset("jhmdb", jhmdb_root, 1, "test").videos] == ["s1"]


def test_keyframe_dataset(jhmdb_root):
    view = open_dataset("jhmdb", jhmdb_root, 1, "test")
    video = view.videos[0]
    video.gt[0].boxes = np.array([_box(i) for i in range(5)], np.float32)
    video.gt[0].labels = [["clap"], ["sit", "clap"], ["walk"], ["clap"], ["sit"]]
    video.gt[1].labels = [["walk"]]  # no label among the classes: keyframe skipped
    data = KeyframeDataset(view.videos, ["clap", "sit"], window=5, max_boxes=3, seed=7)
    assert len(data) == 2 * NFRAMES - 1
    item = data[0]
    assert len(item["images"]) == 5 and item["key_pos"] == 0 and item["frame"] == 0 and item["video"] == "c1"
    assert item["boxes"].shape == (3, 4) and item["labels"].shape == (3, 2)
    assert item["labels"].sum(axis=1).min() >= 1  # the "walk" box was dropped
    again = KeyframeDataset(view.videos, ["clap", "sit"], window=5, max_boxes=3, seed=7)[0]
    np.testing.assert_array_equal(item["boxes"], again["boxes"])
    subsets = {KeyframeDataset(view.videos, ["clap", "sit"], 5, 3, seed=s)[0]["boxes"].tobytes() for s in range(8)}
    assert len(subsets) > 1
    middle = data[5]
    assert middle["frame"] == 6 and middle["key_pos"] == 2
    np.testing.assert_array_equal(middle["labels"], [[1, 0]])
    batch = collate([item, middle])
    assert batch["key_pos"].tolist() == [0, 2] and batch["boxes"][1].dtype == torch.float32
    assert len(batch["images"]) == 2 and batch["frame"] == [0, 6]


def test_ucf24(tmp_path):
    root = tmp_path / "ucf"
    labels = ["Basketball", "IceDancing", "Fencing"]
    videos = {"IceDancing": ["v_IceDancing_g01_c01", "v_IceDancing_g02_c02"], "Basketball": ["v_Basketball_g01_c01"]}
    for cls, names in videos.items():
        for name in names:
            _frames(root / "rgb-images" / cls / name, NFRAMES, "%05d.jpg")
    (root / "UCF101v2-GT.pkl").write_bytes(pickle.dumps(_tubes(videos, labels)))
    view = open_dataset("ucf24", root, 1, "test")
    assert [v.name for v in view.videos] == ["IceDancing/v_IceDancing_g01_c01"]
    assert view.videos[0].gt[0].labels == [["IceDancing"]] and view.videos[0].width == W
    train = open_dataset("ucf24", root, 1, "train")
    assert train.videos == []  # Basketball g01 is in the official test half


def test_ava(tmp_path):
    root = tmp_path / "ava"
    _frames(root / "frames" / "vidA", 100, "vidA_%06d.jpg", step=2)
    (root / "annotations").mkdir()
    (root / "annotations" / "ava_val_v2.2.csv").write_text(
        "vidA,0902,0.25,0.25,0.5,0.5,11,0\n"
        "vidA,0902,0.25,0.25,0.5,0.5,57,0\n"
        "vidA,0902,0.0,0.0,0.5,1.0,12,1\n"
        "vidA,0903,0.0,0.0,0.5,1.0,12,1\n"
    )
    (root / "annotations" / "ava_val_excluded_timestamps_v2.2.csv").write_text("vidA,0903\n")
    (root / "annotations" / "ava_train_v2.2.csv").write_text(
        "vidA,0902,0.25,0.25,0.5,0.5,11,0\nvidB,0902,0.25,0.25,0.5,0.5,57,0\n")
    proposals = root / "props.pkl"
    proposals.write_bytes(pickle.dumps({"vidA,0902": np.array([[0.25, 0.25, 0.5, 0.5, 0.9]], np.float32)}))
    view = open_dataset("ava", root, 3, "test", proposals=proposals, frame_step=2)
    assert view.multi_label and "sit" in view.single_label_classes
    video = view.videos[0]
    assert timestamp_to_frame(902) == 60 and sorted(video.gt) == [60]
    assert video.scored_frames() == [60]  # AVA scores keyframes: 903 is excluded, 904 lies beyond the 100 frames
    np.testing.assert_allclose(video.gt[60].boxes, [[8, 6, 16, 12], [0, 0, 16, 24]])
    assert video.gt[60].labels == [["sit", "text on/look at a cellphone"], ["stand"]]
    np.testing.assert_allclose(video.detections[60][0], [[8, 6, 16, 12]])
    assert video.window(60, 5) == [56, 58, 60, 62, 64] and video.window(98, 5) == [94, 96, 98, 99, 99]
    item = KeyframeDataset(view.videos, ["stand"], window=5)[0]
    assert item["key_pos"] == 2 and abs(int(item["images"][2][0, 0, 1]) - 122) <= 1  # file 61 = frame 60
    # split 3 hides "text on/look at a cellphone" (57): vidB is not a training video
    train = open_dataset("ava", root, 3, "train")
    assert [v.name for v in train.videos] == ["vidA"]
    csv_props = root / "props.csv"
    csv_props.write_text("vidA,0902,0.1,0.1,0.2,0.2,,0.5\nvidA,0902,0.1,0.1,0.2,0.2,,0.5\n")
    boxes, scores = read_proposals(csv_props)[("vidA", 902)]
    assert boxes.shape == (1, 4) and scores.tolist() == [0.5]


def test_default_data_root(monkeypatch):
    monkeypatch.setenv("STCLIP_DATA", "/data/x")
    assert default_data_root("jhmdb") == Path("/data/x/jhmdb")
    monkeypatch.delenv("STCLIP_DATA")
    assert default_data_root("ava") == Path.home() / ".cache" / "stclip" / "data" / "ava"


def test_error_lines(tmp_path, jhmdb_root, monkeypatch):
    def message(*args, **kwargs):
        with pytest.raises(StclipError) as err:
            open_dataset(*args, **kwargs)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert message("jhmdb", tmp_path / "missing", 1, "test") == (
        f"jhmdb data root not found: {tmp_path / 'missing'} (pass --data-root DIR or set STCLIP_DATA)")
    monkeypatch.setenv("STCLIP_DATA", str(tmp_path / "env"))
    assert message("ava", None, 1, "test") == (
        f"ava data root not found: {tmp_path / 'env' / 'ava'} (pass --data-root DIR or set STCLIP_DATA)")
    assert message("jhmdb", tmp_path, 1, "test") == (
        f"J-HMDB frames not found: expected {tmp_path}/videos/<class>/<video>/00001.png; "
        "set --data-root or STCLIP_DATA")
    assert message("ucf24", tmp_path, 1, "test") == (
        f"UCF101-24 frames not found: expected {tmp_path}/rgb-images/<Class>/<video>/00001.jpg; "
        "set --data-root or STCLIP_DATA")
    assert message("ava", tmp_path, 1, "test") == (
        f"AVA annotations not found: expected ava_val_v2.2.csv in {tmp_path}/annotations or {tmp_path}")
    assert message("kinetics", tmp_path, 1, "test") == "unknown dataset 'kinetics': expected one of jhmdb, ucf24, ava"
    assert message("jhmdb", jhmdb_root, 9, "test") == "unknown split 9 for jhmdb: expected one of 1, 2, 3, 4 or all"
    assert message("jhmdb", jhmdb_root, 1, "dev") == "unknown subset 'dev': expected one of train, test"
    assert message("jhmdb", jhmdb_root, 1, "test", pool="half") == (
        "unknown video pool 'half': expected one of official, all")
    assert message("jhmdb", jhmdb_root, 1, "test", frame_step=2) == "option(s) frame_step not supported for jhmdb"
    assert message("jhmdb", jhmdb_root, 1, "test", anno=[tmp_path / "x.json"]) == (
        f"annotation file not found: {tmp_path / 'x.json'}")
    renamed = tmp_path / "gt.json"
    renamed.write_bytes((jhmdb_root / "jhmdb_test_gt_min.json").read_bytes())
    assert message("jhmdb", jhmdb_root, 1, "test", anno=[renamed]) == (
        "pool 'official' needs the official halves: jhmdb_{train,test}_gt_min.json (--anno), JHMDB-GT.pkl (--pkl) or "
        f"testlist.txt in {jhmdb_root} or {jhmdb_root}/annotations; or pass --pool all")
    (jhmdb_root / "jhmdb_test_gt_min.json").unlink()
    assert message("jhmdb", jhmdb_root, 1, "test") == (
        f"J-HMDB annotations not found: expected jhmdb_{{train,test}}_gt_min.json or JHMDB-GT.pkl in {jhmdb_root} "
        f"or {jhmdb_root}/annotations; pass --anno FILE")
    ucf = tmp_path / "ucf"
    _frames(ucf / "rgb-images" / "Biking" / "v_Biking_g01_c01", 2, "%05d.jpg")
    assert message("ucf24", ucf, 1, "test") == (
        f"UCF101-24 annotations not found: expected UCF101v2-GT.pkl in {ucf}, {ucf}/annotations or "
        f"{ucf}/splitfiles; pass --anno FILE")
    (ucf / "UCF101v2-GT.pkl").write_bytes(pickle.dumps({"labels": []}))
    assert message("ucf24", ucf, 1, "test") == (
        f"{ucf / 'UCF101v2-GT.pkl'} lacks the keys gttubes, nframes, train_videos, test_videos, resolution "
        "of the JHMDB-GT.pkl layout")
    ava = tmp_path / "ava"
    ava.mkdir()
    (ava / "ava_val_v2.2.csv").write_text("vidZ,0902,0.1,0.1,0.2,0.2,11,0\n")
    assert message("ava", ava, 1, "test") == (
        f"AVA frames not found: expected {ava}/frames/vidZ/vidZ_000001.jpg (or {ava}/videos_15min/vidZ.mp4); "
        "set --data-root or STCLIP_DATA")
    (ava / "ava_val_v2.2.csv").write_text("vidZ,0902,0.1\n")
    assert message("ava", ava, 1, "test") == f"{ava / 'ava_val_v2.2.csv'}:1: expected 7 or 8 CSV columns, got 3"


@pytest.mark.parametrize("change, expected", [
    ({"bbox": [1, 2, 3]}, "annotations[0].bbox must be 4 numbers [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, got [1, 2, 3]"),
    ({"action_ids": None}, "annotations[0].action_ids must be a list, got null"),
    ({"image_id": 7}, "annotations[0].image_id names no image of images[]: 7"),
])
def test_jhmdb_bad_annotation_entry(jhmdb_root, change, expected):
    path = jhmdb_root / "jhmdb_test_gt_min.json"
    data = json.loads(path.read_text())
    data["annotations"][0].update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(StclipError) as err:
        open_dataset("jhmdb", jhmdb_root, 1, "test")
    assert str(err.value) == f"{path}: {expected}"


def test_jhmdb_bad_detection_entry(jhmdb_root):
    path = jhmdb_root / "jhmdb_faster_RCNN_person.json"
    path.write_text(json.dumps([{"image_id": 10001, "bbox": [1, 2, 3, 4], "score": "NaN"}]))
    with pytest.raises(StclipError) as err:
        open_dataset("jhmdb", jhmdb_root, 1, "test")
    assert str(err.value) == f'{path}: [0].score must be a finite number, got "NaN"'


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_dataset_pickles_never_run_code(tmp_path, jhmdb_root, protocol):
    """Annotation pickles are read by a restricted unpickler: data (numpy arrays, containers) loads, code does not."""
    import os as os_module

    from stclip_cli.data.safe_pickle import load_data_pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os_module.system, (f"touch {marker}",))

    data = {"labels": ["clap"], "boxes": np.arange(8, dtype=np.float32).reshape(2, 4), "n": np.int64(3)}
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_data_pickle(good)
    assert loaded["labels"] == ["clap"] and loaded["boxes"].shape == (2, 4) and int(loaded["n"]) == 3
    evil = jhmdb_root / "JHMDB-GT.pkl"
    evil.write_bytes(pickle.dumps({"labels": Payload()}, protocol=protocol))
    with pytest.raises(StclipError, match=r"refusing to unpickle: it needs (posix|os)\.system, which is not data"):
        open_dataset("jhmdb", jhmdb_root, 1, "test", pkl=evil)
    assert not marker.exists()
