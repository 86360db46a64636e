"""Sinks: JSON schema, AVA-style CSV, annotated video, atomic writes and unwritable paths."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from conftest import write_vfr_video
from stclip_cli.sinks import outputs
from stclip_cli.errors import StclipError
from stclip_cli.sinks.destinations import check_writable
from stclip_cli.sinks.outputs import CsvSink, JsonSink, VideoSink, person_label
from stclip_cli.records import FrameResult, ModelInfo, VideoInfo
from stclip_cli.sinks.render import FrameRenderer
from stclip_cli.sources.video import open_video

ACTIONS = ["brush teeth", "fishing"]
MODEL = ModelInfo(name="stclip", backbone="ViT-B-16", checkpoint=None, mode="softmax")


def info(path: str = "in.mp4", width: int = 340, height: int = 256) -> VideoInfo:
    return VideoInfo(path=Path(path), width=width, height=height, fps=28.0, num_frames=280, rotation=0)


def result(index: int, keyframe: bool = True, tracked: bool = True, image: np.ndarray | None = None) -> FrameResult:
    det = sv.Detections(
        xyxy=np.array([[10, 20, 110, 220], [170, 0, 340, 256]], np.float32),
        confidence=np.array([0.93, 0.5], np.float32),
        tracker_id=np.array([3, -1]) if tracked else None,
        data={"scores": np.array([[0.71, 0.29], [0.02, 0.98]], np.float32)},
    )
    return FrameResult(index=index, time=index / 28, detections=det, keyframe=keyframe, image=image)


def test_json_schema(tmp_path):
    out = tmp_path / "out.json"
    with JsonSink(out) as sink:
        sink.open(info(), ACTIONS, MODEL)
        sink.write(result(0))
        sink.write(result(1, keyframe=False))
        empty = FrameResult(index=2, time=2 / 28, detections=sv.Detections.empty())
        sink.write(empty)
    data = json.loads(out.read_text())
    assert list(data) == ["video", "width", "height", "fps", "num_frames", "actions", "model", "frames"]
    assert data["video"] == "in.mp4" and (data["width"], data["height"], data["fps"], data["num_frames"]) == (340, 256, 28.0, 280)
    assert data["actions"] == ACTIONS
    assert data["model"] == {"name": "stclip", "backbone": "ViT-B-16", "checkpoint": None, "mode": "softmax", "note": None, "precision": "fp32"}
    assert [f["index"] for f in data["frames"]] == [0, 2]
    first = data["frames"][0]
    assert first["time"] == 0.0 and list(first) == ["index", "time", "persons"]
    assert first["persons"][0] == {
        "box": [10.0, 20.0, 110.0, 220.0],
        "detector_score": 0.93,
        "track_id": 3,
        "scores": {"brush teeth": 0.71, "fishing": 0.29},
    }
    assert first["persons"][1]["track_id"] is None
    assert data["frames"][1]["persons"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_json_no_scores_and_no_detector_scores(tmp_path):
    out = tmp_path / "out.json"
    det = sv.Detections(xyxy=np.array([[0, 0, 5, 5]], np.float32))
    with JsonSink(out) as sink:
        sink.open(info(), ACTIONS, MODEL)
        sink.write(FrameResult(index=0, time=0.0, detections=det))
    person = json.loads(out.read_text())["frames"][0]["persons"][0]
    assert person["detector_score"] is None and person["track_id"] is None
    assert person["scores"] == {"brush teeth": 0.0, "fishing": 0.0}


def test_csv_rows(tmp_path):
    out = tmp_path / "out.csv"
    with CsvSink(out) as sink:
        sink.open(info("videos/clip01.mp4"), ACTIONS, MODEL)
        sink.write(result(14))
        sink.write(result(15, keyframe=False))
    header, *rows = list(csv.reader(out.open()))
    assert header == ["video_id", "time", "x1", "y1", "x2", "y2", "action", "score"]
    assert len(rows) == 4
    assert rows[0] == ["clip01", "0.500", "0.029", "0.078", "0.324", "0.859", "brush teeth", "0.71000"]
    assert rows[3] == ["clip01", "0.500", "0.500", "0.000", "1.000", "1.000", "fishing", "0.98000"]


def test_video_sink_round_trip(tmp_path, make_video):
    source = open_video(make_video(tmp_path, n_frames=12, size=(96, 64), fps=10))
    out = tmp_path / "annotated.mp4"
    with VideoSink(out) as sink:
        sink.open(source.info, ACTIONS, MODEL)
        for frame in source:
            record = result(frame.index, keyframe=frame.index % 4 == 0, image=frame.image)
            record.time = frame.time
            record.detections.xyxy = np.array([[5, 5, 40, 50], [50, 10, 90, 60]], np.float32)
            sink.write(record)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "clip.mp4"]
    with open_video(out) as back:
        frames = list(back)
        assert (back.info.width, back.info.height, back.info.fps) == (96, 64, 10.0)
    assert len(frames) == 12
    assert not np.array_equal(frames[0].image, source_first_frame(tmp_path / "clip.mp4"))
    assert drawn_change(frames[0].image, source_first_frame(tmp_path / "clip.mp4")) > 40  # the boxes were drawn


def drawn_change(annotated: np.ndarray, source: np.ndarray) -> float:
    """How much the pixels along the lower part of the first box's left edge (x=5, y 30..48: below any label) differ
    from the source's: encoding noise alone stays far under the change a drawn box outline makes."""
    edge = (slice(30, 48), slice(4, 7))
    return float(np.abs(annotated[edge].astype(np.int16) - source[edge].astype(np.int16)).mean())


def source_first_frame(path: Path) -> np.ndarray:
    with open_video(path) as source:
        return next(iter(source)).image


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_video_sink_odd_size_plays_as_yuv420p(tmp_path, make_frame, monkeypatch, codec):
    """4:2:0 (what players accept) needs even sizes: 95x63 gets a copied last column and row; boxes line up."""
    monkeypatch.setattr(outputs, "video_codec", lambda: codec)
    out = tmp_path / "odd.mp4"
    image = make_frame(0, (95, 63))
    det = sv.Detections(xyxy=np.array([[20, 30, 60, 62]], np.float32))
    with VideoSink(out) as sink:
        sink.open(info(width=95, height=63), ACTIONS, MODEL)
        for i in range(3):
            sink.write(FrameResult(i, i / 28, det, image=image))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ({"libx264": "h264"}.get(codec, codec), "yuv420p")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 3 and frames[0].shape == (64, 96, 3)
    expected = FrameRenderer(95, 63).draw(image, det, [""])
    assert np.abs(frames[0][:63, :95].astype(int) - expected).mean() < 6  # lossy, but the same picture, same place
    edge = frames[0].astype(int)
    assert np.abs(edge[:, 95] - edge[:, 94]).mean() < 6 and np.abs(edge[63] - edge[62]).mean() < 6


VFR_TIMES = [0.0, 0.04, 0.05, 0.3, 0.31, 0.9, 0.901, 1.5, 1.52, 2.75, 2.8, 4.0]


def sink_copy(source_path: Path, out: Path) -> None:
    """Run every frame of a video through a VideoSink with two boxes, as detect does."""
    with open_video(source_path) as source, VideoSink(out) as sink:
        sink.open(source.info, ACTIONS, MODEL)
        for frame in source:
            record = result(frame.index, image=frame.image)
            record.time = frame.time
            sink.write(record)


def frame_times(path: Path) -> list[float]:
    with open_video(path) as video:
        return [f.time for f in video]


@pytest.mark.parametrize("time_base", [Fraction(1, 90000), Fraction(1, 1000), Fraction(1, 15360)])
def test_video_sink_keeps_variable_frame_times(tmp_path, time_base):
    source = write_vfr_video(tmp_path / "vfr.mp4", VFR_TIMES, size=(340, 256), time_base=time_base)
    assert frame_times(source) == pytest.approx(VFR_TIMES, abs=float(time_base))
    sink_copy(source, tmp_path / "out.mp4")
    assert frame_times(tmp_path / "out.mp4") == frame_times(source)  # exactly: the source's own time base


def test_video_sink_mpeg4_fallback_keeps_times(tmp_path, monkeypatch):
    """MPEG-4 Part 2 cannot store a 1/90000 time base: 1/60000 keeps every time within 1/120000 s."""
    monkeypatch.setattr(outputs, "video_codec", lambda: "mpeg4")
    source = write_vfr_video(tmp_path / "vfr.mp4", VFR_TIMES)
    sink_copy(source, tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert frame_times(tmp_path / "out.mp4") == pytest.approx(frame_times(source), abs=1 / 120000 + 1e-9)


def test_video_sink_times_that_collide_stay_increasing(tmp_path):
    """Two frames within one tick of the time base still get distinct, increasing timestamps."""
    out = tmp_path / "out.mp4"
    times = [0.0, 0.1, 0.1, 0.1 + 1e-7, 0.2, 0.15, 0.3]
    with VideoSink(out) as sink:
        sink.open(info(width=96, height=64), ACTIONS, MODEL)
        for i, t in enumerate(times):
            sink.write(FrameResult(i, t, sv.Detections.empty(), image=np.full((64, 96, 3), 20 * i, np.uint8)))
    back = frame_times(out)
    tick = float(outputs.DEFAULT_TIME_BASE)
    assert len(back) == len(times) and all(b > a for a, b in zip(back, back[1:]))
    assert back == pytest.approx([0.0, 0.1, 0.1 + tick, 0.1 + 2 * tick, 0.2, 0.2 + tick, 0.3], abs=1e-9)


def test_video_sink_labels_are_readable_and_inside_the_frame(tmp_path):
    """340x256: capitals at least 9 px tall (were 7) and a long name cut to fit the frame (ran off its left edge)."""
    out = tmp_path / "labels.mp4"
    det = sv.Detections(
        xyxy=np.array([[250, 120, 339, 255]], np.float32),
        data={"scores": np.array([[0.9, 0.1]], np.float32)},
    )
    actions = ["ARM WRESTLING WITH A VERY LONG NAME THAT GOES ON AND ON AND ON AND ON AND ON AND ON", "sit"]
    with VideoSink(out, top_k=1) as sink:
        sink.open(info(), actions, MODEL)
        sink.write(FrameResult(0, 0.0, det, image=np.zeros((256, 340, 3), np.uint8)))
    with open_video(out) as back:
        image = next(iter(back)).image
    text = np.argwhere(image.min(axis=2) > 180)  # white capitals and digits on a coloured label on black
    rows, cols = text[:, 0], text[:, 1]
    assert rows.max() - rows.min() + 1 >= 9
    assert 2 <= cols.min() and cols.max() < 340 - 2  # the text lies inside its label, the label inside the frame


def test_person_label():
    det = result(0).detections
    assert person_label(det, 0, ACTIONS) == "#3\nbrush teeth 0.71\nfishing 0.29"
    assert person_label(det, 1, ACTIONS, top_k=1) == "fishing 0.98"


@pytest.mark.parametrize("sink_class", [JsonSink, CsvSink, VideoSink])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_no_file(tmp_path, sink_class, error):
    out = tmp_path / f"out{ {JsonSink: '.json', CsvSink: '.csv', VideoSink: '.mp4'}[sink_class] }"
    with pytest.raises(error):
        with sink_class(out) as sink:
            sink.open(info(width=96, height=64), ACTIONS, MODEL)
            sink.write(result(0, image=np.zeros((64, 96, 3), np.uint8)))
            raise error()
    assert list(tmp_path.iterdir()) == []


def test_abort_keeps_previous_file(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("previous")
    sink = JsonSink(out)
    sink.open(info(), ACTIONS, MODEL)
    sink.write(result(0))
    sink.abort()
    assert out.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [out]


def test_unwritable_paths(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    cases = {
        tmp_path / "missing" / "out.json": "folder {} does not exist".format(tmp_path / "missing"),
        tmp_path / "file" / "out.json": "{} is not a folder".format(tmp_path / "file"),
        tmp_path / "folder": "it is a folder",
    }
    for path, reason in cases.items():
        for sink_class in (JsonSink, CsvSink, VideoSink):
            with pytest.raises(StclipError) as err:
                sink_class(path)
            assert str(err.value) == f"cannot write {path}: {reason}"
    assert check_writable(tmp_path / "ok.json") == tmp_path / "ok.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
