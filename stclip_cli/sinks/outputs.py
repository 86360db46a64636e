"""Result sinks (JSON, JSON Lines, AVA-style CSV, annotated video), each writing through a ``Destination``
(destinations.py): a temporary file renamed into place, a stream's file written in place, a device or FIFO written
directly, or standard output; and a live source's pace meter, which writes nothing."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import cv2
import numpy as np
import supervision as sv

from stclip_cli.sinks.destinations import STDOUT, VIDEO_CONTAINERS, Destination, FileSink, Target, classify
from stclip_cli.errors import StclipError
from stclip_cli.records import SCORES, FrameResult, ModelInfo, Sink, VideoInfo
from stclip_cli.sinks.render import FrameRenderer
from stclip_cli.sinks.result_format import action_scores, frame_record, header, track_id
from stclip_cli.sinks.timeline import TimelineSink

LATENCIES_KEPT = 100_000  # the pace meter's latency percentiles are over the last this-many scored frames


class _TextSink(FileSink):
    """A sink streaming text to its destination; ``trailer`` is written just before it is put in place."""

    trailer = ""

    def __init__(self, target: Target | str | Path) -> None:
        super().__init__(target)
        self._file: IO[str] | None = None

    def _emit(self, text: str) -> None:
        assert self._file is not None, f"{type(self).__name__}.open() first"
        with self.destination.guard():
            self._file.write(text)

    def close(self) -> None:
        """Finish the file and put it in place."""
        if self._file is not None:
            self._emit(self.trailer)
            self._file = None
        self.destination.commit()

    def abort(self) -> None:
        """Drop the temporary file; nothing appears under the final name."""
        self._file = None
        self.destination.discard()


class JsonSink(_TextSink):
    """The JSON of cli.md, one object per video; frames are streamed to disk as they come (keyframes only)."""

    trailer = "\n]}\n"

    def __init__(self, path: str | Path, video: str | None = None) -> None:
        """``video``: what the JSON calls the video, when not the path it is decoded from (a remote video's URI)."""
        super().__init__(path)
        self.video = video
        self._count = 0

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Start the temp file and write the per-video header (``model``: a ModelInfo or a dict of its fields)."""
        self.actions = list(actions)
        fields = header(info, self.actions, model, self.video)
        self._file = self.destination.open(text=True)
        self._emit(json.dumps(fields, ensure_ascii=False)[:-1] + ', "frames": [\n')
        self._count = 0

    def write(self, result: FrameResult) -> None:
        """Append one scored frame; carried (non-key) frames are not part of the JSON."""
        if not result.keyframe:
            return
        record = frame_record(result.index, result.time, result.detections, self.actions)
        self._emit((",\n" if self._count else "") + json.dumps(record, ensure_ascii=False))
        self._count += 1


class JsonLinesSink(_TextSink):
    """JSON Lines: one object per scored frame, written and flushed the moment the frame is scored, so results leave
    as they are produced (a stream has no end to wait for):
    ``{"video", "index", "time", "persons", "latency_s", "stride"}``. ``latency_s`` is the time from the frame's
    arrival from the decoder to its line; ``stride`` the frames since the previous scored frame (null for the
    first): more than ``--stride`` when a live source is thinned out to keep up (pacing.py)."""

    def __init__(self, target: Target | str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(target)
        self.clock = clock
        self._last_key: int | None = None

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any] | None = None) -> None:
        """Open the output; ``model`` is accepted for a uniform sink interface (the lines carry results only)."""
        self.video = str(info.path)
        self.actions = list(actions)
        self._file = self.destination.open(text=True)
        self._last_key = None

    def write(self, result: FrameResult) -> None:
        """Write and flush one scored frame's line; carried (non-key) frames have none."""
        if not result.keyframe:
            return
        latency = None if result.arrival is None else round(self.clock() - result.arrival, 4)
        stride = None if self._last_key is None else int(result.index) - self._last_key
        self._last_key = int(result.index)
        record = {"video": self.video, **frame_record(result.index, result.time, result.detections, self.actions),
                  "latency_s": latency, "stride": stride}
        self._emit(json.dumps(record, ensure_ascii=False) + "\n")
        assert self._file is not None
        with self.destination.guard():
            self._file.flush()


CSV_HEADER = ("video_id", "time", "x1", "y1", "x2", "y2", "action", "score")


class CsvSink(_TextSink):
    """AVA-style prediction rows under a header row (``CSV_HEADER``): video_id, time (s), x1, y1, x2, y2 (in [0, 1]),
    action, score; `stclip eval --pred` reads them back.

    One row per person per action, keyframes only. The action column holds the action's name, not AVA's
    numeric id, because stclip's action lists are free text. video_id is the input's file name stem.
    """

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | None = None) -> None:
        """Start the temp file; ``model`` is accepted for a uniform sink interface and not written."""
        self.info = info
        self.actions = list(actions)
        self._file = self.destination.open(text=True)
        self._rows = io.StringIO()
        self._writer = csv.writer(self._rows)
        self._writer.writerow(CSV_HEADER)
        self._emit(self._rows.getvalue())
        self._rows.seek(0)
        self._rows.truncate()

    def write(self, result: FrameResult) -> None:
        """Write one row per person and action for a keyframe."""
        if not result.keyframe:
            return
        det = result.detections
        scores = action_scores(det, len(self.actions))
        scale = np.array([self.info.width, self.info.height] * 2, dtype=np.float64)
        video_id = Path(self.info.path).stem
        for i in range(len(det)):
            box = np.clip(det.xyxy[i] / scale, 0.0, 1.0)
            coords = [f"{v:.3f}" for v in box]
            for name, p in zip(self.actions, scores[i]):
                self._writer.writerow([video_id, f"{result.time:.3f}", *coords, name, f"{float(p):.5f}"])
        self._emit(self._rows.getvalue())
        self._rows.seek(0)
        self._rows.truncate()


def video_codec() -> str:
    """The encoder the video sink uses: libx264 when this FFmpeg build has it, else mpeg4."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


# MPEG-4 Part 2 stores the time base's denominator in 16 bits; 1/60000 s is exact for 24, 25, 30, 50, 60 and
# 30000/1001 fps and for millisecond times, and serves sources without a time base (frame folders) too.
DEFAULT_TIME_BASE = Fraction(1, 60000)
MPEG4_MAX_TIME_BASE_DEN = 65535


def video_time_base(info: VideoInfo, codec: str) -> Fraction:
    """The output's time base: the source's own (so every frame time is kept exactly) when the codec can store
    it, else ``DEFAULT_TIME_BASE``."""
    source = info.time_base
    if source is None or source <= 0 or (codec == "mpeg4" and source.denominator > MPEG4_MAX_TIME_BASE_DEN):
        return DEFAULT_TIME_BASE
    return Fraction(source)


def person_label(detections: sv.Detections, i: int, actions: list[str], top_k: int = 2) -> str:
    """The text drawn above a box: "#track" (when tracked) then the top-k "action 0.71" lines."""
    lines = []
    track = track_id(detections, i)
    if track is not None:
        lines.append(f"#{track}")
    scores = detections.data.get(SCORES)
    if scores is not None and len(actions):
        row = np.asarray(scores[i], dtype=np.float32)
        for j in np.argsort(-row, kind="stable")[:top_k]:
            lines.append(f"{actions[j]} {row[j]:.2f}")
    return "\n".join(lines)


class VideoSink(FileSink):
    """An annotated copy of the input (every frame, at the source's own timestamps) with boxes and top-k labels.

    The stream is H.264 (or MPEG-4 Part 2 without libx264) in yuv420p, which every common player decodes. 4:2:0
    needs even sizes, so an odd-sized input gets one extra column and/or row at its right/bottom edge, a copy of
    the edge pixels: the picture, and boxes in its pixels, are unchanged, and no source pixel is lost.
    """

    needs_images = True

    def __init__(self, target: Target | str | Path, top_k: int = 2) -> None:
        super().__init__(target)
        self.top_k = top_k
        self._container: Any = None

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | None = None) -> None:
        """Start encoding into the temp file; ``model`` is accepted for a uniform sink interface."""
        self.actions = list(actions)
        self._container = self._open_container()
        codec = video_codec()
        self._time_base = video_time_base(info, codec)
        self._stream = self._container.add_stream(codec, rate=Fraction(info.fps).limit_denominator(1001))
        self._pad = (info.height % 2, info.width % 2)
        self._stream.width, self._stream.height = info.width + self._pad[1], info.height + self._pad[0]
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = self._time_base
        self._stream.time_base = self._time_base
        if codec == "libx264":
            self._stream.options = {"crf": "20", "preset": "veryfast"}
        self._renderer = FrameRenderer(info.width, info.height)
        self._last_pts: int | None = None

    def write(self, result: FrameResult) -> None:
        """Draw the result's boxes and labels on its ``image`` and encode it at its own time; every frame, key or
        carried. Times that would round to an earlier or equal tick move one tick on (pts must increase)."""
        assert self._container is not None, "VideoSink.open() first"
        if result.image is None:
            raise ValueError("VideoSink needs FrameResult.image")
        with self._guard():
            self._encode(result)

    def _open_container(self) -> Any:
        """A temporary file for a regular target; a stream's file, a device or a FIFO gets a fragmented MP4, which
        needs no seeking and is playable up to its last fragment (at most a second long) whenever it is read."""
        with self._guard():
            if self.destination.target.seekable:
                return av.open(str(self.destination.temp_path()), "w")
            suffix = (self.path.suffix.lower() if self.path else "") or ".mp4"
            container_format = VIDEO_CONTAINERS.get(suffix, "mp4")
            options = {} if container_format == "matroska" else {"movflags": "frag_keyframe+empty_moov",
                                                                  "frag_duration": "1000000"}
            return av.open(self.destination.open(text=False), "w", format=container_format, options=options)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """FFmpeg's write errors (disk full, broken pipe) as one line naming the output."""
        with self.destination.guard():
            try:
                yield
            except av.FFmpegError as err:
                raise StclipError(f"cannot write {self.destination.name}: {err}") from None

    def _encode(self, result: FrameResult) -> None:
        assert result.image is not None
        det = result.detections
        labels = [person_label(det, i, self.actions, self.top_k) for i in range(len(det))]
        image = self._renderer.draw(result.image, det, labels)
        if any(self._pad):
            image = cv2.copyMakeBorder(image, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        pts = round(Fraction(float(result.time)) / self._time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        video_frame.pts, video_frame.time_base = pts, self._time_base
        self._last_pts = pts
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, close the file and put it in place."""
        if self._container is not None:
            with self._guard():
                for packet in self._stream.encode():
                    self._container.mux(packet)
                container, self._container = self._container, None
                container.close()
        self.destination.commit()

    def abort(self) -> None:
        """Stop encoding and drop the temporary file."""
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass  # already failing; the temporary file goes next
        self.destination.discard()


class PaceMeter(Sink):
    """A sink that writes nothing and measures, for the summary, each scored frame's latency (its arrival from the
    decoder to its result) and the stride (frames since the previous scored frame)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._reset()

    def _reset(self) -> None:
        self.latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self.frames = self.scored = 0
        self.strides: set[int] = set()
        self._last_key: int | None = None

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Start measuring one video."""
        self._reset()

    def write(self, result: FrameResult) -> None:
        """Count every frame; time each scored one."""
        self.frames += 1
        if not result.keyframe:
            return
        self.scored += 1
        if result.arrival is not None:
            self.latencies.append(self.clock() - result.arrival)
        if self._last_key is not None:
            self.strides.add(result.index - self._last_key)
        self._last_key = result.index

    def close(self) -> None:
        """Nothing to finish."""

    def abort(self) -> None:
        """Nothing was written."""

    def summary(self, stride: int) -> str:
        """One line: latency median and p95, frames scored, and the stride when it adapted (``stride``: as asked)."""
        if not self.scored:
            return f"no frame scored ({self.frames} read)"
        text = f"scored {self.scored} of {self.frames} frames"
        if self.latencies:
            median, p95 = np.percentile(np.asarray(self.latencies), [50, 95])
            text = f"latency {median:.2f} s median, {p95:.2f} s p95 (frame decoded -> result written); " + text
        if self.strides - {stride}:
            text += (f"; stride adapted between {min(self.strides)} and {max(self.strides)} to keep up "
                     f"(asked: {stride})")
        return text


def plan_sinks(plan: Mapping[str, Target], top_k: int = 2, video: str | None = None) -> list[FileSink]:
    """The sinks of one video from its planned targets (destinations.plan_outputs): json, jsonl, csv, video, plot.

    ``video``: what the JSON calls the video when not the path it is decoded from (see ``JsonSink``).
    """
    makers = {"json": lambda target: JsonSink(target, video), "jsonl": JsonLinesSink, "csv": CsvSink,
              "video": lambda target: VideoSink(target, top_k), "plot": TimelineSink}
    return [makers[kind](target) for kind, target in plan.items()]


def atomic_text(path: str | Path, text: str) -> Path:
    """Write a small text file (e.g. an evaluation JSON) safely: temporary file beside it, then rename (or straight
    to a device, FIFO or ``-``, standard output)."""
    target = Target(None, "stdout") if str(path) == STDOUT else classify(Path(path), "output")
    destination = Destination(target)
    try:
        with destination.guard():
            destination.open(text=True).write(text)
        destination.commit()
    except BaseException:
        destination.discard()
        raise
    return Path(path)
