"""Frame mAP@0.5 (PASCAL VOC / AVA rules), the AVA CSV evaluation, and readers for prediction / GT files.

Rules of ``frame_ap``, per class:
- detections are sorted by score, descending, with a stable sort: ties keep their input order;
- IoU uses continuous coordinates, ``area = (x2 - x1) * (y2 - y1)`` (no VOC "+1" pixel);
- greedy by score inside each frame, a detection takes the GT box of its class with the highest IoU; it is a
  true positive when that IoU is ``>= iou_threshold`` and that box is not matched yet, else a false positive
  (the PASCAL VOC / AVA evaluator rule); a detection in a frame with no GT of its class is a false positive;
- AP is the all-point interpolated area under the precision envelope; classes without GT are NaN and are
  left out of ``mean_ap``.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stclip_cli.data.ava import parse_label_map, read_ava_csv, read_excluded
from stclip_cli.data.common import read_json
from stclip_cli.data.jhmdb import coco_ground_truth
from stclip_cli.data.splits import JHMDB_CLASSES
from stclip_cli.entries import Entries
from stclip_cli.sinks.result_format import DetectResult, ResultPerson, parse_result
from stclip_cli.errors import StclipError

Box = Sequence[float]
DetectionRow = tuple[Hashable, str, float, Box]
GroundTruthRow = tuple[Hashable, str, Box]
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU matrix ``(n, m)`` of xyxy boxes in continuous coordinates (no +1 pixel).

    Not supervision's ``box_iou_batch``: it returns float32, and an IoU at the 0.5 threshold must compare as the
    reference's float64 evaluator compares it."""
    a = np.asarray(boxes, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(others, np.float64).reshape(-1, 4)[None]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def voc_ap(tp: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP from true-positive flags in score order and the number of GT boxes."""
    if num_gt == 0:
        return math.nan
    tp = np.asarray(tp, np.float64)
    if tp.size == 0:
        return 0.0
    hits = np.cumsum(tp)
    recall = np.concatenate([[0.0], hits / num_gt, [1.0]])
    precision = np.concatenate([[0.0], hits / np.arange(1, tp.size + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def _true_positives(
    frames: list[Hashable], boxes: np.ndarray, gt: Mapping[Hashable, np.ndarray], thr: float
) -> np.ndarray:
    """TP flags of one class's detections, already in score order."""
    tp = np.zeros(len(frames), bool)
    by_frame: dict[Hashable, list[int]] = defaultdict(list)
    for i, frame in enumerate(frames):
        if frame in gt:
            by_frame[frame].append(i)
    for frame, rows in by_frame.items():
        iou = box_iou(boxes[rows], gt[frame])
        matched = np.zeros(iou.shape[1], bool)
        for row, overlaps in zip(rows, iou):
            best = int(np.argmax(overlaps))
            if overlaps[best] >= thr and not matched[best]:
                matched[best] = True
                tp[row] = True
    return tp


def frame_ap(
    detections: Iterable[DetectionRow],
    ground_truth: Iterable[GroundTruthRow],
    classes: Sequence[str],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Frame AP per class: detections ``(frame_key, class, score, box)`` vs GT ``(frame_key, class, box)``.

    Rows of classes outside ``classes`` are ignored; see the module docstring for the matching rules.
    """
    wanted = set(classes)
    gt: dict[str, dict[Hashable, list]] = {c: defaultdict(list) for c in classes}
    for frame, cls, box in ground_truth:
        if cls in wanted:
            gt[cls][frame].append(box)
    dets: dict[str, list] = {c: [] for c in classes}
    for frame, cls, score, box in detections:
        if cls in wanted:
            dets[cls].append((frame, float(score), box))
    out = {}
    for cls in classes:
        gt_boxes = {f: np.asarray(b, np.float64).reshape(-1, 4) for f, b in gt[cls].items()}
        num_gt = sum(len(b) for b in gt_boxes.values())
        rows = dets[cls]
        scores = np.asarray([r[1] for r in rows], np.float64)
        order = np.argsort(-scores, kind="stable")
        frames = [rows[i][0] for i in order]
        boxes = np.asarray([rows[i][2] for i in order], np.float64).reshape(-1, 4)
        out[cls] = voc_ap(_true_positives(frames, boxes, gt_boxes, iou_threshold), num_gt)
    return out


def mean_ap(aps: Mapping[str, float]) -> float:
    """Mean of the per-class APs, leaving out NaN (classes without GT); NaN when none is left."""
    values = [v for v in aps.values() if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def video_key(name: str) -> str:
    """The name a video is matched by across files: the last path part, minus a video file suffix."""
    path = Path(str(name).rstrip("/\\"))
    return path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name


def _results(data: Any, path: Path) -> list[DetectResult]:
    """The video results of a detect JSON (one object or a list of them), read by the one detect-JSON reader
    (result_format.py): every entry checked, one line naming the file and the entry on the first defect."""
    videos = data if isinstance(data, list) else [data]
    if not all(isinstance(v, dict) and "video" in v and "frames" in v for v in videos):
        raise StclipError(f"{path} is not a detect JSON (objects with 'video' and 'frames')")
    return [parse_result(v, path, frame_needs=("index",), person_needs=("box",), needs_actions=False, needs_video=True,
                         prefix=f"[{k}]." if isinstance(data, list) else "") for k, v in enumerate(videos)]


def _persons(path: Path, data: Any) -> Iterator[tuple[tuple[str, int], ResultPerson]]:
    """Every person of a detect JSON: ``((video, frame index), person)``.

    Videos are matched to ground truth by ``video_key``; two videos of the file with one key (``a/clip.mp4`` and
    ``b/clip.mp4``) would be merged into one, so they are refused."""
    named: dict[str, str] = {}
    for result in _results(data, path):
        full = str(result.video)
        name = video_key(full)
        if named.setdefault(name, full) != full:
            raise StclipError(f"{path}: videos {named[name]} and {full} would both be matched as video '{name}' of "
                              f"the ground truth; evaluate them from separate files")
        for frame in result.frames:
            for person in frame.persons:
                yield (name, int(frame.index)), person


def _detect_json_videos(path: Path, data: Any) -> set[str]:
    return {video_key(str(result.video)) for result in _results(data, path)}


def read_detect_json(path: Path) -> list[DetectionRow]:
    """Detection rows ``((video, frame index), action, score, box)`` from a ``stclip detect`` JSON.

    Accepts one video object or a list of them; each person contributes one row per entry of ``scores``, which it
    must have. Every entry is checked; a bad one is a one-line StclipError naming the file and the entry.
    """
    rows = []
    for key, person in _persons(path, read_json(path)):
        if not person.scores and person.labels is None:
            Entries(path).field({}, "scores", person.where)
        rows.extend((key, action, score, person.box) for action, score in person.scores.items())
    return rows


@dataclass
class GroundTruth:
    """Ground-truth rows ``((video, frame), class, box)`` and every video the file covers (annotated or not)."""

    rows: list[GroundTruthRow]
    videos: set[str]

    @property
    def classes(self) -> list[str]:
        """The classes with at least one box, sorted."""
        return sorted({row[1] for row in self.rows})


def read_ground_truth_file(path: Path, class_names: Sequence[str] = JHMDB_CLASSES) -> GroundTruth:
    """Ground truth from a COCO-like GT JSON or a detect JSON with labels, checked entry by entry.

    COCO-like (J-HMDB reference): ``images[]`` give movie and 1-based ``timestamp`` (frame = timestamp - 1),
    ``annotations[]`` give bbox xyxy and 1-based ``action_ids`` into ``class_names``. Detect-JSON form: each
    person's ``"labels": [names]`` (persons without labels are ignored).
    """
    data = read_json(path)
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        coco = coco_ground_truth(data, path, class_names)
        rows = [((video_key(movie), frame), name, box) for (movie, frame), box, names in coco.persons for name in names]
        return GroundTruth(rows, {video_key(movie) for movie in coco.movies})
    rows = [(key, label, person.box) for key, person in _persons(path, data) for label in person.labels or []]
    if not rows:
        raise StclipError(f"{path} holds no ground truth: expected persons with \"labels\": [names]")
    return GroundTruth(rows, _detect_json_videos(path, data))


def read_ground_truth(path: Path, class_names: Sequence[str] = JHMDB_CLASSES) -> list[GroundTruthRow]:
    """GT rows ``((video, frame index), class, box)`` of a GT file (see ``read_ground_truth_file``)."""
    return read_ground_truth_file(path, class_names).rows


def normalise_name(name: str) -> str:
    """Action names compare case-insensitively with '_', runs of spaces and camel case alike:
    'Brush_hair' = 'brush hair', 'IceDancing' = 'ice dancing'."""
    return " ".join(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").lower().split())


@dataclass
class FileScores:
    """Frame AP per class of a prediction file, and what was (not) scored: ``frames`` with at least one scored
    prediction, and the test videos without any (``without_predictions``: their ground truth is all missed)."""

    aps: dict[str, float]
    videos: int
    left_out: list[str] = field(default_factory=list)
    unpredicted: list[str] = field(default_factory=list)
    frames: int = 0
    without_predictions: list[str] = field(default_factory=list)

    def note(self) -> str:
        """What was covered, in one line."""
        missing = self.without_predictions
        names = f": {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}" if missing else ""
        return (f"scored {self.frames} frame(s) of {self.videos} test video(s); {len(missing)} test video(s) have "
                f"no predictions{names}")


def evaluate_json(
    pred_path: Path,
    gt_path: Path,
    classes: Sequence[str] | None = None,
    class_names: Sequence[str] = JHMDB_CLASSES,
    label_split: bool = False,
) -> FileScores:
    """Frame AP per class of a detect JSON against a GT file (PASCAL VOC / ActivityNet frame AP).

    Every detection on a test video counts: one on a frame without ground truth of its class is a false
    positive. The test videos are those of the GT file, or with ``label_split`` (J-HMDB, UCF101-24 label splits)
    those whose GT holds one of ``classes``; detections on other videos are left out and listed in ``left_out``.
    Names match by ``normalise_name``; ``classes`` default to every class of the GT, sorted; a class that the GT
    spells differently takes the GT's spelling. ``class_names`` resolve COCO-like ``action_ids``.
    """
    gt = read_ground_truth_file(gt_path, class_names)
    spelled = {normalise_name(n): n for n in gt.classes}
    names = [spelled.get(normalise_name(c), c) for c in classes] if classes is not None else gt.classes
    lookup = {normalise_name(n): n for n in names}
    videos = {row[0][0] for row in gt.rows if row[1] in lookup.values()} if label_split else gt.videos
    detections, left_out, predicted = [], set(), set()
    for frame, action, score, box in read_detect_json(pred_path):
        if frame[0] not in videos:
            left_out.add(frame[0])
        elif normalise_name(action) in lookup:
            detections.append((frame, lookup[normalise_name(action)], score, box))
            predicted.add(detections[-1][1])
    frames = {row[0] for row in detections}
    return FileScores(frame_ap(detections, gt.rows, names), len(videos), sorted(left_out),
                      [n for n in names if n not in predicted], len(frames),
                      sorted(videos - {frame[0] for frame in frames}))


def ava_evaluate(
    pred_csv: Path,
    gt_csv: Path,
    excluded_csv: Path | None,
    label_map_pbtxt: Path | None,
    classes: Iterable[str | int] | None = None,
) -> FileScores:
    """AVA frame AP per class name, by the standard AVA (ActivityNet) rules, on normalised CSV boxes.

    Drops excluded keyframes, keeps only the classes of the label map (optionally only ``classes``, names or
    ids); every prediction on a video of the GT counts, one on a keyframe without GT of its class is a false
    positive; predictions on videos the GT does not hold are left out and listed. Same AP as ``frame_ap``. Actions
    may be names (the CSV `stclip detect` writes): with a label map they are mapped to its ids, and without one both
    files must name their actions (the classes are then the ground truth's names).
    """
    rows = read_ava_csv(gt_csv)
    if label_map_pbtxt is not None:
        label_map = parse_label_map(label_map_pbtxt)
    elif any(isinstance(r.action, int) for r in rows):
        raise StclipError(f"{gt_csv} names its actions by AVA id: pass --label-map ava_action_list_v2.2.pbtxt")
    else:
        label_map = dict(enumerate(sorted({r.action for r in rows if isinstance(r.action, str)}), 1))
    by_name = {name: i for i, name in label_map.items()}
    if classes is not None:
        chosen = set()
        for c in classes:
            ident = by_name.get(c, c) if isinstance(c, str) else int(c)
            if ident not in label_map:
                where = f"the label map {label_map_pbtxt}" if label_map_pbtxt is not None else f"the ground truth {gt_csv}"
                raise StclipError(f"class {c!r} is not in {where}")
            chosen.add(ident)
        label_map = {i: n for i, n in label_map.items() if i in chosen}

    def ident(action: int | str | None) -> int | None:
        return by_name.get(action) if isinstance(action, str) else action

    excluded = read_excluded(excluded_csv)
    videos = {r.video for r in rows}
    gt = [((r.video, r.timestamp), label_map[ident(r.action)], r.box) for r in rows
          if (r.video, r.timestamp) not in excluded and ident(r.action) in label_map]
    preds, left_out = [], set()
    for r in read_ava_csv(pred_csv, with_action=True):
        if r.video not in videos:
            left_out.add(r.video)
        elif (r.video, r.timestamp) not in excluded and ident(r.action) in label_map:
            if r.last is None:
                raise StclipError(f"{pred_csv}: prediction rows need a score in the 8th column")
            preds.append(((r.video, r.timestamp), label_map[ident(r.action)], r.last, r.box))
    names = [label_map[i] for i in sorted(label_map)]
    predicted = {row[1] for row in preds}
    frames = {row[0] for row in preds}
    return FileScores(frame_ap(preds, gt, names), len(videos), sorted(left_out), [n for n in names if n not in predicted],
                      len(frames), sorted(videos - {frame[0] for frame in frames}))
