"""Keyframe selection and T-frame windows (method.md section 2)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from stclip_cli.records import Frame


def window_indices(keyframe: int, num_frames: int, length: int) -> list[int]:
    """Indices of the ``length`` frames centred on ``keyframe``, shifted to stay inside ``[0, num_frames)``.

    Frame 0 gets frames 0..T-1, the last frame gets the last T frames; videos shorter than T use every frame.
    """
    if not 0 <= keyframe < num_frames:
        raise ValueError(f"keyframe {keyframe} outside a video of {num_frames} frames")
    if num_frames <= length:
        return list(range(num_frames))
    start = min(max(keyframe - length // 2, 0), num_frames - length)
    return list(range(start, start + length))


def keyframe_indices(num_frames: int, stride: int) -> list[int]:
    """Every ``stride``-th frame starting at 0: the frames that get scored."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return list(range(0, num_frames, stride))


class KeyframeSchedule(Protocol):
    """Which frames are keyframes (scored). ``is_key`` is asked once per frame, in stream order, as the frame arrives;
    ``step(key)``, asked after keyframe ``key`` arrived, is the distance to the next keyframe (the frames in between
    carry its results). Frame 0 is always a keyframe."""

    def is_key(self, frame: Frame) -> bool: ...

    def step(self, key: int) -> int: ...


class EveryNth:
    """The fixed schedule: every ``stride``-th frame from frame 0."""

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


def iter_windows(frames: Iterable[Frame], length: int, stride: int | KeyframeSchedule) -> Iterator[Window]:
    """Yield a ``Window`` per keyframe (every ``stride``-th frame, or as a ``KeyframeSchedule`` decides) from a frame
    stream, in stream order.

    Windows match ``window_indices`` exactly (border-shifted at both ends). The end of the stream is only
    known when it arrives, so the builder reads ahead until a window can no longer change; it holds at most
    about ``length + stride`` frames, whatever the video's length. Frames must come with indices 0, 1, 2, ...
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    schedule = EveryNth(stride) if isinstance(stride, int) else stride
    half = length // 2
    buffer: deque[Frame] = deque()
    seen = 0
    next_key = 0
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
        step = schedule.step(next_key)
        read_until(max(next_key + half + 1, next_key + step, length + 1))
        indices = window_indices(next_key, seen, length)
        first = buffer[0].index
        yield Window(
            keyframe=next_key,
            indices=indices,
            frames=[buffer[i - first] for i in indices],
            following=[buffer[i - first] for i in range(next_key + 1, min(next_key + step, seen))],
        )
        next_key += step
        keep_from = min(next_key - half, seen - length)
        while buffer and buffer[0].index < keep_from:
            buffer.popleft()
