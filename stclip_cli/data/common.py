"""The records every dataset reader returns, frame loading, and the training keyframe ``Dataset``.

Frame indices are 0-based everywhere inside stclip; readers convert the datasets' 1-based file numbers at
the edge. Boxes are float32 ``(n, 4)`` ``[x1, y1, x2, y2]`` in pixels of the frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from stclip_cli.data.splits import LabelSplit
from stclip_cli.errors import StclipError, first_line
from stclip_cli.core.windows import window_indices


@dataclass
class FrameBoxes:
    """Ground-truth persons of one frame: boxes and, per box, the list of its action class names."""

    boxes: np.ndarray
    labels: list[list[str]]


@dataclass
class VideoRecord:
    """One video of a dataset: where its frames are, its size, ground truth and detected person boxes.

    Frames come from ``frame_paths`` (ordered, index i = frame i), else ``frame_template`` (a ``%``-format
    path taking the 1-based file number, for folders too large to list), else ``video_path`` via OpenCV.
    ``frame_step`` spaces the frames of a window (AVA option; 1 = consecutive frames). ``eval_frames`` are the
    frames the benchmark scores (AVA: its keyframes); None means every frame, as frame mAP on J-HMDB and
    UCF101-24 scores every frame of a test video, annotated or not.
    """

    name: str
    width: int
    height: int
    num_frames: int
    frame_paths: list[Path] = field(default_factory=list)
    video_path: Path | None = None
    fps: float | None = None
    label: str | None = None
    gt: dict[int, FrameBoxes] = field(default_factory=dict)
    detections: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
    frame_step: int = 1
    frame_template: str | None = None
    eval_frames: list[int] | None = None

    def scored_frames(self) -> list[int]:
        """The frames the benchmark scores: ``eval_frames``, else every frame of the video."""
        return list(self.eval_frames) if self.eval_frames is not None else list(range(self.num_frames))

    def window(self, keyframe: int, length: int) -> list[int]:
        """Frame indices of the ``length``-frame window centred on ``keyframe`` (``frame_step`` apart)."""
        if self.frame_step == 1:
            return window_indices(keyframe, self.num_frames, length)
        offsets = (np.arange(length) - length // 2) * self.frame_step
        return np.clip(keyframe + offsets, 0, self.num_frames - 1).tolist()

    def read_frames(self, indices: Sequence[int]) -> list[np.ndarray]:
        """RGB uint8 frames at ``indices``, from the frame files or the video file."""
        if self.frame_paths:
            return [load_image(self.frame_paths[i]) for i in indices]
        if self.frame_template is not None:
            return [load_image(self.frame_template % (i + 1)) for i in indices]
        if self.video_path is None:
            raise StclipError(f"video {self.name} has neither frame files nor a video file")
        return _read_video_frames(self.video_path, indices)


@dataclass
class DatasetView:
    """What ``open_dataset`` returns: the videos of one subset of one label split and the classes to use.

    ``classes`` are the subset's classes (train classes for train, unseen classes for test);
    ``single_label_classes`` are the ones trained with a softmax over each other (all J-HMDB / UCF classes,
    AVA pose classes); ``skipped`` are pool videos left out because no annotation covers them.
    """

    name: str
    split: LabelSplit
    subset: str
    classes: list[str]
    videos: list[VideoRecord]
    single_label_classes: list[str]
    multi_label: bool
    skipped: list[str] = field(default_factory=list)


def read_json(path: Path | str, what: str = "file") -> Any:
    """Parse a JSON file; a missing or malformed one is a one-line StclipError naming it (``what``: its role)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise StclipError(f"{what} not found: {path}") from None
    except OSError as err:
        raise StclipError(f"cannot read {path}: {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # ValueError: JSON syntax, 4300-digit numbers
        raise StclipError(f"{path} is not valid JSON ({first_line(err)})") from None


def load_image(path: Path | str) -> np.ndarray:
    """Read an image file as an RGB uint8 array ``(H, W, 3)``; a missing/unreadable file is a StclipError."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise StclipError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_video_frames(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        frames: dict[int, np.ndarray] = {}
        for index in sorted(set(indices)):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, image = capture.read()
            if not ok:
                raise StclipError(f"cannot decode frame {index} of {path}")
            frames[index] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    return [frames[i] for i in indices]


class KeyframeDataset(Dataset):
    """Training items: every annotated keyframe of ``videos`` with at least one box labelled in ``classes``.

    Each item holds the T-frame window, the keyframe's position in it, at most ``max_boxes`` boxes (a random,
    reproducible subset) and their multi-hot labels over ``classes``.
    """

    def __init__(
        self,
        videos: Sequence[VideoRecord],
        classes: Sequence[str],
        window: int = 9,
        max_boxes: int = 10,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.videos = list(videos)
        self.classes = list(classes)
        self.window = window
        self.max_boxes = max_boxes
        self.seed = seed
        self.generator = generator
        index = {name: i for i, name in enumerate(self.classes)}
        self.items: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        for v, video in enumerate(self.videos):
            for frame in sorted(video.gt):
                entry = video.gt[frame]
                labels = np.zeros((len(entry.labels), len(self.classes)), np.float32)
                for b, names in enumerate(entry.labels):
                    for name in names:
                        if name in index:
                            labels[b, index[name]] = 1.0
                keep = labels.any(axis=1)
                if keep.any():
                    boxes = np.asarray(entry.boxes, np.float32).reshape(-1, 4)[keep]
                    self.items.append((v, frame, boxes, labels[keep]))

    def __len__(self) -> int:
        return len(self.items)

    def _generator(self, index: int) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        info = get_worker_info()
        base = 0 if info is None else info.seed - info.id
        return torch.Generator().manual_seed((self.seed * 1_000_003 + base * 7_919 + index) % (2**63))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One keyframe's item; any failure to read its frames is a one-line StclipError naming the video and
        frame (in a DataLoader worker too, whose errors reach the trainer as text)."""
        try:
            return self._item(index)
        except StclipError:
            raise
        except (OSError, ValueError, cv2.error, MemoryError) as err:
            v, frame = self.items[index][:2]
            raise StclipError(f"cannot read keyframe {frame} of video {self.videos[v].name}: {first_line(err)}") from None

    def _item(self, index: int) -> dict[str, Any]:
        v, frame, boxes, labels = self.items[index]
        video = self.videos[v]
        if len(boxes) > self.max_boxes:
            chosen = torch.randperm(len(boxes), generator=self._generator(index))[: self.max_boxes]
            chosen = np.sort(chosen.numpy())
            boxes, labels = boxes[chosen], labels[chosen]
        indices = video.window(frame, self.window)
        return {
            "images": video.read_frames(indices),
            "key_pos": indices.index(frame) if video.frame_step == 1 else self.window // 2,
            "boxes": boxes.copy(),
            "labels": labels.copy(),
            "video": video.name,
            "frame": frame,
        }


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items as lists (frame sizes differ across videos); boxes and labels become float32 tensors."""
    return {
        "images": [item["images"] for item in items],
        "key_pos": torch.tensor([item["key_pos"] for item in items], dtype=torch.long),
        "boxes": [torch.from_numpy(item["boxes"]) for item in items],
        "labels": [torch.from_numpy(item["labels"]) for item in items],
        "video": [item["video"] for item in items],
        "frame": [item["frame"] for item in items],
    }
