"""Timelines: lanes from results (tracks, untracked persons, 20 tracks), the PNG, the terminal rows, `--plot` and
`stclip plot`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
from rich.console import Console
from typer.testing import CliRunner

from conftest import DETECT_ACTIONS as ACTIONS, base_args, boxes_file, detect, one_line_error
from stclip_cli import cli, report
from stclip_cli.sinks import timeline
from stclip_cli.errors import StclipError
from stclip_cli.records import FrameResult, ModelInfo, VideoInfo
from stclip_cli.sinks.timeline import (
    NOBODY, UNTRACKED, KeyframeLog, Lane, TimelineCollector, TimelineSink, binned, image_size, read_result, render_png,
    timeline_from_result, timeline_text,
)

runner = CliRunner()
NAMES = ["walk", "run", "wave"]


def person(track, x, scores, names=NAMES):
    return {"box": [x, 10, x + 20, 60], "detector_score": 0.9, "track_id": track, "scores": dict(zip(names, scores))}


def result_json(frames, names=NAMES, fps=10.0, num_frames=None, note=None):
    return {"video": "dir/clip.mp4", "width": 200, "height": 100, "fps": fps,
            "num_frames": num_frames if num_frames is not None else len(frames), "actions": names,
            "model": {"name": "tiny-test", "backbone": "b", "checkpoint": None, "mode": "softmax", "note": note},
            "frames": [{"index": i, "time": t, "persons": p} for i, (t, p) in enumerate(frames)]}


def coloured_pixels(path: Path) -> int:
    """Pixels of a saturated colour (the blocks; text, grid and lane bands are grey)."""
    image = cv2.imread(str(path))
    assert image is not None, f"{path} does not decode"
    return int((cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1] > 80).sum())


def png_shape(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} does not decode"
    return image.shape[1], image.shape[0]


def test_tracked_lanes_by_first_appearance_untracked_last():
    frames = [
        (0.0, [person(None, 10, [0.1, 0.8, 0.1]), person(None, 80, [0.6, 0.3, 0.1])]),
        (0.1, [person(7, 10, [0.1, 0.8, 0.1]), person(None, 80, [0.2, 0.2, 0.6])]),
        (0.2, [person(7, 10, [0.7, 0.2, 0.1]), person(3, 80, [0.2, 0.2, 0.6])]),
        (0.3, [person(3, 80, [0.2, 0.2, 0.6])]),
    ]
    tl = timeline_from_result(result_json(frames))
    assert tl.tracked and [lane.label for lane in tl.lanes] == ["#7", "#3", UNTRACKED]
    seven, three, loose = tl.lanes
    assert seven.start.tolist() == pytest.approx([0.1, 0.2]) and seven.end.tolist() == pytest.approx([0.2, 0.3])
    assert seven.action.tolist() == [1, 0] and seven.score.tolist() == pytest.approx([0.8, 0.7])
    assert three.start.tolist() == pytest.approx([0.2, 0.3]) and three.end[-1] == pytest.approx(0.4)
    # one untracked block per keyframe: the most confident untracked person of that keyframe
    assert loose.start.tolist() == pytest.approx([0.0, 0.1])
    assert loose.action.tolist() == [1, 2] and loose.score.tolist() == pytest.approx([0.8, 0.6])
    assert tl.video == "clip.mp4" and tl.model == "tiny-test" and tl.duration == pytest.approx(0.4)


def test_untracked_video_lanes_by_position_left_to_right():
    frames = [
        (0.0, [person(None, 150, [0.1, 0.1, 0.8]), person(None, 10, [0.9, 0.05, 0.05])]),
        (0.5, [person(None, 10, [0.9, 0.05, 0.05]), person(None, 150, [0.1, 0.1, 0.8])]),
        (1.0, [person(None, 150, [0.1, 0.7, 0.2])]),
    ]
    tl = timeline_from_result(result_json(frames, fps=2.0))
    assert not tl.tracked and [lane.label for lane in tl.lanes] == ["P1", "P2"]
    left, right = tl.lanes
    assert left.action.tolist() == [0, 0, 1]  # the only person of the last keyframe is the left-most one
    assert right.action.tolist() == [2, 2] and right.start.tolist() == pytest.approx([0.0, 0.5])


def test_twenty_tracks_sorted_by_first_appearance():
    rng = np.random.default_rng(0)
    starts = rng.permutation(20)  # track t appears at keyframe starts[t]
    log = KeyframeLog()
    for k in range(40):
        here = [t for t in range(20) if starts[t] <= k]
        log.add(k * 0.5, [100 + t for t in here], [float(t) for t in here], rng.dirichlet(np.ones(3), len(here)))
    tl = log.timeline("crowd.mp4", "m", None, NAMES, 20.0)
    assert [lane.label for lane in tl.lanes] == [f"#{100 + t}" for t in np.argsort(starts)]
    assert [len(lane) for lane in tl.lanes] == [40 - s for s in sorted(starts)]
    out = Console(width=120, record=True, file=io.StringIO())
    out.print(timeline_text(tl, width=60))
    text = out.export_text()
    rows = [line for line in text.splitlines() if line.strip().startswith("#")]
    assert len(rows) == 10 and "... 10 more tracks" in text
    shown = [int(r.split()[0][1:]) - 100 for r in rows]
    assert sorted(starts[shown]) == list(starts[shown]) and max(starts[shown]) <= 9  # the longest, in display order
    assert all(name in text for name in NAMES)


def test_stride_and_variable_rate_blocks_end_at_the_next_keyframe():
    frames = [(0.0, [person(1, 10, [1, 0, 0])]), (0.3, [person(1, 10, [1, 0, 0])]), (0.4, []), (1.0, [person(1, 10, [0, 1, 0])])]
    lane = timeline_from_result(result_json(frames, num_frames=0)).lanes[0]
    assert lane.start.tolist() == pytest.approx([0.0, 0.3, 1.0])
    assert lane.end.tolist() == pytest.approx([0.3, 0.4, 1.3])  # the last lasts the median keyframe interval


def test_bins_keep_narrow_blocks_and_the_most_confident():
    lane = Lane("#1", 1, np.array([0.0, 0.01, 0.02, 5.0]), np.array([0.01, 0.02, 0.03, 8.0]),
                np.array([0, 1, 2, 1]), np.array([0.3, 0.9, 0.5, 0.6]))
    action, score = binned(lane, 10, 10.0)
    assert action.tolist() == [1, -1, -1, -1, -1, 1, 1, 1, -1, -1]
    assert score[0] == pytest.approx(0.9) and score[5] == pytest.approx(0.6)


def test_an_hour_of_twenty_persons_renders(tmp_path):
    log = KeyframeLog()
    scores = np.random.default_rng(0).dirichlet(np.ones(3), 20)
    for k in range(36000):  # an hour at 10 scored frames/s: drawn in bins, not 36 000 rectangles a lane
        log.add(k / 10, list(range(20)), [0.0] * 20, scores)
    tl = log.timeline("hour.mp4", "m", None, NAMES, 3600.0)
    assert len(tl.lanes) == 20 and all(len(lane) == 36000 for lane in tl.lanes)
    assert len(timeline._blocks(tl.lanes[0], tl.duration)[0]) == timeline.MAX_PLOT_BLOCKS
    render_png(tl, tmp_path / "hour.png")
    assert png_shape(tmp_path / "hour.png") == image_size(20) and coloured_pixels(tmp_path / "hour.png") > 100000


@pytest.mark.parametrize("data, expected", [
    ([1, 2], "not a `stclip detect` result"),
    ({"actions": ["a"]}, "not a `stclip detect` result"),
    ({"actions": ["a"], "frames": [{"time": 0.0}]}, r'r.json: frames\[0\] has no "persons"'),
    ({"actions": ["a"], "frames": [{"time": 0.0, "persons": [{"box": [1, 2], "scores": {}}]}]},
     r"frames\[0\]\.persons\[0\]\.box must be 4 numbers"),
    ({"actions": ["a"], "frames": [{"time": "x", "persons": []}]}, r"frames\[0\]\.time must be a finite number"),
    ({"actions": ["a"], "frames": [{"time": 10 ** 400, "persons": []}]}, r"frames\[0\]\.time must be a finite number"),
])
def test_not_a_result_is_one_line(data, expected):
    with pytest.raises(StclipError, match=expected) as err:
        timeline_from_result(data, "r.json")
    assert "\n" not in str(err.value)


def test_png_size_colour_and_nobody(tmp_path):
    frames = [(i / 10, [person(1, 10, [0.9, 0.05, 0.05]), person(2, 90, [0.05, 0.05, 0.9])]) for i in range(30)]
    tl = timeline_from_result(result_json(frames, note="baseline fallback"))
    render_png(tl, tmp_path / "two.png")
    assert png_shape(tmp_path / "two.png") == image_size(2)
    assert coloured_pixels(tmp_path / "two.png") > 20000

    nobody = timeline_from_result(result_json([(i / 10, []) for i in range(30)]))
    assert nobody.lanes == []
    render_png(nobody, tmp_path / "nobody.png")
    image = cv2.imread(str(tmp_path / "nobody.png"))
    assert png_shape(tmp_path / "nobody.png") == image_size(0)
    assert coloured_pixels(tmp_path / "nobody.png") == 0 and (image < 128).sum() > 500  # axes and words, no blocks
    out = Console(width=100, record=True, file=io.StringIO())
    out.print(timeline_text(nobody))
    assert NOBODY in out.export_text()


def test_png_grows_with_lanes_up_to_a_cap(tmp_path):
    assert image_size(2)[1] < image_size(20)[1] < image_size(60)[1] == image_size(500)[1]
    assert image_size(2)[0] == image_size(500)[0]
    log = KeyframeLog()
    for k in range(10):
        log.add(k / 5, list(range(70)), [0.0] * 70, np.tile([0.2, 0.7, 0.1], (70, 1)))
    render_png(log.timeline("v.mp4", "m", None, NAMES, 2.0), tmp_path / "many.png")
    assert png_shape(tmp_path / "many.png") == image_size(70)


def test_dollar_signs_and_missing_glyphs_are_text(tmp_path):
    """Matplotlib reads "$...$" as mathtext; "$\\foo$" made it raise. Names are plain text."""
    names = [r"pay $\foo$", "$5 tip$", "舞"]
    frames = [(i / 10, [person(1, 10, [0.5, 0.3, 0.2], names)]) for i in range(5)]
    render_png(timeline_from_result(result_json(frames, names, note="set $STCLIP_CHECKPOINT or $HOME")), tmp_path / "d.png")
    assert png_shape(tmp_path / "d.png") == image_size(1)


def info(tmp_path: Path) -> VideoInfo:
    return VideoInfo(path=tmp_path / "in.mp4", width=200, height=100, fps=10.0, num_frames=20, rotation=0)


def frame_result(index: int, keyframe: bool = True) -> FrameResult:
    det = sv.Detections(xyxy=np.array([[10, 10, 50, 90], [120, 10, 160, 90]], np.float32), tracker_id=np.array([4, -1]),
                        data={"scores": np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]], np.float32)})
    return FrameResult(index, index / 10, det, keyframe)


def test_collector_logs_keyframes_only():
    sink = TimelineCollector()
    sink.open(VideoInfo(Path("a/in.mp4"), 200, 100, 10.0, 20, 0), NAMES, ModelInfo("m", "b", None, "softmax", "n"))
    for i in range(6):
        sink.write(frame_result(i, keyframe=i % 2 == 0))
    sink.close()
    tl = sink.timeline()
    assert (tl.video, tl.model, tl.note, tl.duration) == ("in.mp4", "m", "n", pytest.approx(2.0))
    assert [lane.label for lane in tl.lanes] == ["#4", UNTRACKED]
    assert tl.lanes[0].start.tolist() == pytest.approx([0.0, 0.2, 0.4]) and tl.lanes[1].action.tolist() == [2, 2, 2]


def test_sink_is_atomic(tmp_path):
    target = tmp_path / "t.png"
    with TimelineSink(target) as sink:
        sink.open(info(tmp_path), NAMES, ModelInfo("m", "b", None, "softmax"))
        sink.write(frame_result(0))
    assert png_shape(target) == image_size(2) and list(tmp_path.iterdir()) == [target]

    target.unlink()
    with pytest.raises(RuntimeError):
        with TimelineSink(target) as sink:
            sink.open(info(tmp_path), NAMES, ModelInfo("m", "b", None, "softmax"))
            sink.write(frame_result(0))
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_sink_drops_its_temp_when_rendering_fails(tmp_path, monkeypatch):
    def broken(tl, path):
        Path(path).write_bytes(b"half")
        raise OSError("no space left on device")

    monkeypatch.setattr(timeline, "render_png", broken)
    sink = TimelineSink(tmp_path / "t.png")
    sink.open(info(tmp_path), NAMES, ModelInfo("m", "b", None, "softmax"))
    with pytest.raises(StclipError, match="cannot write .*t.png: no space left on device"):
        sink.close()
    assert list(tmp_path.iterdir()) == []


def test_detect_plot_for_a_tracked_run_and_plot_command(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=20, size=(128, 96))
    out, png = tmp_path / "out.json", tmp_path / "timeline.png"
    boxes = boxes_file(tmp_path, 20, ((10, 8, 40, 50), (70, 10, 110, 80)))
    result = detect(video, *base_args(checkpoint, boxes), "--track", "--json", out, "--plot", png)
    assert result.exit_code == 0, result.output
    tl = read_result(out)
    tracks = [lane for lane in tl.lanes if lane.track_id is not None]
    assert len(tracks) == 2 and [lane.label for lane in tracks] == [f"#{lane.track_id}" for lane in tracks]
    assert [lane.label for lane in tl.lanes[2:]] in ([], [UNTRACKED])  # ByteTrack's unnamed first sightings, last
    assert png_shape(png) == image_size(len(tl.lanes)) and coloured_pixels(png) > 10000
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    again = tmp_path / "again.png"
    result = runner.invoke(cli.app, ["plot", str(out), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert f"wrote {again}" in result.output and "#" in result.output
    assert png_shape(again) == png_shape(png)
    assert np.array_equal(cv2.imread(str(again)), cv2.imread(str(png)))  # same timeline from the JSON as from the run
    result = runner.invoke(cli.app, ["plot", str(out), "--quiet"])
    assert result.exit_code == 0 and png_shape(out.with_suffix(".png")) == png_shape(png)


def test_detect_plot_nobody_and_several_videos(tmp_path, make_video, checkpoint):
    a, b = make_video(tmp_path, n_frames=8, name="a.mp4"), make_video(tmp_path, n_frames=8, name="b.mp4")
    empty = tmp_path / "none.json"
    empty.write_text("[]")
    plots = tmp_path / "plots"
    plots.mkdir()
    result = detect(a, b, *base_args(checkpoint, empty), "--plot", plots)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in plots.iterdir()) == ["a.png", "b.png"]
    for path in plots.iterdir():
        assert png_shape(path) == image_size(0) and coloured_pixels(path) == 0


def test_plot_errors_are_one_line(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=4)
    boxes = boxes_file(tmp_path, 4)
    assert "--plot writes a PNG image" in one_line_error(detect(video, *base_args(checkpoint, boxes), "--plot", tmp_path / "t.jpg"))
    assert "must be a folder" in one_line_error(detect(video, video, *base_args(checkpoint, boxes), "--plot", tmp_path / "t.png"))
    assert "does not exist" in one_line_error(detect(video, *base_args(checkpoint, boxes), "--plot", tmp_path / "no" / "t.png"))
    good = tmp_path / "r.json"
    good.write_text(json.dumps(result_json([(0.0, [])])))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    folder = tmp_path / "d.png"
    folder.mkdir()
    cases = [
        (["plot", str(tmp_path / "missing.json")], "file not found"),
        (["plot", str(bad)], "not a readable JSON result file"),
        (["plot", str(boxes)], "not a `stclip detect` result"),
        (["plot", str(good), "--out", str(tmp_path / "r.svg")], "--out writes a PNG image: name the file .png"),
        (["plot", str(good), "--out", str(tmp_path)], "it is a folder"),
        (["plot", str(good), "--out", str(folder)], "it is a folder"),
    ]
    for args, expected in cases:
        assert expected in one_line_error(runner.invoke(cli.app, args)), args
    png_named = tmp_path / "x.png"
    png_named.write_text(json.dumps(result_json([(0.0, [])])))
    assert "would write over the input" in one_line_error(runner.invoke(cli.app, ["plot", str(png_named)]))
    assert not list(tmp_path.glob("*.part*")) and not (tmp_path / "r.png").exists()


def test_terminal_summary_shows_the_timeline(tmp_path, make_video, checkpoint, monkeypatch):
    video = make_video(tmp_path, n_frames=12)
    terminal = Console(force_terminal=True, width=110, file=io.StringIO(), record=True)
    monkeypatch.setattr(cli, "console", terminal)
    monkeypatch.setattr(report, "console", terminal)
    args = [a for a in base_args(checkpoint, boxes_file(tmp_path, 12)) if a != "--quiet"]
    result = detect(video, *args, "--track", "--json", tmp_path / "o.json")
    assert result.exit_code == 0, result.output
    text = terminal.export_text()
    assert "clip.mp4 — tiny-test" in text and "shade = score" in text
    assert sum(line.strip().startswith("#") for line in text.splitlines()) == 2
    assert all(name in text for name in ACTIONS.split(","))

    quiet = Console(force_terminal=True, width=110, file=io.StringIO(), record=True)
    monkeypatch.setattr(cli, "console", quiet)
    monkeypatch.setattr(report, "console", quiet)
    assert detect(video, *base_args(checkpoint, boxes_file(tmp_path, 12)), "--json", tmp_path / "q.json").exit_code == 0
    assert "shade = score" not in quiet.export_text()


@pytest.mark.parametrize("fps", [1e-308, 0, -5, "25"])
def test_a_result_with_a_useless_frame_rate_still_draws(fps, tmp_path):
    """A frame rate of 1e-308 made the duration infinite: a traceback from matplotlib instead of a plot."""
    data = {"actions": ["a"], "fps": fps, "num_frames": 10,
            "frames": [{"time": 0.1 * i, "persons": [{"box": [0, 0, 4, 4], "scores": {"a": 0.8}}]} for i in range(3)]}
    tl = timeline_from_result(data, "r.json")
    assert tl.duration == pytest.approx(0.3)
    render_png(tl, tmp_path / "t.png")
    assert png_shape(tmp_path / "t.png") == image_size(1)


def test_plot_and_terminal_summary_log_each_keyframe_once(tmp_path, make_video, checkpoint, monkeypatch):
    """With --plot and a terminal, the summary kept a second log of every keyframe beside the plot's."""
    from stclip_cli.sinks import timeline as timeline_module

    video = make_video(tmp_path, n_frames=12)
    recorded = Console(force_terminal=True, width=110, file=io.StringIO(), record=True)
    monkeypatch.setattr(cli, "console", recorded)
    monkeypatch.setattr(report, "console", recorded)
    logged = []
    original = timeline_module.KeyframeLog.add
    monkeypatch.setattr(timeline_module.KeyframeLog, "add", lambda self, *a: (logged.append(a[0]), original(self, *a))[1])
    args = [a for a in base_args(checkpoint, boxes_file(tmp_path, 12)) if a != "--quiet"]
    result = detect(video, *args, "--json", tmp_path / "o.json", "--plot", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    assert len(logged) == len(set(logged)) == 12 and "shade = score" in recorded.export_text()
