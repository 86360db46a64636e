"""Evaluator: frame mAP@0.5 of a model on a label split's unseen classes (benchmarks.md protocol).

Each test video is streamed through the same ``Scorer`` that ``stclip detect`` uses, on ground-truth boxes
(``gt_boxes``) or the dataset's detected person boxes, at every annotated frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from .data.common import DatasetView, VideoRecord
from .detection import fp_filter
from .errors import StclipError
from .metrics import DetectionRow, GroundTruthRow, frame_ap, mean_ap
from .scoring import KeyframeRequest, Scorer


@dataclass
class EvalResult:
    """Per-class AP (NaN: no GT), their mean, and what was evaluated."""

    aps: dict[str, float]
    mean: float
    videos: int
    keyframes: int
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> null)."""
        clean = {k: (None if math.isnan(v) else v) for k, v in self.aps.items()}
        return {"map": None if math.isnan(self.mean) else self.mean, "ap": clean, "videos": self.videos,
                "keyframes": self.keyframes, **self.settings}


def person_boxes(video: VideoRecord, frame: int, gt_boxes: bool, fp_margin: float | None, max_persons: int | None) -> np.ndarray:
    """The boxes scored at ``frame``: GT persons, or detections (best first) after the false-positive filter."""
    if gt_boxes:
        entry = video.gt.get(frame)
        return np.zeros((0, 4), np.float32) if entry is None else np.asarray(entry.boxes, np.float32).reshape(-1, 4)
    if video.detections is None:
        raise StclipError(f"no detected person boxes for {video.name}; pass --gt-boxes or give the detections file")
    boxes, scores = video.detections.get(frame, (np.zeros((0, 4)), np.zeros(0)))
    found = sv.Detections(xyxy=np.asarray(boxes, np.float32).reshape(-1, 4), confidence=np.asarray(scores, np.float32))
    found = fp_filter(found[np.argsort(-found.confidence, kind="stable")], fp_margin)
    return found.xyxy[:max_persons] if max_persons else found.xyxy


def evaluate_view(
    view: DatasetView,
    scorer: Scorer,
    gt_boxes: bool = False,
    single_action: bool = False,
    batch_size: int = 8,
    fp_margin: float | None = None,
    max_persons: int | None = None,
    on_video: Callable[[int], None] | None = None,
) -> EvalResult:
    """Score every annotated frame of every video of ``view`` on ``view.classes`` and compute frame mAP@0.5."""
    if scorer.actions != list(view.classes):
        raise ValueError("the scorer must score exactly the view's classes")
    detections: list[DetectionRow] = []
    ground_truth: list[GroundTruthRow] = []
    keyframes = 0
    for video in view.videos:
        for frame, entry in video.gt.items():
            for box, names in zip(np.asarray(entry.boxes).reshape(-1, 4), entry.labels):
                ground_truth.extend(((video.name, frame), name, box) for name in names if name in view.classes)
        frames = sorted(video.gt)
        scored: list[tuple[int, np.ndarray, np.ndarray]] = []
        scorer.reset()
        images: dict[int, np.ndarray] = {}
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            requests = [KeyframeRequest(f, video.window(f, scorer.model.window), person_boxes(video, f, gt_boxes, fp_margin, max_persons)) for f in chunk]
            needed = sorted({i for r in requests for i in r.window} | set(chunk))
            images = {i: images[i] for i in needed if i in images}  # neighbouring windows share frames: read each once
            missing = [i for i in needed if i not in images]
            images.update(zip(missing, video.read_frames(missing)))
            for request, probs in zip(requests, scorer.score(images, requests)):
                scored.append((request.keyframe, request.boxes, probs))
        keyframes += len(scored)
        if single_action and scored:
            stacked = np.concatenate([p for _, _, p in scored])
            if len(stacked):
                vote = stacked.mean(axis=0)
                scored = [(f, b, np.broadcast_to(vote, p.shape)) for f, b, p in scored]
        for frame, boxes, probs in scored:
            for box, row in zip(boxes, probs):
                detections.extend(((video.name, frame), c, float(s), box) for c, s in zip(view.classes, row))
        if on_video is not None:
            on_video(1)
    aps = frame_ap(detections, ground_truth, view.classes)
    return EvalResult(aps, mean_ap(aps), len(view.videos), keyframes)


__all__ = ["EvalResult", "evaluate_view", "person_boxes"]
