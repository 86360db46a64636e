"""Action events from synthetic score sequences with known spans: flicker inside a span, a short blip, two tracks, a
span at the end of the video, and a stream that ends mid-event; the WebVTT and SRT files parsed back."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import supervision as sv

from stclip_cli.errors import StclipError
from stclip_cli.sinks.events import EventRule, EventTracker, find_events, format_events
from stclip_cli.records import SCORES, FrameResult

FPS = 10.0
ACTIONS = ["fight", "wave", "standing"]


def frames(per_track: dict[int, list[str | None]], n: int) -> list[FrameResult]:
    """Frame i holds one person per track; its top action is ``per_track[track][i]`` (None: the track is absent),
    scored 0.8 against 0.1 for the others."""
    out = []
    for i in range(n):
        tracks = [t for t, acts in per_track.items() if acts[i] is not None]
        scores = np.full((len(tracks), len(ACTIONS)), 0.1, np.float32)
        for row, track in enumerate(tracks):
            scores[row, ACTIONS.index(per_track[track][i])] = 0.8
        det = sv.Detections(xyxy=np.array([[track, 0, track + 10, 10] for track in tracks], np.float32).reshape(-1, 4),
                            tracker_id=np.array(tracks, int))
        det.data[SCORES] = scores
        out.append(FrameResult(i, i / FPS, det))
    return out


def spans(events) -> list[tuple[int, str, int, int]]:
    return [(e.track_id, e.action, e.start_frame, e.end_frame) for e in events]


RULE = EventRule(threshold=0.5, gap=0.3, min_duration=0.4, neutral=("standing",))


def test_flicker_inside_a_span_does_not_split_it():
    acts = ["fight"] * 10 + ["standing"] * 2 + ["fight"] * 10  # 0.2 s of something else: bridged by the 0.3 s gap
    assert spans(find_events(frames({1: acts}, 22), "v", ACTIONS, RULE)) == [(1, "fight", 0, 21)]


def test_a_pause_longer_than_the_gap_splits_and_a_blip_is_dropped():
    acts = ["fight"] * 8 + ["standing"] * 5 + ["fight"] * 8 + ["standing"] * 3 + ["wave"] * 2 + ["standing"] * 4
    assert spans(find_events(frames({1: acts}, 30), "v", ACTIONS, RULE)) == [(1, "fight", 0, 7), (1, "fight", 13, 20)]


def test_two_tracks_and_a_span_at_the_end_of_the_video():
    one = ["wave"] * 12 + [None] * 8
    two = ["standing"] * 14 + ["fight"] * 6
    events = find_events(frames({1: one, 2: two}, 20), "v", ACTIONS, RULE)
    assert spans(events) == [(1, "wave", 0, 11), (2, "fight", 14, 19)]
    assert events[1].end == pytest.approx(1.9) and events[1].peak_score == pytest.approx(0.8)
    assert events[1].box == [2.0, 0.0, 12.0, 10.0] and events[1].mean_score == pytest.approx(0.8)


def test_neutral_names_make_no_events_and_untracked_persons_none():
    assert find_events(frames({1: ["standing"] * 20}, 20), "v", ACTIONS, RULE) == []
    untracked = frames({-1: ["fight"] * 20}, 20)
    assert find_events(untracked, "v", ACTIONS, RULE) == []


def test_multi_label_uses_each_score_against_the_threshold():
    results = frames({1: ["fight"] * 10}, 10)
    for r in results:
        r.detections.data[SCORES][:, 1] = 0.6  # wave is not top-1, but above the threshold
    rule = EventRule(threshold=0.5, gap=0.3, min_duration=0.4, multi_label=True)
    assert spans(find_events(results, "v", ACTIONS, rule)) == [(1, "fight", 0, 9), (1, "wave", 0, 9)]
    assert spans(find_events(results, "v", ACTIONS, RULE)) == [(1, "fight", 0, 9)]


def test_a_stream_says_start_once_long_enough_and_end_after_the_gap():
    tracker = EventTracker("cam", ACTIONS, RULE)
    said = []
    for result in frames({1: ["fight"] * 10 + ["standing"] * 10}, 20):
        said += [(kind, result.index, e.start_frame) for kind, e in tracker.update(result)]
    assert said == [("start", 4, 0), ("end", 13, 0)]  # 0.4 s long at frame 4; 0.3 s passed after frame 9 at 13


def test_a_stream_that_ends_mid_event_ends_it():
    tracker = EventTracker("cam", ACTIONS, RULE)
    said = []
    for result in frames({1: ["standing"] * 5 + ["wave"] * 7}, 12):
        said += [kind for kind, _ in tracker.update(result)]
    said += [kind for kind, _ in tracker.finish()]
    assert said == ["start", "end"] and spans(tracker.events) == [(1, "wave", 5, 11)]


def test_webvtt_and_srt_parse_back_to_the_events():
    events = find_events(frames({3: ["fight"] * 15 + ["standing"] * 10}, 25), "v", ACTIONS, RULE)
    vtt = format_events(events, ".vtt", "v", ACTIONS, RULE, FPS)
    assert vtt.startswith("WEBVTT\n\n")
    cues = re.findall(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n(.+)\n", vtt)
    assert len(cues) == 1
    h1, m1, s1, ms1, h2, m2, s2, ms2, text = cues[0]
    assert (int(s1), int(ms1), int(s2), int(ms2)) == (0, 0, 1, 500) and text == "#3 fight 0.80"
    srt = format_events(events, ".srt", "v", ACTIONS, RULE, FPS)
    assert srt.splitlines()[:3] == ["1", "00:00:00,000 --> 00:00:01,500", "#3 fight 0.80"]
    data = json.loads(format_events(events, ".json", "v", ACTIONS, RULE, FPS))
    assert data["rule"]["neutral"] == ["standing"] and data["events"][0]["end_frame"] == 14
    rows = format_events(events, ".csv", "v", ACTIONS, RULE, FPS).splitlines()
    assert rows[0].startswith("video,track_id,action,start,end") and rows[1].startswith("v,3,fight,0.0,1.4,0,14")


@pytest.mark.parametrize("change", [{"threshold": float("nan")}, {"threshold": 1.5}, {"gap": -1.0},
                                    {"min_duration": float("inf")}])
def test_a_bad_rule_is_one_error(change):
    with pytest.raises(StclipError, match="--event"):
        EventRule(**change)


@pytest.mark.slow
def test_events_of_a_file_and_of_the_same_clip_on_stdin_are_the_same(tmp_path, make_video, checkpoint):
    import subprocess
    import sys

    video = make_video(tmp_path, n_frames=40, fps=10)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 40, 50], "score": 0.9} for f in range(40)]))
    common = ["--actions", "clap,wave", "--neutral", "standing", "--model", "tiny-test", "--checkpoint", str(checkpoint),
              "--boxes", str(boxes), "--quiet", "--event-threshold", "0.2", "--event-min", "0.3"]
    run = [sys.executable, "-m", "stclip_cli", "detect"]
    whole = subprocess.run([*run, str(video), *common, "--events", str(tmp_path / "events.json"),
                            "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    data = json.loads((tmp_path / "events.json").read_text())
    assert data["rule"]["neutral"] == ["standing"] and data["events"], data
    assert json.loads((tmp_path / "r.json").read_text())["actions"] == ["clap", "wave", "standing"]
    with open(video, "rb") as stdin:
        piped = subprocess.run([*run, "-", *common, "--events", "-"], stdin=stdin, capture_output=True, text=True,
                               timeout=300)
    assert piped.returncode == 0, piped.stderr
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert {line["event"] for line in lines} == {"start", "end"} and all("latency_s" in line for line in lines)
    ended = [{k: v for k, v in line.items() if k not in ("event", "latency_s", "video")} for line in lines
             if line["event"] == "end"]
    expected = [{k: v for k, v in e.items() if k != "video"} for e in data["events"]]
    key = lambda e: (e["start"], e["track_id"], e["action"])  # noqa: E731
    assert sorted(ended, key=key) == sorted(expected, key=key)


def test_the_plot_draws_the_events_spans(tmp_path, make_video, checkpoint, monkeypatch):
    from typer.testing import CliRunner

    from stclip_cli.cli import app
    from stclip_cli.sinks import timeline

    drawn = []
    real = timeline.render_png
    monkeypatch.setattr(timeline, "render_png", lambda t, path: (drawn.append(t), real(t, path))[1])
    video = make_video(tmp_path, n_frames=30, fps=10)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": f, "bbox": [10, 8, 40, 50], "score": 0.9} for f in range(30)]))
    result = CliRunner().invoke(app, ["detect", str(video), "--actions", "clap,wave", "--model", "tiny-test",
                                      "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet", "--event-threshold",
                                      "0.2", "--event-min", "0.3", "--events", str(tmp_path / "e.json"),
                                      "--plot", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    events = json.loads((tmp_path / "e.json").read_text())["events"]
    assert events and len(drawn) == 1
    assert sorted(drawn[0].events) == sorted((e["track_id"], ["clap", "wave"].index(e["action"]), pytest.approx(e["start"], abs=1e-3),
                                              pytest.approx(e["end"], abs=1e-3)) for e in events)
