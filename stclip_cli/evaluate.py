"""Evaluator: frame mAP@0.5 of a model on a label split's unseen classes (benchmarks.md protocol).

Each test video is streamed through the same ``Scorer`` that ``stclip detect`` uses, on the persons a
``PersonSource`` gives (ground-truth boxes, the dataset's detections, per-video boxes files or a detector).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from .data.common import DatasetView
from .detection import fp_filter
from .metrics import DetectionRow, GroundTruthRow, frame_ap, mean_ap
from .persons import PersonSource
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


def _ranked(found: sv.Detections, fp_margin: float | None, max_persons: int | None) -> sv.Detections:
    """Detections best first after the false-positive filter, at most ``max_persons``; unscored boxes as they are."""
    if found.confidence is None or len(found) == 0:
        return found
    found = fp_filter(found[np.argsort(-found.confidence, kind="stable")], fp_margin)
    return found[:max_persons] if max_persons else found


def evaluate_view(
    view: DatasetView,
    scorer: Scorer,
    persons: PersonSource,
    single_action: bool = False,
    batch_size: int = 8,
    fp_margin: float | None = None,
    max_persons: int | None = None,
    on_video: Callable[[int], None] | None = None,
) -> EvalResult:
    """Score the persons ``persons`` gives on the frames it names, for every video of ``view``, and compute frame
    mAP@0.5 on ``view.classes``.

    With detected persons every frame the benchmark scores is scored, annotated or not: a detection on a frame
    without ground truth is a false positive (PASCAL VOC / ActivityNet frame AP, as the reference evaluates).
    """
    if scorer.actions != list(view.classes):
        raise ValueError("the scorer must score exactly the view's classes")
    detections: list[DetectionRow] = []
    ground_truth: list[GroundTruthRow] = []
    keyframes = 0
    for video in view.videos:
        for frame, entry in video.gt.items():
            for box, names in zip(np.asarray(entry.boxes).reshape(-1, 4), entry.labels):
                ground_truth.extend(((video.name, frame), name, box) for name in names if name in view.classes)
        frames = persons.frames(video)
        detector = persons.detector(video)
        scored: list[tuple[int, np.ndarray, np.ndarray]] = []
        scorer.reset()
        images: dict[int, np.ndarray] = {}
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            missing = [i for i in chunk if i not in images]
            images.update(zip(missing, video.read_frames(missing)))
            found = detector.detect([images[f] for f in chunk], chunk)
            requests = [KeyframeRequest(f, video.window(f, scorer.model.window), _ranked(d, fp_margin, max_persons).xyxy)
                        for f, d in zip(chunk, found)]
            requests = [r for r in requests if len(r.boxes)]
            needed = sorted({i for r in requests for i in r.window} | set(chunk))
            images = {i: images[i] for i in needed if i in images}  # neighbouring windows share frames: read each once
            missing = [i for i in needed if i not in images]
            images.update(zip(missing, video.read_frames(missing)))
            for request, probs in zip(requests, scorer.score(images, requests) if requests else []):
                scored.append((request.keyframe, request.boxes, probs))
        keyframes += len(frames)
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
    return EvalResult(aps, mean_ap(aps), len(view.videos), keyframes, {"persons": persons.name})


__all__ = ["EvalResult", "evaluate_view"]
