"""Evaluator: frame mAP@0.5 of a model on a label split's unseen classes (benchmarks.md protocol).

Each test video is streamed through the same ``Scorer`` that ``stclip detect`` uses, on the persons a
``PersonSource`` gives (ground-truth boxes, the dataset's detections, per-video boxes files or a detector).
``Protocol`` says which detections of a frame are scored and how a detection's score is made; its defaults are the
reference implementation's J-HMDB test protocol, and every variant has a name that the result JSON records.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from .data.common import DatasetView
from .detection import fp_filter
from .errors import StclipError
from .metrics import DetectionRow, GroundTruthRow, frame_ap, mean_ap
from .persons import PersonSource
from .scoring import KeyframeRequest, Scorer

TEST_BOXES = ("top3", "fp-filter")
SCORES = ("prob-x-det", "prob")
TOP = 3  # the reference scores the 3 best detections of a frame
FP_MARGINS = {"jhmdb": 0.001, "ucf24": 0.7, "ava": 0.7}  # method.md section 9


@dataclass(frozen=True)
class Protocol:
    """Which detections of a frame are scored and what a detection's score is.

    ``test_boxes``: ``top3`` keeps the ``max_persons`` (3) best detections, no threshold (the reference's J-HMDB
    test); ``fp-filter`` keeps the best box S and every box above S - ``fp_margin`` (the paper's filter).
    ``score``: ``prob-x-det`` multiplies the action probability by the detector's score (the reference's);
    ``prob`` is the probability alone. Ground-truth boxes have no detector score (1) and are all scored.
    Boxes are clipped to [0, w - 1] x [0, h - 1] before their crops are cut, and one left empty is dropped.
    """

    test_boxes: str = "top3"
    score: str = "prob-x-det"
    fp_margin: float | None = None
    max_persons: int | None = TOP
    border: str = "inclusive"

    def record(self, pool: str | None, gt_boxes: bool, coverage: dict) -> dict:
        """JSON-ready record of the protocol a result came from (the video pool, the box and score rules, what was
        covered), so that numbers of different protocols are never compared by accident."""
        boxes = {"test_boxes": "gt-boxes", "fp_margin": None, "max_persons": None} if gt_boxes else {
            "test_boxes": self.test_boxes, "fp_margin": self.fp_margin, "max_persons": self.max_persons}
        return {"pool": pool, **boxes, "score": self.score, "border": self.border, **coverage}


def eval_protocol(
    dataset: str, test_boxes: str | None = None, score: str | None = None,
    fp_margin: float | None = None, max_persons: int | None = None,
) -> Protocol:
    """The protocol the eval options ask for; unset options take the benchmark's defaults (J-HMDB: the reference's
    top3 and prob-x-det; UCF101-24 and AVA, which have no reference code: the paper's fp-filter, margin 0.7)."""
    boxes = test_boxes or ("top3" if dataset == "jhmdb" else "fp-filter")
    if boxes not in TEST_BOXES:
        raise StclipError(f"unknown --test-boxes {boxes!r}: expected one of {', '.join(TEST_BOXES)}")
    rule = score or "prob-x-det"
    if rule not in SCORES:
        raise StclipError(f"unknown --score {rule!r}: expected one of {', '.join(SCORES)}")
    if max_persons is not None and max_persons < 1:
        raise StclipError(f"--max-persons must be at least 1, got {max_persons}")
    if fp_margin is not None and not (math.isfinite(fp_margin) and fp_margin >= 0):
        raise StclipError(f"--fp-margin must be a finite number >= 0, got {fp_margin}")
    if boxes == "top3":
        if fp_margin is not None:
            raise StclipError("--fp-margin is the margin of --test-boxes fp-filter; top3 uses no threshold")
        return Protocol("top3", rule, None, max_persons or TOP)
    margin = fp_margin if fp_margin is not None else FP_MARGINS.get(dataset, 0.7)
    return Protocol("fp-filter", rule, margin, max_persons)


@dataclass
class EvalResult:
    """Per-class AP (NaN: no GT), their mean, and what was evaluated."""

    aps: dict[str, float]
    mean: float
    videos: int
    keyframes: int
    settings: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> null)."""
        clean = {k: (None if math.isnan(v) else v) for k, v in self.aps.items()}
        return {"map": None if math.isnan(self.mean) else self.mean, "ap": clean, "videos": self.videos,
                "keyframes": self.keyframes, **self.settings}

    def note(self) -> str:
        """What was covered, in one line: frames and videos scored, and test videos left without any."""
        c = self.coverage
        return (f"scored {c['frames']} frame(s) of {c['videos']} test video(s); "
                f"{c['videos_without_detections']} test video(s) had no person boxes, "
                f"{c['videos_without_predictions']} no predictions")


def _selected(found: sv.Detections, protocol: Protocol, width: int, height: int) -> sv.Detections:
    """The detections of a frame that are scored: best first, ``protocol``'s box rule, then the boxes still
    non-empty once clipped to [0, w - 1] x [0, h - 1]; unscored (ground-truth) boxes all, in their order."""
    if found.confidence is not None and len(found):
        found = found[np.argsort(-found.confidence, kind="stable")]
        if protocol.test_boxes == "fp-filter":
            found = fp_filter(found, protocol.fp_margin)
        found = found[: protocol.max_persons] if protocol.max_persons else found
    if len(found) == 0:
        return found
    x1, x2 = (np.clip(found.xyxy[:, i], 0, width - 1) for i in (0, 2))
    y1, y2 = (np.clip(found.xyxy[:, i], 0, height - 1) for i in (1, 3))
    return found[(x2 > x1) & (y2 > y1)]


def evaluate_view(
    view: DatasetView,
    scorer: Scorer,
    persons: PersonSource,
    single_action: bool = False,
    batch_size: int = 8,
    protocol: Protocol | None = None,
    on_video: Callable[[int], None] | None = None,
) -> EvalResult:
    """Score the persons ``persons`` gives on the frames it names, for every video of ``view``, and compute frame
    mAP@0.5 on ``view.classes``, picking and scoring boxes by ``protocol`` (default: the reference's).

    With detected persons every frame the benchmark scores is scored, annotated or not: a detection on a frame
    without ground truth is a false positive (PASCAL VOC / ActivityNet frame AP, as the reference evaluates).
    Soft voting (``single_action``) averages the probabilities over the video before the detector score multiplies.
    """
    protocol = protocol or Protocol()
    if scorer.actions != list(view.classes):
        raise ValueError("the scorer must score exactly the view's classes")
    detections: list[DetectionRow] = []
    ground_truth: list[GroundTruthRow] = []
    keyframes = 0
    coverage = {"videos": len(view.videos), "frames": 0, "videos_without_detections": 0, "videos_without_predictions": 0}
    for video in view.videos:
        for frame, entry in video.gt.items():
            for box, names in zip(np.asarray(entry.boxes).reshape(-1, 4), entry.labels):
                ground_truth.extend(((video.name, frame), name, box) for name in names if name in view.classes)
        frames = persons.frames(video)
        detector = persons.detector(video)
        scored: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        any_box = False
        scorer.reset()
        images: dict[int, np.ndarray] = {}
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            missing = [i for i in chunk if i not in images]
            images.update(zip(missing, video.read_frames(missing)))
            found = detector.detect([images[f] for f in chunk], chunk)
            any_box = any_box or any(len(d) for d in found)
            chosen = [(f, _selected(d, protocol, images[f].shape[1], images[f].shape[0])) for f, d in zip(chunk, found)]
            chosen = [(f, d) for f, d in chosen if len(d)]
            requests = [KeyframeRequest(f, video.window(f, scorer.model.window), d.xyxy) for f, d in chosen]
            weights = [np.ones(len(d), np.float32) if d.confidence is None or protocol.score == "prob" else d.confidence
                       for _, d in chosen]
            needed = sorted({i for r in requests for i in r.window} | set(chunk))
            images = {i: images[i] for i in needed if i in images}  # neighbouring windows share frames: read each once
            missing = [i for i in needed if i not in images]
            images.update(zip(missing, video.read_frames(missing)))
            for request, weight, probs in zip(requests, weights, scorer.score(images, requests) if requests else []):
                scored.append((request.keyframe, request.boxes, probs, weight))
        keyframes += len(frames)
        coverage["frames"] += len(scored)
        coverage["videos_without_detections"] += not any_box
        coverage["videos_without_predictions"] += not scored
        if single_action and scored:
            vote = np.concatenate([p for _, _, p, _ in scored]).mean(axis=0)
            scored = [(f, b, np.broadcast_to(vote, p.shape), w) for f, b, p, w in scored]
        for frame, boxes, probs, weight in scored:
            for box, row, w in zip(boxes, probs, weight):
                detections.extend(((video.name, frame), c, float(s) * float(w), box) for c, s in zip(view.classes, row))
        if on_video is not None:
            on_video(1)
    aps = frame_ap(detections, ground_truth, view.classes)
    return EvalResult(aps, mean_ap(aps), len(view.videos), keyframes, {"persons": persons.name}, coverage)


__all__ = ["EvalResult", "Protocol", "eval_protocol", "evaluate_view"]
