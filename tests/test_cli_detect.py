"""`stclip detect` end to end through Typer's runner and as a subprocess, with the tiny model card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from typer.testing import CliRunner

from conftest import DETECT_ACTIONS, base_args, boxes_file, detect, one_line_error, write_vfr_video, write_video
from stclip_cli.weights.cards import build_model, load_card, save_checkpoint
from stclip_cli.cli import app

runner = CliRunner()
ACTIONS = DETECT_ACTIONS


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path



def test_detect_json_schema_and_times(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=20, fps=10)
    out = tmp_path / "out.json"
    result = detect(video, *base_args(checkpoint, boxes_file(tmp_path, 20)), "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert (data["width"], data["height"], data["fps"], data["num_frames"]) == (96, 64, 10.0, 20)
    assert data["actions"] == ACTIONS.split(",")
    assert data["model"] == {"name": "tiny-test", "backbone": "stclip-tiny-test", "checkpoint": str(checkpoint), "mode": "softmax", "note": None, "precision": "fp32"}
    assert [f["index"] for f in data["frames"]] == list(range(20))
    assert [f["time"] for f in data["frames"]] == pytest.approx([i / 10 for i in range(20)])
    person = data["frames"][3]["persons"][0]
    assert person["box"] == [10, 8, 40, 50] and person["detector_score"] == pytest.approx(0.9)
    assert set(person["scores"]) == set(ACTIONS.split(","))
    assert sum(person["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    # the two persons of a frame are scored differently (their own crops)
    assert data["frames"][3]["persons"][0]["scores"] != data["frames"][3]["persons"][1]["scores"]


@pytest.fixture(scope="module")
def stride_run(tmp_path_factory, checkpoint) -> Path:
    """One detect run at --stride 4 over 17 frames writing JSON, CSV and an annotated video: its folder."""
    folder = tmp_path_factory.mktemp("stride")
    video = write_video(folder / "clip.mp4", n_frames=17)
    result = detect(video, *base_args(checkpoint, boxes_file(folder, 17)), "--stride", "4", "--video", folder / "a.mp4",
                    "--csv", folder / "a.csv", "--json", folder / "a.json")
    assert result.exit_code == 0, result.output
    return folder


def test_stride_scores_every_nth_frame_in_the_json(stride_run):
    data = json.loads((stride_run / "a.json").read_text())
    assert [f["index"] for f in data["frames"]] == [0, 4, 8, 12, 16]


def test_stride_video_keeps_every_frame(stride_run):
    with av.open(str(stride_run / "a.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 17 and (frames[0].width, frames[0].height) == (96, 64)


def test_stride_csv_has_a_row_per_keyframe_person_and_action(stride_run):
    header, *rows = (stride_run / "a.csv").read_text().strip().splitlines()
    assert header == "video_id,time,x1,y1,x2,y2,action,score" and len(rows) == 5 * 2 * 3


def test_default_output_is_json_beside_the_video(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=17)
    result = detect(video, *base_args(checkpoint, boxes_file(tmp_path, 17)))
    assert result.exit_code == 0 and (tmp_path / "clip.stclip.json").is_file()


def test_variable_frame_rate_video_keeps_source_times(tmp_path, checkpoint):
    """The annotated MP4 of a VFR input shows every frame at its source time (was re-timed to a constant rate)."""
    times = [0.0, 0.04, 0.05, 0.3, 0.31, 0.9, 0.95, 1.6, 1.62, 2.5]
    video = write_vfr_video(tmp_path / "vfr.mp4", times)
    out = tmp_path / "annotated.mp4"
    result = detect(video, *base_args(checkpoint, boxes_file(tmp_path, len(times))), "--stride", "3", "--video", out,
                    "--json", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert [f["time"] for f in data["frames"]] == pytest.approx(times[::3], abs=1e-6)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        shown = [float((f.pts - (stream.start_time or 0)) * stream.time_base) for f in container.decode(stream)]
    assert shown == pytest.approx(times, abs=1e-9)

def test_single_action_votes_and_tracking(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=12)
    out = tmp_path / "out.json"
    result = detect(video, *base_args(checkpoint, boxes_file(tmp_path, 12)), "--single-action", "--track", "--smooth", "0.5", "--json", out)
    assert result.exit_code == 0, result.output
    persons = [p for f in json.loads(out.read_text())["frames"] for p in f["persons"]]
    assert len(persons) == 24
    assert all(p["scores"] == persons[0]["scores"] for p in persons)
    ids = {p["track_id"] for p in persons[4:]}
    assert len(ids - {None}) == 2


def test_interest_token_switch(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=6)
    outs = {}
    for k in ("0", "5"):
        outs[k] = tmp_path / f"k{k}.json"
        result = detect(video, *base_args(checkpoint, boxes_file(tmp_path, 6)), "--interest-k", k, "--json", outs[k])
        assert result.exit_code == 0, result.output
    a, b = (json.loads(outs[k].read_text())["frames"][2]["persons"][0]["scores"] for k in ("0", "5"))
    assert a.keys() == b.keys() and a != b


def test_nobody_found_is_valid(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=8)
    empty = tmp_path / "none.json"
    empty.write_text("[]")
    out = tmp_path / "out.json"
    result = detect(video, *base_args(checkpoint, empty), "--json", out)
    assert result.exit_code == 0, result.output
    frames = json.loads(out.read_text())["frames"]
    assert len(frames) == 8 and all(f["persons"] == [] for f in frames)


def test_several_videos_one_bad(tmp_path, make_video, checkpoint):
    good = make_video(tmp_path, n_frames=8, name="good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    outdir = tmp_path / "outs"
    outdir.mkdir()
    result = detect(bad, good, *base_args(checkpoint, boxes_file(tmp_path, 8)), "--json", outdir)
    assert result.exit_code == 1
    assert "bad.mp4" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in outdir.iterdir()) == ["good.json"]


def test_frames_folder(tmp_path, make_frames_folder, checkpoint):
    folder = make_frames_folder(tmp_path, n_frames=10)
    out = tmp_path / "out.json"
    result = detect(folder, *base_args(checkpoint, boxes_file(tmp_path, 10)), "--fps", "5", "--json", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["frames"][2]["time"] == pytest.approx(0.4)


def test_clip_weights_file_and_baselines(tmp_path, make_video):
    torch.manual_seed(0)
    clip = build_model(load_card("tiny-test")).clip
    weights = tmp_path / "tiny-clip.pt"
    torch.save({k: v for k, v in clip.state_dict().items() if "lora_" not in k and "base_layer" not in k} | {
        k.replace(".base_layer", ""): v for k, v in clip.state_dict().items() if "base_layer" in k}, weights)
    video = make_video(tmp_path, n_frames=6)
    for model in ("baseline", "baseline-crop"):
        out = tmp_path / f"{model}.json"
        result = detect(video, "--actions", ACTIONS, "--model", model, "--backbone", "stclip-tiny-test", "--clip-weights", weights,
                        "--boxes", boxes_file(tmp_path, 6), "--json", out, "--quiet")
        assert result.exit_code == 0, result.output
        frame = json.loads(out.read_text())["frames"][0]
        a, b = (p["scores"] for p in frame["persons"])
        assert (a == b) == (model == "baseline")  # the whole-frame baseline gives every person the frame's scores


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda d: d / "missing.mp4", "video not found"),
        (lambda d: written(d / "empty.mp4", b""), "empty file"),
        (lambda d: written(d / "text.mp4", b"hello, I am text\n" * 20), "text.mp4"),
    ],
)
def test_bad_video_inputs(tmp_path, checkpoint, make_input, expected):
    out = tmp_path / "out.json"
    line = one_line_error(detect(make_input(tmp_path), *base_args(checkpoint, boxes_file(tmp_path, 5)), "--json", out))
    assert expected in line
    assert not out.exists()


def test_truncated_video(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=60, size=(160, 120))
    data = video.read_bytes()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out.json"
    line = one_line_error(detect(truncated, *base_args(checkpoint, boxes_file(tmp_path, 60)), "--json", out))
    assert "cut.mp4" in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize(
    "actions, expected",
    [(" , ,", "no action names"), ("run,jump,Run", "duplicate action name 'Run'")],
)
def test_bad_actions(tmp_path, make_video, checkpoint, actions, expected):
    video = make_video(tmp_path, n_frames=4)
    args = base_args(checkpoint, boxes_file(tmp_path, 4))
    args[1] = actions
    assert expected in one_line_error(detect(video, *args))


def test_checkpoint_for_another_backbone(tmp_path, make_video, checkpoint):
    torch.manual_seed(0)
    card = load_card("tiny-test").replace(window=5)
    other = tmp_path / "t5.safetensors"
    save_checkpoint(other, build_model(card), card, {"step": 0})
    video = make_video(tmp_path, n_frames=4)
    line = one_line_error(detect(video, *base_args(checkpoint, boxes_file(tmp_path, 4)), "--window", "9", "--checkpoint", other))
    assert "was trained for window 5" in line
    line = one_line_error(detect(video, "--actions", ACTIONS, "--checkpoint", checkpoint, "--backbone", "ViT-B-16", "--boxes", boxes_file(tmp_path, 4)))
    assert "was trained for backbone stclip-tiny-test (this run: ViT-B-16)" in line


def test_unwritable_output_and_missing_weights(tmp_path, make_video, checkpoint, monkeypatch):
    video = make_video(tmp_path, n_frames=4)
    line = one_line_error(detect(video, *base_args(checkpoint, boxes_file(tmp_path, 4)), "--json", tmp_path / "no" / "such" / "dir.json"))
    assert "cannot write" in line
    line = one_line_error(detect(video, "--actions", ACTIONS, "--model", "tiny-test", "--checkpoint", checkpoint, "--detector", "yolo_missing.pt"))
    assert "--detector" in line
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_line_error(detect(video, "--actions", ACTIONS, "--model", "baseline", "--boxes", boxes_file(tmp_path, 4)))
    assert "--clip-weights" in line
    line = one_line_error(detect(video, "--actions", ACTIONS, "--model", "baseline", "--clip-weights", tmp_path / "nope.pt"))
    assert "nope.pt" in line


@pytest.mark.slow
def test_subprocess_with_yolo_from_yaml(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=6)
    out = tmp_path / "out.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "stclip_cli", "detect", str(video), "--actions", ACTIONS, "--model", "tiny-test",
         "--checkpoint", str(checkpoint), "--detector", "yolo11n.yaml", "--person-conf", "0.0001", "--fp-margin", "0.7",
         "--json", str(out), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert len(data["frames"]) == 6
    proc = subprocess.run([sys.executable, "-m", "stclip_cli", "detect", str(tmp_path / "nope.mp4"), "--actions", "a"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "nope.mp4" in proc.stderr


@pytest.mark.slow
def test_sample_clip_end_to_end(tmp_path, sample_clip, checkpoint):
    out, video = tmp_path / "aw.json", tmp_path / "aw.mp4"
    result = detect(sample_clip, *base_args(checkpoint, boxes_file(tmp_path, 280, ((40, 30, 170, 250), (170, 30, 320, 250)))),
                    "--json", out, "--video", video, "--track")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert len(data["frames"]) == 280 and (data["width"], data["height"]) == (340, 256)
    assert [f["time"] for f in data["frames"]] == pytest.approx([i / 28 for i in range(280)], abs=1e-4)
    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 280 and (frames[0].width, frames[0].height) == (340, 256)


def test_video_with_no_decodable_frames(tmp_path, make_video, checkpoint):
    path = make_video(tmp_path, n_frames=10)
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)  # keep the container, zero every frame's bytes
    path.write_bytes(bytes(data))
    out = tmp_path / "out.json"
    line = one_line_error(detect(path, *base_args(checkpoint, boxes_file(tmp_path, 10)), "--json", out))
    assert "no decodable video frames" in line and not out.exists()


def test_boxes_formats_and_frames_beyond_the_video(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=6)
    corners = tmp_path / "xyxy.json"
    corners.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 40, 50], "score": "0.8"} for f in (0, 2, 9, 12)]))
    out = tmp_path / "out.json"
    result = detect(video, *base_args(checkpoint, corners), "--boxes-format", "xyxy", "--json", out)
    assert result.exit_code == 0, result.output
    frames = json.loads(out.read_text())["frames"]
    assert [p["box"] for p in frames[2]["persons"]] == [[10, 8, 40, 50]] and frames[1]["persons"] == []
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines == [f"warning: {corners}: 2 boxes name frames beyond the video's 6 frames (first: entry 2, frame 9)"]
    result = detect(video, *base_args(checkpoint, corners), "--json", out)  # a list is COCO: bbox [x, y, w, h]
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["frames"][2]["persons"][0]["box"] == [10, 8, 50, 58]


def test_unknown_boxes_format_is_one_line(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=4)
    line = one_line_error(detect(video, *base_args(checkpoint, boxes_file(tmp_path, 4)), "--boxes-format", "xywh"))
    assert line == "error: unknown boxes format 'xywh': use stclip, coco, xyxy"


def test_boxes_format_without_boxes_is_one_line(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=4)
    args = ["--actions", ACTIONS, "--model", "tiny-test", "--checkpoint", checkpoint, "--boxes-format", "coco"]
    line = one_line_error(detect(video, *args))
    assert line == "error: --boxes-format describes a --boxes file; pass --boxes FILE too"


def test_inverted_xyxy_box_is_one_line(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=4)
    inverted = tmp_path / "inverted.json"
    inverted.write_text(json.dumps([{"image_id": 0, "bbox": [40, 8, 10, 50], "score": 1}]))
    line = one_line_error(detect(video, *base_args(checkpoint, inverted), "--boxes-format", "xyxy"))
    assert line == f"error: {inverted}: entry 0 bbox [40, 8, 10, 50] has x2 < x1 or y2 < y1; boxes here are [x1, y1, x2, y2]"


def test_action_name_longer_than_the_text_context_is_refused_before_decoding(tmp_path, checkpoint):
    not_a_video = written(tmp_path / "clip.mp4", b"not a video" * 10)  # decoding it first would fail differently
    out = tmp_path / "out.json"
    long_name = "a person who is slowly and carefully brushing their teeth in front of the mirror"
    args = base_args(checkpoint, boxes_file(tmp_path, 4))
    args[1] = f"{long_name},{long_name} at night"
    line = one_line_error(detect(not_a_video, *args, "--json", out))
    assert line == f"error: action name '{long_name}' is 17 tokens; the text encoder reads at most 16 (shorten it)"
    assert not out.exists()


class RunsCode:
    """Unpickling this runs ``exec``, which creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class TripsRestrictedLoad:
    """Unpickles fine unrestricted, but makes torch's restricted unpickler raise TypeError (open_clip then retries)."""

    def __reduce__(self):
        import collections

        return (collections.OrderedDict, (), (None, {"x": 1}))


def test_weight_files_never_run_code(tmp_path, make_video, checkpoint, monkeypatch):
    video = make_video(tmp_path, n_frames=4)
    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted.pt"
    torch.save({"trip": TripsRestrictedLoad(), "payload": RunsCode(marker)}, crafted)
    line = one_line_error(detect(video, "--actions", ACTIONS, "--model", "tiny-test", "--checkpoint", checkpoint,
                                 "--detector", crafted, "--json", tmp_path / "a.json"))
    assert line.startswith(f"error: {crafted}: refusing to load: it needs builtins.exec, which is not an ultralytics model class")
    line = one_line_error(detect(video, *base_args(crafted, boxes_file(tmp_path, 4))))
    assert line.startswith(f"error: {crafted} is not a safetensors checkpoint")
    # open_clip retries a restricted load that raised TypeError without weights_only; this variable made it unrestricted
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    line = one_line_error(detect(video, "--actions", ACTIONS, "--model", "baseline", "--backbone", "stclip-tiny-test",
                                 "--clip-weights", crafted, "--boxes", boxes_file(tmp_path, 4)))
    assert line.startswith(f"error: could not load CLIP weights for stclip-tiny-test from {crafted}: ")
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1" and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    torch.load(crafted, weights_only=False)  # the file is armed: an unrestricted load runs it
    assert marker.exists()
