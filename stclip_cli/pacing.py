"""Keeping up with a live source: a keyframe schedule whose stride grows when scoring falls behind the source's own
pace and comes back once it keeps up, and the latency and stride that the end-of-run summary reports."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .outputs import FrameResult, ModelInfo
from .video import Frame, VideoInfo

DEFAULT_BUDGET_S = 1.0  # how far behind the source (seconds) scoring may fall before fewer frames are scored
LATENCIES_KEPT = 100_000  # the summary's latency percentiles are over the last this-many scored frames


class AdaptiveStride:
    """The ``KeyframeSchedule`` (windows.py) of a live source, which does not wait for us.

    A frame's *lag* is how much later it arrives (``Frame.arrival``, or ``clock()``) than the source's own pace, as
    its timestamps give it, compared with the earliest pace seen: frames that arrive later and later are a backlog.
    When the lag exceeds ``budget_s`` and has not shrunk since the last change, the stride doubles (at most
    ``max_stride``); once the lag is under a quarter of the budget, it comes back down by a quarter, never under the
    asked ``stride``. Changes are at least ``budget_s`` of video time apart, the time a change takes to show.
    ``warn`` gets one line when scoring first falls behind, and one if even ``max_stride`` cannot keep up.
    """

    def __init__(self, stride: int, max_stride: int, budget_s: float = DEFAULT_BUDGET_S,
                 warn: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.base = self.stride = stride
        self.max_stride = max(stride, max_stride)
        self.budget = budget_s
        self.warn = warn
        self.clock = clock
        self.lag = 0.0
        self._next = 0
        self._steps: dict[int, int] = {}
        self._pace: float | None = None  # smallest (arrival - frame time) seen: the source's pace
        self._last_time: float | None = None
        self._changed_at: float | None = None  # video time of the last change
        self._lag_at_change = 0.0
        self._warned: set[str] = set()

    def is_key(self, frame: Frame) -> bool:
        """Measure the frame's lag; if it is the next keyframe, choose the stride to the one after it."""
        self._measure(frame)
        if frame.index != self._next:
            return False
        self._adapt(frame.time)
        self._steps[frame.index] = self.stride
        self._next = frame.index + self.stride
        return True

    def step(self, key: int) -> int:
        """The stride chosen when keyframe ``key`` arrived."""
        return self._steps.pop(key)

    def _measure(self, frame: Frame) -> None:
        arrival = frame.arrival if frame.arrival is not None else self.clock()
        if self._last_time is not None and frame.time < self._last_time:
            self._pace = self._changed_at = None  # the source's clock went back (it restarted): measure afresh
        self._last_time = frame.time
        offset = arrival - frame.time
        if self._pace is None or offset < self._pace:
            self._pace = offset
        self.lag = offset - self._pace

    def _adapt(self, now: float) -> None:
        if self._changed_at is not None and now - self._changed_at < self.budget:
            return
        if self.lag > self.budget and self.lag > self._lag_at_change:
            if self.stride >= self.max_stride:
                self._warn_once("max", f"still {self.lag:.1f} s behind the live source scoring 1 frame in "
                                       f"{self.stride}, the fewest stclip scores; decoding alone may be slower "
                                       "than the source")
                return
            new = min(self.stride * 2, self.max_stride)
            self._warn_once("behind", f"scoring falls behind the live source ({self.lag:.1f} s): scoring 1 frame in "
                                      f"{new} instead of 1 in {self.base} while it does (the summary and each JSON "
                                      "line give the stride)")
        elif self.lag < self.budget / 4 and self.stride > self.base:
            new = max(self.base, self.stride * 3 // 4)
        else:
            return
        self.stride, self._changed_at, self._lag_at_change = new, now, self.lag

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            if self.warn is not None:
                self.warn(text)


class PaceMeter:
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
