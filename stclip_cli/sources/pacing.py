"""Keeping up with a live source: a keyframe schedule whose stride grows when scoring cannot keep up with the
source's rate and comes back once it can (the latency and stride the summary reports: outputs.PaceMeter)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from stclip_cli.records import Frame

PERIOD_S = 1.0  # seconds (of video, or of wall time when behind) between two judgements of the load
HIGH_LOAD = 0.75  # busier than this share of real time: fewer keyframes (the margin drains a backlog)
LOW_LOAD = 0.4  # idler than this: more keyframes again
MAX_KEYFRAME_GAP_S = 1.0  # a live source kept up with still gets at least one scored frame per second of video


class AdaptiveStride:
    """The ``KeyframeSchedule`` (windows.py) of a live source, which does not wait for us.

    Its *load* is the share of real time stclip spends working rather than waiting for the source: the wall time
    between two keyframes (their ``Frame.arrival``, or ``clock()``) less the time spent waiting for frames in between
    (each ``Frame.waited``, as the source reports it, or ``waited()``), per second of video they span. A load above 1 falls further and further
    behind, whatever the source's delivery: a steady camera, or HLS segments that come in bursts and look late. After
    each ``period_s`` of video or of wall time, whichever comes first (the first period, the model's warm-up, is not
    judged), a load above ``HIGH_LOAD`` doubles the stride (at most ``max_stride``) and one under ``LOW_LOAD`` brings
    it down by a quarter, never under the asked ``stride``. ``warn`` gets one line when scoring first falls behind,
    and one if even ``max_stride`` cannot keep up.
    """

    first = 0

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
        """Count time spent waiting for the source's next frame (``is_key`` counts each frame's ``waited``)."""
        self._waited += seconds

    def is_key(self, frame: Frame) -> bool:
        """Whether ``frame`` is the next keyframe; if so, judge the load and choose the stride to the one after."""
        self.waited(frame.waited)  # waiting for the source is not falling behind
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

    def near(self, index: int, reach: int) -> bool:
        """Always: the stride to the next keyframe is only chosen when the previous one arrives."""
        return True

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


def live_schedule(stride: int, fps: float, warn: Callable[[str], None] | None = None) -> AdaptiveStride:
    """The schedule of a live source at ``fps``: every ``stride``-th frame while scoring keeps up, thinned out to at
    least one scored frame per ``MAX_KEYFRAME_GAP_S`` of video while it cannot."""
    return AdaptiveStride(stride, max(stride, math.ceil(fps * MAX_KEYFRAME_GAP_S)), warn=warn)
