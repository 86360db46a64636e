"""ByteTrack association over keyframes and per-track score smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from stclip_cli.core.tracking import PersonTracker, smooth_scores


def two_people(step: int, confidence: bool = True, swap: bool = False) -> sv.Detections:
    boxes = np.array([[10 + 4 * step, 10, 40 + 4 * step, 80], [200 - 4 * step, 20, 230 - 4 * step, 90]], np.float32)
    scores = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    order = [1, 0] if swap else [0, 1]
    return sv.Detections(
        xyxy=boxes[order],
        confidence=np.array([0.9, 0.8], np.float32)[order] if confidence else None,
        data={"scores": scores[order]},
    )


@pytest.mark.parametrize("confidence", [True, False])
def test_ids_are_stable_and_order_preserved(confidence):
    tracker = PersonTracker(fps=25)
    seen = []
    for step in range(6):
        det = two_people(step, confidence=confidence, swap=step % 2 == 1)
        tracked = tracker.update(det, time=step * 8 / 25)
        assert np.array_equal(tracked.xyxy, det.xyxy)
        assert np.array_equal(tracked.data["scores"], det.data["scores"])
        assert (tracked.confidence is None) == (not confidence)
        ids = dict(zip(tracked.xyxy[:, 0].round().astype(int) < 100, tracked.tracker_id.tolist()))
        seen.append((ids[True], ids[False]))
    assert seen[0] == (-1, -1)
    assert all(i >= 0 for pair in seen[1:] for i in pair)
    assert len(set(seen[1:])) == 1 and seen[1][0] != seen[1][1]


def test_empty_frames_and_reset():
    tracker = PersonTracker(fps=25)
    assert len(tracker.update(sv.Detections.empty(), time=0.0)) == 0
    tracker.update(two_people(0), time=0.1)
    first = tracker.update(two_people(1), time=0.2).tracker_id.tolist()
    assert len(tracker.update(sv.Detections.empty(), time=0.3)) == 0
    tracker.reset()
    tracker.update(two_people(0), time=0.0)
    assert tracker.update(two_people(1), time=0.1).tracker_id.tolist() == first


def test_smooth_scores_ema_per_track():
    state: dict[int, np.ndarray] = {}
    first = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)
    out = smooth_scores([3, 4, -1], first, state)
    assert np.allclose(out, first)
    second = np.array([[0.0, 1.0], [0.5, 0.5]], np.float32)
    out = smooth_scores(np.array([4, 3]), second, state, alpha=0.5)
    assert np.allclose(out, [[0.0, 1.0], [0.75, 0.25]])
    assert np.allclose(state[3], [0.75, 0.25]) and np.allclose(state[4], [0.0, 1.0])
    assert np.allclose(smooth_scores([None], second[:1], state), second[:1])
    assert np.allclose(smooth_scores(None, second, state), second)
    assert np.allclose(smooth_scores([3], second[:1], state, alpha=1.0), second[:1])
    with pytest.raises(ValueError):
        smooth_scores([3], second[:1], state, alpha=0.0)
