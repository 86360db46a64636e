"""Person tracks across keyframes (ByteTrack from the ``trackers`` package) and per-track score smoothing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

_ORDER = "_stclip_order"


class PersonTracker:
    """Gives every box a ``tracker_id`` with ByteTrack; boxes keep their input order and their ``data``.

    Call ``update`` once per scored frame with its time in seconds, so a stride between keyframes (or a
    variable frame rate) is handled by the tracker's motion model. Boxes without detector scores (a boxes
    file) are tracked as score 1.0. A box ByteTrack leaves unassigned gets ``tracker_id`` -1; as in the
    library, that includes a person's first appearance (a new track gets its id when matched again).
    """

    def __init__(
        self,
        fps: float = 30.0,
        lost_track_seconds: float = 1.0,
        activation_threshold: float = 0.25,
        high_conf_threshold: float = 0.5,
        min_iou: float = 0.1,
    ) -> None:
        self.tracker = ByteTrackTracker(
            lost_track_buffer=max(0, round(lost_track_seconds * 30)),
            frame_rate=fps,
            track_activation_threshold=activation_threshold,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=min_iou,
            high_conf_det_threshold=high_conf_threshold,
        )

    def update(self, detections: sv.Detections, time: float | None = None) -> sv.Detections:
        """Track one frame's boxes; returns the same boxes, in the same order, with ``tracker_id`` set."""
        scored = detections[:]
        scored.data[_ORDER] = np.arange(len(detections))
        if scored.confidence is None:
            scored.confidence = np.ones(len(scored), dtype=np.float32)
        tracked = self.tracker.update(scored, timestamp=time)
        ids = np.full(len(detections), -1, dtype=int)
        if len(tracked):
            ids[np.asarray(tracked.data[_ORDER], dtype=int)] = tracked.tracker_id
        result = detections[:]
        result.tracker_id = ids
        return result

    def reset(self) -> None:
        """Forget every track (call between videos)."""
        self.tracker.reset()


def smooth_scores(
    track_ids: Sequence[int | None] | np.ndarray | None,
    scores: np.ndarray,
    state: dict[int, np.ndarray],
    alpha: float = 0.5,
) -> np.ndarray:
    """Exponential moving average of each track's action scores over keyframes: s = alpha * x + (1 - alpha) * s_prev.

    ``state`` maps track id to its last smoothed vector and is updated in place (one dict per video).
    Boxes without a track (None or negative id) pass through unchanged; alpha=1 turns smoothing off.
    Neither the ST-CLIP paper nor its reference code smooths scores; this is an stclip addition.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    scores = np.asarray(scores, dtype=np.float32)
    out = scores.copy()
    if track_ids is None:
        return out
    for row, track in enumerate(track_ids):
        if track is None or int(track) < 0:
            continue
        previous = state.get(int(track))
        if previous is not None and previous.shape == scores[row].shape:
            out[row] = alpha * scores[row] + (1.0 - alpha) * previous
        state[int(track)] = out[row].copy()
    return out
