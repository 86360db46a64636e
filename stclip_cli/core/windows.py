"""Keyframe selection and T-frame windows (method.md section 2)."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from stclip_cli.records import Frame


def window_indices(keyframe: int, num_frames: int, length: int, step: int = 1) -> list[int]:
    """Indices of the ``length`` frames centred on ``keyframe``, ``step`` frames apart.

    With ``step`` 1 the window shifts to stay inside ``[0, num_frames)``: frame 0 gets frames 0..T-1, the last frame
    the last T frames, and videos shorter than T use every frame. With a larger step (AVA's sparse windows) frames
    past either end repeat the first or last frame, as the reference samples them.
    """
    if not 0 <= keyframe < num_frames:
        raise ValueError(f"keyframe {keyframe} outside a video of {num_frames} frames")
    if step != 1:
        return [min(max(keyframe + (k - length // 2) * step, 0), num_frames - 1) for k in range(length)]
    if num_frames <= length:
        return list(range(num_frames))
    start = min(max(keyframe - length // 2, 0), num_frames - length)
    return list(range(start, start + length))


def window_reach(length: int, step: int = 1) -> int:
    """How far from its keyframe a window's frame can be: T - 1 (a window shifted at a border), or the half-window of
    a sparse one (frames past either end repeat the first or last frame, which are no further)."""
    return max(length - 1, (length // 2) * step)


def keyframe_indices(num_frames: int, stride: int) -> list[int]:
    """Every ``stride``-th frame starting at 0: the frames that get scored."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return list(range(0, num_frames, stride))


class KeyframeSchedule(Protocol):
    """Which frames are keyframes (scored). ``is_key`` is asked once per frame, in stream order, as the frame arrives;
    ``step(key)``, asked after keyframe ``key`` arrived, is the distance to the next keyframe (the frames in between
    carry its results). ``first`` is the first keyframe (0 for a stride; None: no frame is scored)."""

    first: int | None

    def is_key(self, frame: Frame) -> bool: ...

    def step(self, key: int) -> int: ...

    def near(self, index: int, reach: int) -> bool:
        """Whether a keyframe may lie within ``reach`` frames of frame ``index`` (True when not known ahead)."""
        ...


class EveryNth:
    """The fixed schedule: every ``stride``-th frame from frame 0."""

    first = 0

    def __init__(self, stride: int) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.stride = stride

    def is_key(self, frame: Frame) -> bool:
        """Whether ``frame`` is scored."""
        return frame.index % self.stride == 0

    def step(self, key: int) -> int:
        """Frames from keyframe ``key`` to the next one."""
        return self.stride

    def near(self, index: int, reach: int) -> bool:
        """Whether a multiple of the stride lies within ``reach`` frames of ``index``."""
        offset = index % self.stride
        return min(offset, self.stride - offset) <= reach


class AtFrames:
    """A given set of keyframes (a benchmark's scored frames), in index order; ``first`` is None when it is empty."""

    def __init__(self, keyframes: Iterable[int]) -> None:
        self.keys = sorted(set(keyframes))
        self._set = set(self.keys)
        self.first = self.keys[0] if self.keys else None

    def is_key(self, frame: Frame) -> bool:
        """Whether ``frame`` is one of the keyframes."""
        return frame.index in self._set

    def step(self, key: int) -> int:
        """Frames from keyframe ``key`` to the next one (past the end of any video after the last)."""
        later = bisect.bisect_right(self.keys, key)
        return self.keys[later] - key if later < len(self.keys) else 1 << 40

    def near(self, index: int, reach: int) -> bool:
        """Whether one of the keyframes lies within ``reach`` frames of ``index``."""
        at = bisect.bisect_left(self.keys, index - reach)
        return at < len(self.keys) and self.keys[at] <= index + reach


@dataclass(frozen=True)
class Window:
    """One keyframe's T-frame window plus the frames to render with its results.

    ``frames`` are the window's frames in ``indices`` order; ``following`` are the non-key frames after the
    keyframe and before the next keyframe, which get the keyframe's boxes and labels in the video output.
    """

    keyframe: int
    indices: list[int]
    frames: list[Frame]
    following: list[Frame]

    @property
    def key(self) -> Frame:
        """The keyframe's own Frame."""
        return self.frames[self.indices.index(self.keyframe)]

    @property
    def render_frames(self) -> list[Frame]:
        """The keyframe followed by ``following``: every frame up to the next keyframe, in order."""
        return [self.key, *self.following]


def iter_windows(frames: Iterable[Frame], length: int, stride: int | KeyframeSchedule, step: int = 1) -> Iterator[Window]:
    """Yield a ``Window`` per keyframe (every ``stride``-th frame, or as a ``KeyframeSchedule`` decides) from a frame
    stream, in stream order.

    Windows match ``window_indices`` exactly (border-shifted at both ends). The end of the stream is only
    known when it arrives, so the builder reads ahead until a window can no longer change; it holds at most
    about ``length + stride`` frames, whatever the video's length. Frames must come with indices 0, 1, 2, ...
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    schedule = EveryNth(stride) if isinstance(stride, int) else stride
    half = (length // 2) * step
    buffer: deque[Frame] = deque()
    seen = 0
    if schedule.first is None:
        return
    next_key = schedule.first
    stream = iter(frames)
    ended = False

    def read_until(count: int) -> None:
        nonlocal seen, ended
        while not ended and seen < count:
            frame = next(stream, None)
            if frame is None:
                ended = True
                return
            if frame.index != seen:
                raise ValueError(f"frames out of order: expected index {seen}, got {frame.index}")
            buffer.append(frame)
            seen += 1

    while True:
        read_until(next_key + 1)  # the keyframe itself: its step is decided when it arrives
        if next_key >= seen:
            return
        gap = schedule.step(next_key)
        read_until(max(next_key + half + 1, next_key + gap, length + 1))
        indices = window_indices(next_key, seen, length, step)
        first = buffer[0].index
        yield Window(
            keyframe=next_key,
            indices=indices,
            frames=[buffer[i - first] for i in indices],
            following=[buffer[i - first] for i in range(next_key + 1, min(next_key + gap, seen))],
        )
        next_key += gap
        keep_from = min(next_key - half, seen - length) if step == 1 else next_key - half
        while buffer and buffer[0].index < keep_from:
            buffer.popleft()
