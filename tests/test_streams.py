"""Live and streamed sources: http on 127.0.0.1 and standard input give the results of the same file read from disk,
JSON Lines leave as frames are scored, a dead URL fails fast in one line, Ctrl-C closes a stream's outputs cleanly,
and a live source that scoring cannot keep up with is thinned out, saying so (deterministically, with a fake clock)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from conftest import DETECT_ACTIONS as ACTIONS, base_args, boxes_file, detect, one_line_error, synthetic_frame, write_video
from stclip_cli.sinks import display
from stclip_cli.core import predictor as predictor_module
from stclip_cli.weights.cards import build_model, load_card
from stclip_cli.sinks.destinations import Target, plan_outputs, stream_stem
from stclip_cli.core.detection import BoxesFile
from stclip_cli.errors import StclipError
from stclip_cli.sinks.outputs import JsonLinesSink, PaceMeter, VideoSink
from stclip_cli.sources.pacing import AdaptiveStride
from stclip_cli.core.predictor import DetectOptions, Predictor
from stclip_cli.core.scoring import Scorer
from stclip_cli.sources.opener import probe
from stclip_cli.sources.inputs import StreamInput, check_inputs, is_stream
from stclip_cli.records import Frame, FrameResult, ModelInfo, VideoInfo

MODEL = ModelInfo("tiny-test", "stclip-tiny-test", None, "softmax")


def remux(source: Path, target: Path, container_format: str, options: dict | None = None) -> Path:
    """The same packets in another container (mp4 with its index first, MPEG-TS, raw H.264)."""
    with av.open(str(source)) as src, av.open(str(target), "w", format=container_format, options=options or {}) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out
            dst.mux(packet)
    return target


@pytest.fixture
def http_folder(tmp_path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (an ephemeral port): (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def one_person() -> sv.Detections:
    return sv.Detections(xyxy=np.array([[10, 8, 40, 50]], dtype=np.float32),
                         data={"scores": np.array([[0.2, 0.5, 0.3]], np.float32)})


def frames_of(path: Path) -> list[dict]:
    return json.loads(path.read_text())["frames"]


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def same_results(a: list[dict], b: list[dict]) -> None:
    """Scored frames agree: indices, times, boxes, detector scores and action scores."""
    assert [f["index"] for f in a] == [f["index"] for f in b]
    assert [f["time"] for f in a] == pytest.approx([f["time"] for f in b], abs=1e-6)
    assert [f["persons"] for f in a] == [f["persons"] for f in b]


def stclip(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stclip_cli", "detect", *map(str, args)], **popen)


# ---------------------------------------------------------------- sources equal to the file


def test_http_source_gives_the_results_of_the_file(tmp_path, checkpoint, http_folder):
    folder, base = http_folder
    video = write_video(tmp_path / "clip.mp4", n_frames=20)
    remux(video, folder / "clip.mp4", "mp4", {"movflags": "faststart"})  # no range requests: index first
    args = base_args(checkpoint, boxes_file(tmp_path, 20))
    result = detect(video, *args, "--json", tmp_path / "disk.json", "--jsonl", tmp_path / "disk.jsonl")
    assert result.exit_code == 0, result.output
    result = detect(f"{base}/clip.mp4", *args, "--json", tmp_path / "http.json", "--jsonl", tmp_path / "http.jsonl")
    assert result.exit_code == 0, result.output
    disk, http = frames_of(tmp_path / "disk.json"), frames_of(tmp_path / "http.json")
    assert len(disk) == 20
    same_results(disk, http)
    assert json.loads((tmp_path / "http.json").read_text())["video"] == f"{base}/clip.mp4"
    for name in ("disk.jsonl", "http.jsonl"):  # one line per scored frame, the same results as the JSON
        lines = lines_of((tmp_path / name).read_text())
        same_results(disk, lines)
        assert [line["stride"] for line in lines] == [None] + [1] * 19  # an http file is not live: every frame
        assert all(line["latency_s"] >= 0 for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("container", ["mp4", "h264"])
def test_standard_input_gives_the_results_of_the_file(tmp_path, checkpoint, container):
    """A file redirected into stdin (mp4, seekable) and raw H.264 through a pipe (no timestamps: --fps times it)."""
    video = write_video(tmp_path / "clip.mp4", n_frames=16, fps=10)
    args = base_args(checkpoint, boxes_file(tmp_path, 16))
    assert detect(video, *args, "--json", tmp_path / "disk.json").exit_code == 0
    if container == "mp4":
        with open(video, "rb") as stdin:
            proc = stclip("-", *args, "--json", tmp_path / "stdin.json", stdin=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
            _, stderr = proc.communicate(timeout=300)
    else:
        raw = remux(video, tmp_path / "clip.h264", "h264").read_bytes()
        proc = stclip("-", *args, "--fps", "10", "--json", tmp_path / "stdin.json", stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, stderr = proc.communicate(raw, timeout=300)
        stderr = stderr.decode()
    assert proc.returncode == 0, stderr
    same_results(frames_of(tmp_path / "disk.json"), frames_of(tmp_path / "stdin.json"))
    assert json.loads((tmp_path / "stdin.json").read_text())["video"] == "-"


@pytest.mark.slow
def test_json_lines_leave_while_running_and_ctrl_c_closes_the_outputs(tmp_path, checkpoint):
    """A slow producer on stdin: lines come out (flushed) while stclip still runs; Ctrl-C then ends the stream
    cleanly: exit 0, every line whole, the JSON complete, the video (written in place) playable."""
    video = write_video(tmp_path / "clip.mp4", n_frames=80, fps=10)
    data = remux(video, tmp_path / "clip.ts", "mpegts").read_bytes()
    outputs = {"json": tmp_path / "out.json", "video": tmp_path / "out.mp4"}
    proc = stclip("-", *base_args(checkpoint, boxes_file(tmp_path, 80)), "--jsonl", "-", "--json", outputs["json"],
                  "--video", outputs["video"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        proc.stdin.write(data[: len(data) // 2])  # about 40 frames, then the producer stalls
        proc.stdin.flush()
        first = json.loads(lines.get(timeout=240))
        assert proc.poll() is None, "stclip should still be waiting for the rest of the stream"
        assert first["index"] == 0 and first["video"] == "-" and first["persons"]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    reader.join(timeout=10)
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 0, stderr
    assert "stopped after" in stderr and "Traceback" not in stderr
    rest = []
    while not lines.empty():
        rest.append(json.loads(lines.get()))
    scored = [first, *rest]
    assert [line["index"] for line in scored] == list(range(len(scored)))  # every frame read was scored
    same_results(frames_of(outputs["json"]), scored)
    with av.open(str(outputs["video"])) as container:
        assert len(list(container.decode(video=0))) == len(scored)


# ---------------------------------------------------------------- failing fast and clearly


def test_dead_url_is_one_error_line_fast(tmp_path, checkpoint):
    args = base_args(checkpoint, boxes_file(tmp_path, 5))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    started = time.monotonic()
    line = one_line_error(detect(f"http://127.0.0.1:{port}/live.mp4", *args))
    assert "cannot open the stream" in line and "refused" in line.lower()
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        line = one_line_error(detect(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam", *args, "--timeout", "1"))
    finally:
        silent.close()
    assert "no answer within 1 s" in line and "--timeout" in line
    assert time.monotonic() - started < 15


@pytest.mark.slow
def test_mp4_with_its_index_at_the_end_through_a_pipe_says_how_to_fix_it(tmp_path, checkpoint):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.mp4"  # incompressible frames: the index lies far beyond what the demuxer can look ahead
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(30):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    proc = stclip("-", *base_args(checkpoint, boxes_file(tmp_path, 30)), "--json", tmp_path / "out.json",
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = proc.communicate(path.read_bytes(), timeout=300)
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, stderr
    assert lines[0].startswith("error: standard input: no decodable video frames") and "faststart" in lines[0]
    assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_a_stream_that_breaks_off_keeps_its_results_and_is_reported(tmp_path, checkpoint):
    video = write_video(tmp_path / "clip.mp4", n_frames=30)
    data = remux(video, tmp_path / "fast.mp4", "mp4", {"movflags": "faststart"}).read_bytes()
    proc = stclip("-", *base_args(checkpoint, boxes_file(tmp_path, 30)), "--json", tmp_path / "out.json", "--jsonl",
                  tmp_path / "out.jsonl", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = proc.communicate(data[: len(data) * 2 // 3], timeout=300)  # the producer dies two thirds in
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, stderr
    assert lines[0].startswith("error: standard input: decoding failed at frame") and "the outputs hold" in lines[0]
    kept = frames_of(tmp_path / "out.json")
    assert 0 < len(kept) < 30
    same_results(kept, lines_of((tmp_path / "out.jsonl").read_text()))


@pytest.mark.parametrize(
    "inputs, options, message",
    [
        (["-"], {"single_action": True}, "--single-action votes over a whole video"),
        (["rtsp://cam/live", "clip.mp4"], {}, "rtsp://cam/live is live and never ends"),
        (["-", "-"], {}, "standard input (-) is given twice"),
        (["clip.mp4"], {"live": True}, "--live/--no-live is about streams"),
    ],
)
def test_what_cannot_work_with_streams_is_refused(inputs, options, message):
    with pytest.raises(StclipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_inputs(inputs, **options)


def test_stream_inputs_pass_through_and_files_are_checked(tmp_path, checkpoint):
    names = ("-", "rtsp://a/b", "https://a/b.m3u8", "webcam:0", "/dev/video2", "clip.mp4", "a:b")
    assert [is_stream(t) for t in names] == [True, True, True, True, True, False, False]
    assert check_inputs(["clip.mp4", "http://h/x.mp4"])[0] == Path("clip.mp4")
    line = one_line_error(detect("webcam:7", *base_args(checkpoint, boxes_file(tmp_path, 3))))
    assert "webcam:7" in line and "/dev/video7" in line
    line = one_line_error(detect("-", *base_args(checkpoint, boxes_file(tmp_path, 3)), "--single-action"))
    assert "--single-action" in line


def test_a_password_in_a_url_is_never_shown_nor_a_file_name():
    spec = StreamInput("rtsp://admin:secret@cam1:554/live?x=1")
    assert spec.name == spec.label == "rtsp://admin:***@cam1:554/live?x=1"
    assert stream_stem(spec.text) == "cam1-554-live"


# ---------------------------------------------------------------- where a stream's results go


def test_stream_outputs_are_written_in_place_and_default_to_stdout(tmp_path):
    plan = plan_outputs(["rtsp://cam1/live"], {"jsonl": tmp_path / "a.jsonl", "video": tmp_path / "a.mp4",
                                               "json": tmp_path / "a.json"})[0]
    assert (plan["jsonl"].mode, plan["video"].mode, plan["json"].mode) == ("direct", "direct", "file")
    assert not plan["video"].seekable  # so the video sink writes a fragmented MP4
    file_plan = plan_outputs([tmp_path / "clip.mp4"], {"jsonl": tmp_path / "b.jsonl"})[0]
    assert file_plan["jsonl"].mode == "file"  # a file's JSON Lines are atomic like its other outputs
    assert plan_outputs(["-"], {}) == [{"jsonl": Target(None, "stdout")}]
    assert plan_outputs(["-"], {}, default=None) == [{}]  # --show alone writes nothing
    with pytest.raises(StclipError, match="with several streams, name an output folder"):
        plan_outputs(["-", "rtsp://cam/a"], {})
    folder = plan_outputs(["rtsp://u:p@cam1/live", "-"], {"jsonl": f"{tmp_path}/out/"})
    assert [p["jsonl"].path.name for p in folder] == ["cam1-live.jsonl", "stdin.jsonl"]


def test_stream_outputs_stay_readable_when_a_run_is_cut_off(tmp_path):
    """abort() (a second Ctrl-C, an error) leaves a stream's JSON Lines whole and its video playable."""
    info = VideoInfo("rtsp://cam/live", 96, 64, 10.0, 0, 0)
    targets = plan_outputs(["rtsp://cam/live"], {"jsonl": tmp_path / "a.jsonl", "video": tmp_path / "a.mp4"})[0]
    lines, video = JsonLinesSink(targets["jsonl"], clock=lambda: 5.0), VideoSink(targets["video"])
    det = one_person()
    for sink in (lines, video):
        sink.open(info, ACTIONS.split(","), MODEL)
    for i in range(12):
        result = FrameResult(i, i / 10, det, keyframe=i % 2 == 0, image=synthetic_frame(i), arrival=4.5)
        lines.write(result)
        video.write(result)
    assert len(lines_of((tmp_path / "a.jsonl").read_text())) == 6  # flushed as written
    lines.abort()
    video.abort()
    written = lines_of((tmp_path / "a.jsonl").read_text())
    assert [line["index"] for line in written] == [0, 2, 4, 6, 8, 10]
    assert [line["stride"] for line in written] == [None, 2, 2, 2, 2, 2] and written[0]["latency_s"] == 0.5
    with av.open(str(tmp_path / "a.mp4")) as container:
        assert len(list(container.decode(video=0))) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "a.mp4"]  # no temporary files


# ---------------------------------------------------------------- keeping up with a live source


def simulate(key_cost, frames: int = 300, fps: float = 10.0, frame_cost: float = 0.01, stride: int = 1,
             max_stride: int = 10, delivered=None) -> tuple[list[int], list[float], list[str]]:
    """A live source at ``fps`` and a scorer taking ``key_cost(i)`` seconds per keyframe and ``frame_cost`` per frame,
    on a fake clock. Frame i is delivered at ``delivered(i)`` (default i / fps: a steady camera); stclip waits for it
    when it is early and finds it waiting when busy. Returns the strides chosen, each frame's delay behind its
    delivery (the backlog) and the warnings."""
    delivered = delivered or (lambda i: i / fps)
    warnings: list[str] = []
    schedule = AdaptiveStride(stride, max_stride, warn=warnings.append)
    clock, strides, backlog = 0.0, [], []
    for i in range(frames):
        asked, clock = clock, max(clock, delivered(i))
        schedule.waited(clock - asked)
        backlog.append(clock - delivered(i))
        if schedule.is_key(Frame(i, i / fps, np.zeros(1), arrival=clock)):
            strides.append(schedule.step(i))
            clock += key_cost(i)
        clock += frame_cost
    return strides, backlog, warnings


def test_a_scorer_that_keeps_up_scores_every_frame_silently():
    strides, backlog, warnings = simulate(lambda i: 0.05)
    assert strides == [1] * 300 and warnings == [] and max(backlog) < 0.1


def test_a_slow_scorer_thins_out_keyframes_says_so_once_and_keeps_up():
    strides, backlog, warnings = simulate(lambda i: 0.3)  # 3x slower than the source at stride 1
    assert max(strides) >= 4 and len(warnings) == 1
    assert "scoring cannot keep up with the live source" in warnings[0]
    assert "1 frame in 2 instead of 1 in 1" in warnings[0]
    assert max(backlog[150:]) < 3.0 and backlog[-1] < 1.0  # it does not fall further and further behind


def test_the_stride_comes_back_when_scoring_is_fast_again():
    strides, backlog, warnings = simulate(lambda i: 0.3 if i < 100 else 0.02, frames=400)
    assert max(strides) > 1 and strides[-20:] == [1] * 20 and backlog[-1] < 0.1 and len(warnings) == 1


def test_frames_that_come_in_bursts_are_not_mistaken_for_falling_behind():
    """HLS delivers 4 s segments at once: the first frames of a segment look 4 s late, yet scoring keeps up."""
    strides, backlog, warnings = simulate(lambda i: 0.05, frames=400, delivered=lambda i: (i // 40 + 1) * 4.0)
    assert set(strides) == {1} and warnings == [] and max(backlog) < 4.5


def test_a_source_faster_than_even_the_largest_stride_is_reported():
    strides, backlog, warnings = simulate(lambda i: 0.3, frame_cost=0.15, max_stride=4)  # decoding alone is too slow
    assert max(strides) == 4 and len(warnings) == 2 and "the fewest stclip scores" in warnings[1]


def test_a_source_whose_clock_restarts_is_judged_afresh():
    schedule = AdaptiveStride(1, 8, period_s=1.0)
    times = [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0]  # the source restarts at frame 3, 7 s later
    arrivals = [0.0, 0.5, 1.0, 8.0, 8.5, 9.0, 9.5]  # half a second of work per second of video throughout
    for i, (t, arrival) in enumerate(zip(times, arrivals)):
        assert schedule.is_key(Frame(i, t, np.zeros(1), arrival=arrival))
        schedule.step(i)
    assert schedule.load == pytest.approx(0.5) and schedule.stride == 1  # the 7 s gap is not taken for work


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeLiveSource:
    """Frames of a live source at 10 fps on a fake clock: frame i is there at i / 10 s, or when we come for it."""

    live = True

    def __init__(self, clock: FakeClock, frames: int) -> None:
        self.clock, self.frames = clock, frames
        self.info = VideoInfo("rtsp://cam/live", 96, 64, 10.0, 0, 0)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frames):
            asked = self.clock.now
            self.clock.now = max(self.clock.now, i / 10) + 0.005  # waits for the frame, then decodes it
            yield Frame(i, i / 10, synthetic_frame(i), arrival=self.clock.now, waited=self.clock.now - asked)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeLiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_predictor_thins_out_a_live_source_when_the_scorer_is_slow(tmp_path, monkeypatch, checkpoint):
    """End to end through the predictor: a scorer taking 0.3 s (fake clock) per keyframe of a 10 fps live source."""
    clock, warnings = FakeClock(), []
    monkeypatch.setattr(predictor_module, "open_source", lambda path, fps=None: FakeLiveSource(clock, 120))
    scorer = Scorer(build_model(load_card("tiny-test")), ACTIONS.split(","))
    batches = []
    real_score = scorer.score

    def slow_score(images, requests):
        batches.append(len(requests))
        clock.now += 0.3
        return real_score(images, requests)

    scorer.score = slow_score
    lines, meter = JsonLinesSink(tmp_path / "live.jsonl", clock=clock), PaceMeter(clock=clock)
    Predictor(BoxesFile(boxes_file(tmp_path, 120)), scorer, DetectOptions(batch_size=8)).run(
        StreamInput("rtsp://cam/live", on_warning=warnings.append), [lines, meter], MODEL)
    scored = lines_of((tmp_path / "live.jsonl").read_text())
    assert set(batches) == {1}  # a live source scores each keyframe as soon as its window is complete
    assert len(warnings) == 1 and max(line["stride"] or 1 for line in scored) > 1
    assert meter.frames == 120 and meter.scored == len(scored) < 120
    assert "stride adapted between 1 and" in meter.summary(1) and "latency" in meter.summary(1)


# ---------------------------------------------------------------- --show


def test_show_without_a_display_is_one_error_line(tmp_path, checkpoint, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = write_video(tmp_path / "clip.mp4", n_frames=3)
    line = one_line_error(detect(video, *base_args(checkpoint, boxes_file(tmp_path, 3)), "--show"))
    assert "--show needs a display" in line and "--video" in line


def test_show_window_draws_frames_and_q_stops(monkeypatch):
    shown, calls = [], []
    monkeypatch.setattr(display.cv2, "namedWindow", lambda *a: calls.append("open"))
    monkeypatch.setattr(display.cv2, "resizeWindow", lambda *a: None)
    monkeypatch.setattr(display.cv2, "imshow", lambda title, image: shown.append(image.shape))
    monkeypatch.setattr(display.cv2, "waitKey", lambda delay: ord("q") if len(shown) == 3 else -1)
    monkeypatch.setattr(display.cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(display.cv2, "destroyWindow", lambda *a: calls.append("close"))
    stop = threading.Event()
    sink = display.WindowSink("cam", on_quit=stop.set)
    sink.open(VideoInfo("-", 96, 64, 10.0, 0, 0), ACTIONS.split(","), MODEL)
    det = one_person()
    for i in range(5):
        sink.write(FrameResult(i, i / 10, det, image=synthetic_frame(i)))
    sink.close()
    assert shown == [(64, 96, 3)] * 3 and stop.is_set() and calls == ["open", "close"]


@pytest.mark.skipif(sys.platform != "linux" or os.path.exists("/dev/video99"), reason="a v4l2 device that is absent")
def test_a_webcam_device_that_is_not_there_is_named():
    with pytest.raises(StclipError, match=r"/dev/video99: no such webcam"):
        probe(StreamInput("/dev/video99"))


def test_emoji_codes_in_an_input_name_stay_text(tmp_path):
    """rich turned ":abc:" in "webcam:abc: ..." into an emoji: the error no longer named what the user typed."""
    line = one_line_error(detect("webcam:abc", "--actions", "a"))
    assert "webcam:abc" in line
