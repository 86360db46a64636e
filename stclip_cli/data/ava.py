"""AVA v2.2 reader: annotation / proposal / excluded-timestamp CSVs, the action-list pbtxt, frames or videos.

Layout under the data root (the SlowFast layout; CSVs and pbtxt in ``<root>/annotations/`` or the root)::

    frames/<video_id>/<video_id>_000001.jpg ...   frames at 30 fps of the 15-minute segment: file 1 is
                                                  second 900.0, so timestamp t is 0-based frame (t-900)*30
    videos_15min/<video_id>.mp4|.mkv|.webm        alternative: the segment cut at 900 s (frame = (t-900)*fps)
    ava_{train,val}_v2.2.csv                      video_id, timestamp, x1, y1, x2, y2 (in [0,1]), action, person
    ava_{train,val}_excluded_timestamps_v2.2.csv  video_id, timestamp
    proposals: CSV rows video_id, timestamp, x1, y1, x2, y2, [action,] score, or a pickle
               {"video_id,timestamp": array rows [x1, y1, x2, y2, score]} (normalised boxes)

Keyframes are timestamps 902..1798. Windows take T frames ``frame_step`` apart around the keyframe (default 1:
consecutive 30 fps frames). Pose classes are single-label (one softmax group); object and person-interaction
classes are multi-label.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stclip_cli.data.common import DatasetView, FrameBoxes, VideoRecord, load_image
from stclip_cli.data.jhmdb import find_file
from stclip_cli.data.safe_pickle import load_data_pickle
from stclip_cli.data.splits import AVA_ACTIONS, AVA_ID_BY_NAME, AVA_POSE_CLASSES, ava_training_videos, get_split
from stclip_cli.errors import StclipError, first_line

FPS = 30
FIRST_SECOND = 900
KEYFRAME_SECONDS = range(902, 1799)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi")
SUBSET_FILES = {"train": "train", "test": "val", "val": "val"}


@dataclass(frozen=True)
class AvaRow:
    """One CSV row: a normalised box at a keyframe with an action id and a person id or score (last column)."""

    video: str
    timestamp: int | float
    box: tuple[float, float, float, float]
    action: int | str | None
    last: float | None


def timestamp_to_frame(timestamp: float, fps: float = FPS) -> int:
    """0-based frame index of second ``timestamp`` in the 15-minute segment that starts at second 900."""
    return int(round((timestamp - FIRST_SECOND) * fps))


def read_ava_csv(path: Path, with_action: bool = True) -> list[AvaRow]:
    """Rows of an AVA CSV: 8 columns (action and person id / score) or 7 (the last is action or score).

    With 7 columns the last column is the action id when ``with_action``, otherwise a score. The CSV `stclip detect`
    writes reads the same: its header row (``video_id,time,...``) is skipped, its actions are names rather than ids,
    and its times are seconds with decimals (whole seconds, as AVA's, stay integers).
    """
    rows = []
    try:
        with open(path, newline="") as f:
            for number, fields in enumerate(csv.reader(f), 1):
                if not fields or (not rows and fields[0].strip().lower() == "video_id"):
                    continue
                if len(fields) not in (7, 8):
                    raise StclipError(f"{path}:{number}: expected 7 or 8 CSV columns, got {len(fields)}")
                box = tuple(float(v) for v in fields[2:6])
                if not all(math.isfinite(v) for v in box):
                    raise ValueError(f"line {number}: box {fields[2:6]} is not 4 finite numbers")
                if len(fields) == 8:
                    action = _action(fields[6]) if fields[6].strip() else None
                    last = float(fields[7]) if fields[7].strip() else None
                elif with_action:
                    action, last = _action(fields[6]), None
                else:
                    action, last = None, float(fields[6])
                if last is not None and not math.isfinite(last):  # NaN would sort anywhere and change the AP
                    raise ValueError(f"line {number}: score {fields[-1].strip()} is not a finite number")
                seconds = float(fields[1])
                if not math.isfinite(seconds):
                    raise ValueError(f"line {number}: time {fields[1].strip()} is not a finite number")
                rows.append(AvaRow(fields[0], int(seconds) if seconds.is_integer() else round(seconds, 3), box, action, last))
    except FileNotFoundError:
        raise StclipError(f"AVA file not found: {path}") from None
    except (ValueError, OverflowError, UnicodeDecodeError, csv.Error) as err:
        raise StclipError(f"{path} is not an AVA CSV ({first_line(err)})") from None
    except OSError as err:
        raise StclipError(f"cannot read {path}: {(err.strerror or str(err)).lower()}") from None
    return rows


def _action(text: str) -> int | str:
    """An action column: AVA's numeric id, or a name (the CSV `stclip detect` writes)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else text


def read_excluded(path: Path | None) -> set[tuple[str, int]]:
    """The (video_id, timestamp) keyframes an excluded-timestamps CSV removes from evaluation."""
    if path is None:
        return set()
    try:
        with open(path, newline="") as f:
            return {(r[0], int(float(r[1]))) for r in csv.reader(f) if r}
    except FileNotFoundError:
        raise StclipError(f"AVA file not found: {path}") from None
    except (ValueError, OverflowError, IndexError, UnicodeDecodeError, csv.Error):
        raise StclipError(f"{path} is not an AVA excluded-timestamps CSV (rows of video_id,timestamp)") from None
    except OSError as err:
        raise StclipError(f"cannot read {path}: {(err.strerror or str(err)).lower()}") from None


def parse_label_map(path: Path) -> dict[int, str]:
    """Action id -> name from an AVA ``.pbtxt`` label map (``id`` or ``label_id`` fields)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StclipError(f"AVA label map not found: {path}") from None
    except UnicodeDecodeError:
        raise StclipError(f"{path} is not a text .pbtxt label map") from None
    except OSError as err:
        raise StclipError(f"cannot read {path}: {(err.strerror or str(err)).lower()}") from None
    items = re.findall(r"item\s*\{(.*?)\}", text, flags=re.S)
    out = {}
    for item in items:
        name = re.search(r'name:\s*"([^"]*)"', item)
        ident = re.search(r"\b(?:label_)?id:\s*(\d+)", item)
        if name and ident:
            out[int(ident.group(1))] = name.group(1)
    if not out:
        raise StclipError(f"{path} holds no 'item {{ name: ... id: ... }}' entries")
    return out


def read_proposals(path: Path) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Person proposals per (video_id, timestamp): normalised boxes ``(n, 4)`` and scores ``(n,)``."""
    path = Path(path)
    if path.suffix in (".pkl", ".pickle"):
        data = load_data_pickle(path, "AVA file")
        if not isinstance(data, dict):
            raise StclipError(f"{path}: expected a dict of 'video,timestamp' -> boxes, got {type(data).__name__}")
        out = {}
        for key, rows in data.items():
            video, timestamp = key.split(",")
            rows = np.asarray(rows, np.float32).reshape(-1, 5)
            out[(video, int(float(timestamp)))] = (rows[:, :4], rows[:, 4])
        return out
    grouped: dict[tuple[str, int], dict[tuple, float]] = defaultdict(dict)
    for row in read_ava_csv(path, with_action=False):
        grouped[(row.video, row.timestamp)][row.box] = row.last if row.last is not None else 1.0
    return {
        key: (np.asarray(list(boxes), np.float32).reshape(-1, 4), np.asarray(list(boxes.values()), np.float32))
        for key, boxes in grouped.items()
    }


def _source(root: Path, video: str) -> tuple[dict, int, int]:
    """How to read a video's frames: record fields, width and height."""
    folder = root / "frames" / video
    if folder.is_dir():
        count = sum(1 for name in os.listdir(folder) if name.endswith(".jpg"))
        template = str(folder / f"{video}_%06d.jpg")
        if count:
            height, width = load_image(template % 1).shape[:2]
            return {"frame_template": template, "num_frames": count, "fps": float(FPS)}, width, height
    for suffix in VIDEO_SUFFIXES:
        path = root / "videos_15min" / f"{video}{suffix}"
        if path.exists():
            capture = cv2.VideoCapture(str(path))
            fields = {
                "video_path": path,
                "num_frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                "fps": float(capture.get(cv2.CAP_PROP_FPS)) or float(FPS),
            }
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            capture.release()
            return fields, width, height
    raise StclipError(
        f"AVA frames not found: expected {root}/frames/{video}/{video}_000001.jpg "
        f"(or {root}/videos_15min/{video}.mp4); set --data-root or STCLIP_DATA"
    )


def open_ava(
    root: Path,
    split: int,
    subset: str,
    proposals: Path | None = None,
    frame_step: int = 1,
) -> DatasetView:
    """Videos of ZS-AVA ``split``: train = training videos without any unseen-class annotation, test = val.

    GT keeps every label (all classes are scored); ``classes`` are the train or the unseen classes.
    ``proposals`` fills ``VideoRecord.detections`` (pixels) when given.
    """
    root = Path(root)
    label_split = get_split("ava", split)
    if subset not in SUBSET_FILES:
        raise StclipError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSET_FILES)}")
    if frame_step < 1:
        raise StclipError(f"frame step must be >= 1, got {frame_step}")
    part = SUBSET_FILES[subset]
    csv_path = find_file(root, f"ava_{part}_v2.2.csv")
    if csv_path is None:
        raise StclipError(
            f"AVA annotations not found: expected ava_{part}_v2.2.csv in {root}/annotations or {root}"
        )
    rows = read_ava_csv(csv_path)
    excluded = read_excluded(find_file(root, f"ava_{part}_excluded_timestamps_v2.2.csv"))
    rows = [r for r in rows if (r.video, r.timestamp) not in excluded and r.action in AVA_ACTIONS]
    if subset == "train":
        unseen = [AVA_ID_BY_NAME[name] for name in label_split.test_classes]
        keep = ava_training_videos(((r.video, r.action) for r in rows), unseen)
        rows = [r for r in rows if r.video in keep]
    boxes_by_key: dict[str, dict[int, dict[tuple, list[str]]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        boxes_by_key[r.video][r.timestamp].setdefault(r.box, []).append(AVA_ACTIONS[r.action][0])
    props: dict[str, list] | None = None
    if proposals is not None:
        props = defaultdict(list)
        for (name, timestamp), entry in read_proposals(proposals).items():
            props[name].append((timestamp, entry))

    videos = []
    for video in sorted(boxes_by_key):
        fields, width, height = _source(root, video)
        scale = np.array([width, height, width, height], np.float32)
        fps = fields["fps"]
        gt = {}
        for timestamp, people in sorted(boxes_by_key[video].items()):
            frame = timestamp_to_frame(timestamp, fps)
            if 0 <= frame < fields["num_frames"]:
                boxes = np.asarray(list(people), np.float32).reshape(-1, 4) * scale
                gt[frame] = FrameBoxes(boxes, list(people.values()))
        detections = None
        if props is not None:
            detections = {}
            for timestamp, (boxes, scores) in props.get(video, []):
                frame = timestamp_to_frame(timestamp, fps)
                if 0 <= frame < fields["num_frames"]:
                    detections[frame] = (boxes * scale, scores)
        keyframes = [timestamp_to_frame(t, fps) for t in KEYFRAME_SECONDS if (video, t) not in excluded]
        keyframes = [f for f in keyframes if 0 <= f < fields["num_frames"]]
        videos.append(
            VideoRecord(video, width, height, gt=gt, detections=detections, frame_step=frame_step,
                        eval_frames=keyframes, **fields)
        )
    classes = label_split.train_classes if subset == "train" else label_split.test_classes
    return DatasetView(
        "ava", label_split, subset, list(classes), videos,
        single_label_classes=list(AVA_POSE_CLASSES), multi_label=True,
    )
