"""Keeping up with a live source: a keyframe schedule whose stride grows when scoring cannot keep up with the
source's rate and comes back once it can, and the latency and stride that the end-of-run summary reports."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .records import Frame, FrameResult, ModelInfo, Sink, VideoInfo

PERIOD_S = 1.0  # seconds (of video, or of wall time when behind) between two judgements of the load
HIGH_LOAD = 0.75  # busier than this share of real time: fewer keyframes (the margin drains a backlog)
LOW_LOAD = 0.4  # idler than this: more keyframes again
LATENCIES_KEPT = 100_000  # the summary's latency percentiles are over the last this-many scored frames


class AdaptiveStride:
    """The ``KeyframeSchedule`` (windows.py) of a live source, which does not wait for us.

    Its *load* is the share of real time stclip spends working rather than waiting for the source: the wall time
    between two keyframes (their ``Frame.arrival``, or ``clock()``) less the time spent waiting for frames in between
    (``waited``, which the source reports), per second of video they span. A load above 1 falls further and further
    behind, whatever the source's delivery: a steady camera, or HLS segments that come in bursts and look late. After
    each ``period_s`` of video or of wall time, whichever comes first (the first period, the model's warm-up, is not
    judged), a load above ``HIGH_LOAD`` doubles the stride (at most ``max_stride``) and one under ``LOW_LOAD`` brings
    it down by a quarter, never under the asked ``stride``. ``warn`` gets one line when scoring first falls behind,
    and one if even ``max_stride`` cannot keep up.
    """

    def __init__(self, stride: int, max_stride: int, period_s: float = PERIOD_S,
                 warn: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.base = self.stride = stride
        self.max_stride = max(stride, max_stride)
        self.period = period_s
        self.warn = warn
        self.clock = clock
        self.load: float | None = None
        self._next = 0
        self._steps: dict[int, int] = {}
        self._start: tuple[float, float] | None = None  # (wall time, video time) where the current period began
        self._waited = 0.0
        self._periods = 0
        self._warned: set[str] = set()

    def waited(self, seconds: float) -> None:
        """Count time spent waiting for the source's next frame (the source calls this as it hands each over)."""
        self._waited += seconds

    def is_key(self, frame: Frame) -> bool:
        """Whether ``frame`` is the next keyframe; if so, judge the load and choose the stride to the one after."""
        now = frame.arrival if frame.arrival is not None else self.clock()
        if self._start is None or frame.time < self._start[1]:  # the first frame, or the source's clock went back
            self._start, self._waited = (now, frame.time), 0.0
        if frame.index != self._next:
            return False
        self._adapt(now, frame.time)
        self._steps[frame.index] = self.stride
        self._next = frame.index + self.stride
        return True

    def step(self, key: int) -> int:
        """The stride chosen when keyframe ``key`` arrived."""
        return self._steps.pop(key)

    def _adapt(self, now: float, video_time: float) -> None:
        assert self._start is not None
        wall, start = self._start
        if video_time <= start or (video_time - start < self.period and now - wall < self.period):
            return  # judged every period of video or of wall time, whichever comes first
        self.load = max(0.0, now - wall - self._waited) / (video_time - start)
        self._start, self._waited = (now, video_time), 0.0
        self._periods += 1
        if self._periods == 1:
            return  # the first period includes the model's warm-up
        if self.load > HIGH_LOAD:
            if self.stride >= self.max_stride:
                self._warn_once("max", f"scoring 1 frame in {self.stride}, the fewest stclip scores, still takes "
                                       f"{self.load:.1f} s per second of the live source: decoding alone may be "
                                       "slower than the source")
                return
            new = min(self.stride * 2, self.max_stride)
            self._warn_once("behind", f"scoring cannot keep up with the live source ({self.load:.1f} s of work per "
                                      f"second of video): scoring 1 frame in {new} instead of 1 in {self.base} while "
                                      "it cannot (the summary and each JSON line give the stride)")
        elif self.load < LOW_LOAD and self.stride > self.base:
            new = max(self.base, self.stride * 3 // 4)
        else:
            return
        self.stride = new

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            if self.warn is not None:
                self.warn(text)


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
