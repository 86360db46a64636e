"""Streaming windows: same windows as window_indices, every frame rendered once, bounded memory."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest

from stclip_cli.records import Frame
from stclip_cli.core.windows import AtFrames, EveryNth, iter_windows, keyframe_indices, window_indices, window_reach


def frames(n: int) -> Iterator[Frame]:
    for i in range(n):
        yield Frame(index=i, time=i / 25, image=np.zeros((2, 2, 3), np.uint8))


@pytest.mark.parametrize("num_frames", [1, 3, 8, 9, 10, 17, 31])
@pytest.mark.parametrize(("length", "stride"), [(9, 1), (9, 4), (8, 3), (1, 1), (5, 12)])
def test_matches_window_indices_and_renders_every_frame(num_frames, length, stride):
    windows = list(iter_windows(frames(num_frames), length, stride))
    assert [w.keyframe for w in windows] == keyframe_indices(num_frames, stride)
    for w in windows:
        assert w.indices == window_indices(w.keyframe, num_frames, length)
        assert [f.index for f in w.frames] == w.indices
        assert w.key.index == w.keyframe
    rendered = [f.index for w in windows for f in w.render_frames]
    assert rendered == list(range(num_frames))


def test_empty_stream_yields_nothing():
    assert list(iter_windows(frames(0), 9, 1)) == []


def test_rejects_out_of_order_frames():
    bad = [Frame(0, 0.0, np.zeros(1)), Frame(2, 0.1, np.zeros(1))]
    with pytest.raises(ValueError, match="expected index 1"):
        list(iter_windows(bad, 9, 1))


@pytest.mark.parametrize(("length", "stride"), [(9, 1), (9, 8), (16, 4), (5, 20)])
def test_memory_is_bounded_on_a_long_stream(length, stride):
    live = 0
    peak = 0

    def release() -> None:
        nonlocal live
        live -= 1

    def long_stream(n: int) -> Iterator[Frame]:
        nonlocal live, peak
        for i in range(n):
            image = np.zeros((4, 4, 3), np.uint8)
            weakref.finalize(image, release)
            live += 1
            peak = max(peak, live)
            yield Frame(index=i, time=i / 25, image=image)

    count = 0
    for window in iter_windows(long_stream(5000), length, stride):
        count += 1
        del window
    gc.collect()
    assert count == len(keyframe_indices(5000, stride))
    assert peak <= length + stride + 1
    assert live == 0


@pytest.mark.parametrize("num_frames", [1, 5, 9, 20, 61])
@pytest.mark.parametrize(("length", "stride", "step"), [(9, 1, 1), (9, 12, 1), (9, 30, 1), (5, 7, 3), (9, 40, 4)])
def test_every_frame_a_window_reads_is_near_a_keyframe(num_frames, length, stride, step):
    """``near`` (which frames are embedded) covers every window's frames, border shifts and sparse windows included,
    for a stride and for given keyframes, and leaves out frames far from all of them."""
    reach = window_reach(length, step)
    keys = keyframe_indices(num_frames, stride)
    read = {f for k in keys for f in window_indices(k, num_frames, length, step)}
    for schedule in (EveryNth(stride), AtFrames(keys)):
        near = {f for f in range(num_frames) if schedule.near(f, reach)}
        assert read <= near
    given = {f for f in range(num_frames) if AtFrames(keys).near(f, reach)}
    assert all(min(abs(f - k) for k in keys) <= reach for f in given)
