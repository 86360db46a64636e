"""Strings we distrust: what an input names never leaks a secret into a message, a result or a file name."""

from __future__ import annotations

import json
import re

import pytest

from stclip_cli.sinks.destinations import stream_stem
from stclip_cli.sources.inputs import StreamInput


@pytest.mark.parametrize("url, shown, stem", [
    ("http://user:p@ss@host/live.ts", "http://user:***@host/live.ts", "host-live"),
    ("rtsp://admin:a@b@c@cam:554/x", "rtsp://admin:***@cam:554/x", "cam-554-x"),
    ("http://user:@host/x", "http://user:***@host/x", "host-x"),
    ("http://host/a@b", "http://host/a@b", "host-a-b"),  # an @ in the path is not a password
])
def test_a_password_holding_at_signs_never_leaks(url, shown, stem):
    spec = StreamInput(url)
    assert spec.name == spec.label == shown
    assert stream_stem(url) == stem


@pytest.mark.parametrize("text, names", [
    (r"pick up\, then throw,run", ["pick up, then throw", "run"]),
    (r"a\\,b", ["a\\", "b"]),
    (r"c:\x,y", ["c:\\x", "y"]),
    ("zwnj\u200cname,b", ["zwnj\u200cname", "b"]),  # a joiner Persian needs stays
])
def test_a_comma_inside_an_action_name_is_written_backslash_comma(text, names):
    from stclip_cli.core.actions import parse_actions

    assert parse_actions(text) == names


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00bad\n", "is not UTF-8 text"),
    (b"run\n\x1b[31mred\n", "control character U+001B"),
    ("run\nabc\u202edef\n".encode(), "control character U+202E"),
])
def test_an_actions_file_that_is_not_plain_text_is_one_error(tmp_path, content, message):
    from stclip_cli.core.actions import parse_actions
    from stclip_cli.errors import StclipError

    path = tmp_path / "actions.txt"
    path.write_bytes(content)
    with pytest.raises(StclipError, match=re.escape(message)):
        parse_actions(None, path)
    with pytest.raises(StclipError, match="is a folder"):
        parse_actions(None, tmp_path)
    with pytest.raises(StclipError, match="pass one of them"):
        parse_actions("run", path)
    assert path.read_bytes() == content


def test_parquet_rows_take_the_track_ids_local_mode_takes():
    pa = pytest.importorskip("pyarrow")
    import numpy as np
    import supervision as sv

    from stclip_cli.records import SCORES, FrameResult
    from stclip_cli.sinks.rows import frame_rows

    det = sv.Detections(xyxy=np.array([[0, 0, 5, 5], [1, 1, 6, 6]], np.float32), tracker_id=np.array([2**40, -1]))
    det.data[SCORES] = np.array([[0.6, 0.4], [0.5, 0.5]], np.float32)
    batch = frame_rows(FrameResult(3, 0.1, det, True), ["a", "b"], "v.mp4", "m")
    assert batch.column("track_id").to_pylist() == [2**40, 2**40, None, None]
    assert batch.schema.field("track_id").type == pa.int64()


def test_parquet_dash_is_refused_not_a_folder_named_dash(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    from typer.testing import CliRunner

    from conftest import one_line_error
    from stclip_cli.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"x")
    line = one_line_error(CliRunner().invoke(app, ["detect", "a.mp4", "--actions", "run", "--parquet", "-"]))
    assert "--parquet cannot go to standard output" in line and not (tmp_path / "-").exists()


@pytest.mark.parametrize("data, message", [
    ({"frames": [{"index": 0, "persons": [{"box": [1, 2, 3, 4], "track_id": 10**20}]}]},
     "frames[0].persons[0].track_id must be an integer (int64) or null"),
    ([{"image_id": "²", "bbox": [1, 2, 3, 4], "score": 0.9}], "image_id"),
    ('[{"image_id": ' + "9" * 5000 + ', "bbox": [1, 2, 3, 4], "score": 0.9}]', "not a readable JSON boxes file"),
    ([{"image_id": 0, "bbox": [1, 2, 1e308, 4], "score": 0.9}], "bbox"),
])
def test_numbers_a_boxes_file_cannot_hold_are_one_error(tmp_path, data, message):
    import json

    from stclip_cli.core.detection import BoxesFile
    from stclip_cli.errors import StclipError

    path = tmp_path / "boxes.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(StclipError, match=re.escape(message)):
        BoxesFile(path).detect([__import__("numpy").zeros((8, 8, 3), "uint8")], [0])


def _result_with(**person_change) -> dict:
    person = {"box": [1.0, 2.0, 30.0, 40.0], "track_id": 1, "scores": {"clap": 0.7, "sit": 0.3}, **person_change}
    return {"video": "v.mp4", "fps": 10.0, "actions": ["clap", "sit"], "frames": [{"index": 0, "time": 0.0, "persons": [person]}]}


@pytest.mark.parametrize("text, message", [
    (json.dumps(_result_with(scores={"clap": float("nan"), "sit": 0.3})), 'scores["clap"] must be a finite number'),
    (json.dumps(_result_with(scores={"clap": float("inf"), "sit": 0.3})), 'scores["clap"] must be a finite number'),
    (json.dumps(_result_with(track_id=10**30)), "track_id must be an integer (int64) or null"),
    (json.dumps({**_result_with(), "frames": [{"index": 0, "time": 1e308, "persons": []}]}), ""),
    ("[" * 100000 + "]" * 100000, "not a readable JSON result file"),
])
def test_plot_of_a_hostile_result_is_one_line_or_a_picture(tmp_path, text, message):
    from typer.testing import CliRunner

    from conftest import one_line_error
    from stclip_cli.cli import app

    result = tmp_path / "r.json"
    result.write_text(text)
    ran = CliRunner().invoke(app, ["plot", str(result), "--out", str(tmp_path / "r.png"), "--quiet"])
    if message:
        assert message in one_line_error(ran)
    else:  # a time far beyond any video still draws (the axis spans it) or is one line; never a traceback
        assert ran.exit_code in (0, 1) and "Traceback" not in ran.output, ran.output
    assert result.read_text() == text


def test_an_xyxy_list_read_as_coco_by_default_is_warned_once(tmp_path, make_video, checkpoint):
    from typer.testing import CliRunner

    from stclip_cli.cli import app

    video = make_video(tmp_path, n_frames=3)  # 96 x 64
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [40, 10, 90, 60], "score": 0.9} for f in range(3)]))
    args = [str(video), "--actions", "clap,wave", "--model", "tiny-test", "--checkpoint", str(checkpoint), "--boxes",
            str(boxes), "--json", str(tmp_path / "out.json")]
    guessed = CliRunner().invoke(app, ["detect", *args])
    assert guessed.exit_code == 0, guessed.output
    warned = [line for line in guessed.output.splitlines() if "--boxes-format xyxy" in line]
    assert len(warned) == 1 and warned[0].startswith("warning:") and "96x64" in warned[0]
    told = CliRunner().invoke(app, ["detect", *args, "--boxes-format", "xyxy"])
    assert told.exit_code == 0 and "--boxes-format xyxy" not in told.output


def _mpegts(tmp_path, make_video):
    """The test clip remuxed into MPEG-TS (no re-encoding), and the same bytes cut in the middle of a packet."""
    import av

    video = make_video(tmp_path, n_frames=30)
    whole = tmp_path / "clip.ts"
    with av.open(str(video)) as source, av.open(str(whole), "w", format="mpegts") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = whole.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2 + 77])
    return whole, cut


@pytest.mark.slow
def test_a_truncated_mpeg_ts_file_or_pipe_is_an_error_not_fewer_frames(tmp_path, make_video, checkpoint):
    import subprocess
    import sys

    whole, cut = _mpegts(tmp_path, make_video)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 40], "score": 0.9} for f in range(30)]))
    args = ["--actions", "clap,wave", "--model", "tiny-test", "--checkpoint", str(checkpoint), "--boxes", str(boxes),
            "--quiet"]
    run = [sys.executable, "-m", "stclip_cli", "detect"]
    good = subprocess.run([*run, str(whole), *args, "--json", str(tmp_path / "w.json")], capture_output=True, text=True,
                          timeout=300)
    assert good.returncode == 0, good.stderr
    assert json.loads((tmp_path / "w.json").read_text())["frames"][-1]["index"] == 29
    bad = subprocess.run([*run, str(cut), *args, "--json", str(tmp_path / "c.json")], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "ends mid-packet: truncated" in bad.stderr, bad.stderr
    with open(cut, "rb") as stdin:
        piped = subprocess.run([*run, "-", *args, "--jsonl", str(tmp_path / "c.jsonl")], stdin=stdin,
                               capture_output=True, text=True, timeout=300)
    assert piped.returncode == 1 and "ends mid-packet: truncated" in piped.stderr, piped.stderr
    assert (tmp_path / "c.jsonl").read_text().count("\n") > 0  # the frames before it stay readable


def test_right_to_left_names_are_shaped_and_controls_shown_in_the_timeline(tmp_path):
    import arabic_reshaper
    from bidi import get_display

    from stclip_cli.sinks.timeline import Timeline, _plain, render_png

    assert _plain("שלום") == get_display("שלום") == "םולש"  # visual order: matplotlib draws left to right
    arabic = "مرحبا"
    assert _plain(arabic) == get_display(arabic_reshaper.reshape(arabic)) != arabic  # joined presentation forms
    assert _plain("wave\u202eevaw") == "wave\\u202eevaw" and _plain("a\x1bb") == "a\\u001bb"
    assert _plain("brush teeth") == "brush teeth"  # left-to-right text is left as it is
    import numpy as np

    from stclip_cli.sinks.timeline import Lane

    lane = Lane("#1", 1, np.array([0.0, 0.5]), np.array([0.5, 1.0]), np.array([0, 1]), np.array([0.9, 0.8]))
    render_png(Timeline("v.mp4", "m", None, ["שלום", arabic], 1.0, [lane], True), tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes().startswith(b"\x89PNG")


def test_a_frame_folder_with_a_frame_that_cannot_be_read_is_one_line(tmp_path, make_frames_folder, checkpoint):
    """Listed but not readable (as root, permissions cannot make a file unreadable: garbage bytes stand in)."""
    from typer.testing import CliRunner

    from conftest import one_line_error
    from stclip_cli.cli import app

    folder = make_frames_folder(tmp_path, n_frames=6)
    (folder / "frame_4.png").write_bytes(b"not a png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 30, 40], "score": 0.9} for f in range(6)]))
    line = one_line_error(CliRunner().invoke(app, ["detect", str(folder), "--actions", "clap,wave", "--model", "tiny-test",
                                                   "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet",
                                                   "--json", str(tmp_path / "out.json")]))
    assert "frame_4.png" in line and "cannot read image" in line
    assert not (tmp_path / "out.json").exists()
