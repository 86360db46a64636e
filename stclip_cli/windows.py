"""Keyframe selection and T-frame windows (method.md section 2)."""

from __future__ import annotations


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
