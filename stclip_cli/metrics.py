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

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stclip_cli.data.ava import parse_label_map, read_ava_csv, read_excluded
from stclip_cli.data.common import read_json
from stclip_cli.data.splits import JHMDB_CLASSES
from stclip_cli.errors import StclipError

Box = Sequence[float]
DetectionRow = tuple[Hashable, str, float, Box]
GroundTruthRow = tuple[Hashable, str, Box]
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU matrix ``(n, m)`` of xyxy boxes in continuous coordinates (no +1 pixel)."""
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


def _videos(data: Any, path: Path) -> list[dict]:
    videos = data if isinstance(data, list) else [data]
    if not all(isinstance(v, dict) and "video" in v and "frames" in v for v in videos):
        raise StclipError(f"{path} is not a detect JSON (objects with 'video' and 'frames')")
    return videos


def read_detect_json(path: Path) -> list[DetectionRow]:
    """Detection rows ``((video, frame index), action, score, box)`` from a ``stclip detect`` JSON.

    Accepts one video object or a list of them; each person contributes one row per entry of ``scores``.
    """
    rows = []
    for video in _videos(read_json(path), path):
        name = video_key(video["video"])
        for frame in video["frames"]:
            for person in frame.get("persons", []):
                for action, score in (person.get("scores") or {}).items():
                    rows.append(((name, int(frame["index"])), action, float(score), person["box"]))
    return rows


def read_ground_truth(path: Path, class_names: Sequence[str] = JHMDB_CLASSES) -> list[GroundTruthRow]:
    """GT rows ``((video, frame index), class, box)`` from a COCO-like GT JSON or a detect JSON with labels.

    COCO-like (J-HMDB reference): ``images[]`` give movie and 1-based ``timestamp`` (frame = timestamp - 1),
    ``annotations[]`` give bbox xyxy and 1-based ``action_ids`` into ``class_names``. Detect-JSON form: each
    person's ``"labels": [names]`` (persons without labels are ignored).
    """
    data = read_json(path)
    rows: list[GroundTruthRow] = []
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        images = {int(im["id"]): (video_key(im["movie"]), int(im["timestamp"]) - 1) for im in data["images"]}
        for ann in data["annotations"]:
            key = images.get(int(ann["image_id"]))
            if key is None:
                raise StclipError(f"{path}: annotation {ann.get('id')} names an unknown image {ann['image_id']}")
            for action in ann["action_ids"]:
                if not 1 <= int(action) <= len(class_names):
                    raise StclipError(f"{path}: action id {action} outside 1..{len(class_names)}")
                rows.append((key, class_names[int(action) - 1], ann["bbox"]))
        return rows
    for video in _videos(data, path):
        name = video_key(video["video"])
        for frame in video["frames"]:
            for person in frame.get("persons", []):
                for label in person.get("labels") or []:
                    rows.append(((name, int(frame["index"])), label, person["box"]))
    if not rows:
        raise StclipError(f"{path} holds no ground truth: expected persons with \"labels\": [names]")
    return rows


def normalise_name(name: str) -> str:
    """Action names compare case-insensitively with '_' and runs of spaces equal: 'Brush_hair' = 'brush hair'."""
    return " ".join(name.replace("_", " ").lower().split())


def evaluate_json(pred_path: Path, gt_path: Path, classes: Sequence[str] | None = None) -> dict[str, float]:
    """Frame AP per class of a detect JSON against a GT file, on the frames that have GT only.

    Prediction action names are matched to GT class names by ``normalise_name``; ``classes`` (GT names)
    defaults to every class in the GT, sorted.
    """
    gt = read_ground_truth(gt_path)
    names = list(classes) if classes is not None else sorted({row[1] for row in gt})
    lookup = {normalise_name(n): n for n in names}
    gt_frames = {row[0] for row in gt}
    dets = [
        (frame, lookup[normalise_name(cls)], score, box)
        for frame, cls, score, box in read_detect_json(pred_path)
        if frame in gt_frames and normalise_name(cls) in lookup
    ]
    return frame_ap(dets, gt, names)


def ava_evaluate(
    pred_csv: Path,
    gt_csv: Path,
    excluded_csv: Path | None,
    label_map_pbtxt: Path,
    classes: Iterable[str | int] | None = None,
) -> dict[str, float]:
    """AVA frame AP per class name, by the standard AVA rules, on normalised CSV boxes.

    Drops excluded keyframes, keeps only the classes of the label map (optionally only ``classes``, names or
    ids), scores predictions on the GT keyframes only; same AP definition as ``frame_ap``.
    """
    label_map = parse_label_map(label_map_pbtxt)
    if classes is not None:
        by_name = {name: i for i, name in label_map.items()}
        chosen = set()
        for c in classes:
            ident = by_name.get(c, c) if isinstance(c, str) else int(c)
            if ident not in label_map:
                raise StclipError(f"class {c!r} is not in the label map {label_map_pbtxt}")
            chosen.add(ident)
        label_map = {i: n for i, n in label_map.items() if i in chosen}
    excluded = read_excluded(excluded_csv)
    gt = [
        ((r.video, r.timestamp), label_map[r.action], r.box)
        for r in read_ava_csv(gt_csv)
        if (r.video, r.timestamp) not in excluded and r.action in label_map
    ]
    keys = {row[0] for row in gt}
    preds = []
    for r in read_ava_csv(pred_csv, with_action=True):
        if (r.video, r.timestamp) in keys and r.action in label_map:
            if r.last is None:
                raise StclipError(f"{pred_csv}: prediction rows need a score in the 8th column")
            preds.append(((r.video, r.timestamp), label_map[r.action], r.last, r.box))
    return frame_ap(preds, gt, [label_map[i] for i in sorted(label_map)])
