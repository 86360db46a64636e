"""Evaluator: frame mAP@0.5 of a model on a label split's unseen classes (benchmarks.md protocol).

Each test video is streamed through the same ``Scorer`` that ``stclip detect`` uses, on the persons a
``PersonSource`` gives (ground-truth boxes, the dataset's detections, per-video boxes files or a detector).
``Protocol`` says which detections of a frame are scored and how a detection's score is made; its defaults are the
reference implementation's J-HMDB test protocol, and every variant has a name that the result JSON records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stclip_cli.data.common import DatasetView, VideoRecord
from stclip_cli.errors import StclipError
from stclip_cli.benchmark.metrics import DetectionRow, GroundTruthRow, frame_ap, mean_ap
from stclip_cli.benchmark.persons import PersonSource
from stclip_cli.core.predictor import Predictor
from stclip_cli.records import SCORES, FrameResult, ModelInfo, Sink, VideoInfo
from stclip_cli.sources.opener import open_source
from stclip_cli.sources.video import FrameFolderSource, VideoSource
from stclip_cli.core.windows import window_indices

DEFAULT_FPS = 25.0  # the frame rate of a dataset video that does not say (times only: eval matches frame indices)

TEST_BOXES = ("top3", "fp-filter")
SCORE_RULES = ("prob-x-det", "prob")
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

    def detect_settings(self) -> dict[str, Any]:
        """The protocol as settings of the one pipeline (``pipeline.DetectConfig``): which boxes, which score."""
        return {"fp_margin": self.fp_margin if self.test_boxes == "fp-filter" else None,
                "max_persons": self.max_persons, "score": self.score, "drop_empty": self.border == "inclusive"}

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
    if rule not in SCORE_RULES:
        raise StclipError(f"unknown --score {rule!r}: expected one of {', '.join(SCORE_RULES)}")
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


class EvalRows(Sink):
    """The in-memory sink an evaluation reads: each scored keyframe's persons as detection rows
    ``((video, frame), class, score, box)``, and how many keyframes had any."""

    def __init__(self, video: str, classes: Sequence[str]) -> None:
        self.video, self.classes = video, list(classes)
        self.rows: list[DetectionRow] = []
        self.frames = 0

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Nothing to open: the rows stay in memory."""

    def write(self, result: FrameResult) -> None:
        """A keyframe's persons, one row per class; frames that carry a keyframe's results add nothing."""
        det = result.detections
        if not result.keyframe or not len(det):
            return
        self.frames += 1
        for box, row in zip(det.xyxy, np.asarray(det.data[SCORES])):
            self.rows.extend(((self.video, result.index), c, float(s), box) for c, s in zip(self.classes, row))

    def close(self) -> None:
        """Nothing to put in place."""

    def abort(self) -> None:
        """Nothing to discard."""


def dataset_source(video: VideoRecord, length: int, keyframes: Sequence[int]) -> VideoSource:
    """A dataset video as detect opens videos: its frame files through the frame-folder source (reading only the
    frames the keyframes' windows take), or its video file through PyAV."""
    needed = {i for k in keyframes for i in window_indices(k, video.num_frames, length, video.frame_step)}
    fps = video.fps or DEFAULT_FPS
    if video.frame_paths or video.frame_template is not None:
        files = video.frame_paths or [Path(video.frame_template % (i + 1)) for i in range(video.num_frames)]
        return FrameFolderSource(Path(files[0]).parent, fps, files=list(files), needed=needed | set(keyframes))
    if video.video_path is None:
        raise StclipError(f"video {video.name} has neither frame files nor a video file")
    return open_source(video.video_path, fps)


def evaluate_view(
    view: DatasetView,
    predictor: Predictor,
    model: ModelInfo,
    persons: PersonSource,
    protocol: Protocol | None = None,
    on_video: Callable[[int], None] | None = None,
) -> EvalResult:
    """Score every video of ``view`` as `stclip detect` does (the same predictor, sources, windows, soft voting and
    score rule, built by ``pipeline.build_pipeline``) on the persons ``persons`` gives and the frames it names, and
    compute frame mAP@0.5 on ``view.classes``. ``protocol`` is recorded (the predictor's options apply it).

    With detected persons every frame the benchmark scores is scored, annotated or not: a detection on a frame
    without ground truth is a false positive (PASCAL VOC / ActivityNet frame AP, as the reference evaluates).
    Soft voting (``single_action``) averages the probabilities over the video before the detector score multiplies.
    """
    if predictor.scorer.actions != list(view.classes):
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
        rows = EvalRows(video.name, view.classes)
        source = dataset_source(video, predictor.scorer.model.window, frames)
        summary = predictor.with_detector(persons.detector(video)).run(
            Path(video.name), [rows], model, source=source, keyframes=frames, frame_step=video.frame_step)
        keyframes += len(frames)
        coverage["frames"] += rows.frames
        coverage["videos_without_detections"] += summary.persons == 0
        coverage["videos_without_predictions"] += rows.frames == 0
        detections += rows.rows
        if on_video is not None:
            on_video(1)
    aps = frame_ap(detections, ground_truth, view.classes)
    return EvalResult(aps, mean_ap(aps), len(view.videos), keyframes, {"persons": persons.name}, coverage)


def eval_classes(dataset: str | None, split: int | None, subset: str, classes: str | None) -> tuple[list[str] | None, str]:
    """The classes --pred is scored on and how they were chosen: --classes, the split's, or None (every GT class)."""
    from stclip_cli.data.splits import get_split
    from stclip_cli.benchmark.metrics import normalise_name

    if subset not in ("train", "test"):
        raise StclipError(f"unknown subset {subset!r}: expected one of train, test")
    if classes is not None:
        if split is not None:
            raise StclipError("--classes and --split both choose the classes: pass one of them")
        names = [" ".join(c.split()) for c in classes.split(",") if c.strip()]
        if not names:
            raise StclipError('--classes names no class; pass e.g. --classes "clap,sit,wave"')
        seen: set[str] = set()
        for name in names:
            if normalise_name(name) in seen:
                raise StclipError(f"class '{name}' is named twice in --classes")
            seen.add(normalise_name(name))
        return names, "the --classes list"
    if split is None:
        if dataset is not None and dataset != "ava":  # AVA without a split: every class of the label map
            raise StclipError("--dataset needs --split (or --classes) to choose the classes of --pred")
        return None, "every class of the ground truth (choose with --dataset/--split or --classes)"
    if dataset is None:
        raise StclipError("--split needs --dataset: which benchmark's split?")
    label_split = get_split(dataset, split)
    return list(label_split.train_classes if subset == "train" else label_split.test_classes), f"{label_split.dataset} split {split} {subset} classes"


__all__ = ["eval_classes", "EvalResult", "EvalRows", "Protocol", "dataset_source", "eval_protocol", "evaluate_view"]
